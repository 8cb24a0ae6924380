"""Input files of the commands (tables, event files): read, or refused with the path and the reason.

Every refusal is a ``ConfigError`` whose message starts with the path, so a person at
the command line sees which file and what to do, never a pandas or pyarrow traceback.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scoring.errors import ConfigError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


def readable_file(path: Path | str) -> Path:
    """``path`` if it names a readable, non-empty file; else a ``ConfigError`` saying which and why."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give a file")
    try:
        with path.open("rb") as handle:
            empty = not handle.read(1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if empty:
        raise ConfigError(f"{path} is empty")
    return path


def read_table(path: Path | str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; string columns stay strings."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ConfigError(f"{path}: expected a .csv or .parquet file")
    readable_file(path)
    try:
        # round_trip: the exact doubles written, as JSON gives them
        csv = suffix == ".csv"
        frame = pd.read_csv(path, float_precision="round_trip") if csv else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path} holds no columns (an empty CSV?)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise ConfigError(f"{path} is not a readable {kind} file: {_first_line(exc)}") from None
    if frame.empty:
        raise ConfigError(f"{path} has a header but no rows")
    return frame


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
