"""Model sources: a bundle loads only from the registry, the worker's own bundle, or a listed prefix."""

from __future__ import annotations

from pathlib import Path

from scoring.lifecycle.sources import ModelSources


def test_local_paths_under_a_root_are_allowed_and_escapes_are_not(tmp_path: Path) -> None:
    registry, own = tmp_path / "registry", tmp_path / "models" / "demo"
    (registry / "loans" / "2").mkdir(parents=True)
    own.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (registry / "link").symlink_to(tmp_path / "elsewhere")
    sources = ModelSources([str(registry), str(own)])

    assert sources.allows(str(registry / "loans" / "2"))
    assert sources.allows(f"file://{registry}/loans/2")
    assert sources.allows(str(own))
    assert not sources.allows("/tmp/evil")
    assert not sources.allows(str(registry / ".." / "elsewhere"))
    assert not sources.allows(str(registry / "link")), "a link out of the registry is outside it"
    assert not sources.allows(str(tmp_path / "models" / "demo-2"))


def test_urls_need_a_listed_prefix_and_no_dot_dot() -> None:
    sources = ModelSources(["s3://models/prod", "https://models.example.com/bundles/"])

    assert sources.allows("s3://models/prod/loans/2")
    assert sources.allows("https://models.example.com/bundles/loans/2")
    assert not sources.allows("s3://models/production/loans/2"), "a prefix ends at a path boundary"
    assert not sources.allows("s3://models/prod/../other/loans/2")
    assert not sources.allows("http://127.0.0.1:9/never")
    assert not ModelSources([]).allows("s3://models/prod/loans/2")
