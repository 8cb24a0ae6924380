"""Imports flow one way: streams -> scoring -> schemas; the model code never touches Kafka."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = {"faust", "confluent_kafka", "aiokafka", "streams"}


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, anywhere in it (also inside functions)."""
    package = path.parent.name
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
    return found


def _modules(package: str) -> list[Path]:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    return modules


@pytest.mark.parametrize("package", ["scoring", "schemas"])
def test_model_and_contract_code_never_imports_kafka_clients_or_streams(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & TRANSPORT)
        for path in _modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_schemas_do_not_import_scoring() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules("schemas") if "scoring" in _imported_packages(p)]
    assert offenders == []


def test_the_import_scanner_sees_imports_in_every_form(tmp_path: Path) -> None:
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    module.write_text(
        "import faust.types\nfrom confluent_kafka import Consumer\n"
        "def f():\n    import aiokafka\n    from . import sibling\n"
    )
    assert _imported_packages(module) == {"faust", "confluent_kafka", "aiokafka", "pkg"}
