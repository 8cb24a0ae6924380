"""Input files: a missing, empty, unreadable or malformed file is refused naming the path and why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from scoring.errors import ConfigError
from scoring.offline.tables import read_table, readable_file


def _refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        read_table(path)
    return str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    assert _refusal(tmp_path / "loans.csv") == f"{tmp_path / 'loans.csv'}: no such file"


def test_an_empty_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_bytes(b"")
    assert _refusal(tmp_path / "empty.csv") == f"{tmp_path / 'empty.csv'} is empty"


def test_a_header_without_rows_is_named(tmp_path: Path) -> None:
    (tmp_path / "header.csv").write_text("a,b,y\n")
    assert _refusal(tmp_path / "header.csv") == f"{tmp_path / 'header.csv'} has a header but no rows"


def test_blank_lines_only_hold_no_columns(tmp_path: Path) -> None:
    (tmp_path / "blank.csv").write_text("\n\n")
    assert _refusal(tmp_path / "blank.csv") == f"{tmp_path / 'blank.csv'} holds no columns (an empty CSV?)"


def test_a_directory_is_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    assert _refusal(tmp_path / "dir.csv") == f"{tmp_path / 'dir.csv'} is a directory; give a file"


def test_an_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod 0 does not stop root (the CI runs as root), so the refusal of open() is simulated
    path = tmp_path / "secret.csv"
    path.write_text("a,y\n1,0\n")

    def refuse(self: Path, *args: object, **kwargs: object):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert _refusal(path) == f"{path}: cannot read it (Permission denied)"


def test_binary_bytes_and_a_ragged_csv_are_refused_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "bytes.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    assert _refusal(tmp_path / "bytes.csv").startswith(f"{tmp_path / 'bytes.csv'} is not UTF-8 text")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n1,2,3,4\n")
    assert _refusal(tmp_path / "ragged.csv").startswith(
        f"{tmp_path / 'ragged.csv'} is not a readable CSV file:"
    )


def test_a_csv_renamed_parquet_is_not_a_parquet_file(tmp_path: Path) -> None:
    (tmp_path / "t.parquet").write_text("a,b\n1,2\n")
    assert _refusal(tmp_path / "t.parquet").startswith(
        f"{tmp_path / 't.parquet'} is not a readable Parquet file:"
    )


def test_a_good_table_reads_and_a_good_file_passes(tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.5, 2.0], "c": ["x", "y"]}).to_parquet(tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet")["c"].tolist() == ["x", "y"]
    (tmp_path / "e.json").write_text("{}")
    assert readable_file(tmp_path / "e.json") == tmp_path / "e.json"
