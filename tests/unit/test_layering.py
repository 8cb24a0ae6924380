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


# streams/ in layers: each may import the ones before it in this list, never one after it
STREAMS_LAYERS = [
    ("streams.settings", "streams.modes", "streams.environment"),
    ("streams.kafka",),
    ("streams.services",),
    ("streams.web",),
    ("streams.app", "streams.worker"),
    ("streams.cli", "streams.__main__"),
]


def _streams_modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "streams").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _streams_imports(path: Path) -> set[str]:
    """The streams modules ``path`` imports, by dotted name, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("streams"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streams"):
            found.add(node.module)
    return found


def _layer(module: str) -> int:
    for index, prefixes in enumerate(STREAMS_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer of STREAMS_LAYERS")


def test_streams_imports_point_down_the_layers() -> None:
    offenders = []
    for module, path in _streams_modules().items():
        if module == "streams":
            continue
        for imported in _streams_imports(path):
            if _layer(imported) > _layer(module):
                offenders.append(f"{module} imports {imported}")
    assert offenders == []


def test_no_import_cycles_among_streams_modules() -> None:
    modules = _streams_modules()
    graph = {m: {i for i in _streams_imports(p) if i in modules and i != m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, node])):
                return cycle
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert (cycle := visit(module, [])) is None, " -> ".join(cycle)


def test_settings_import_no_kafka_client_and_no_faust() -> None:
    """confluent_kafka and faust are used by the Kafka layer and above; settings sees neither."""
    assert not _imported_packages(ROOT / "streams" / "settings.py") & {"faust", "confluent_kafka"}
