"""Imports flow one way: streams -> scoring -> schemas; the model code never touches Kafka."""

from __future__ import annotations

import ast
import importlib
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
    ("streams.settings", "streams.connection", "streams.modes", "streams.environment"),
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


# Rooms inside the layers (docs/architecture.md): each folder of scoring/ and streams/services/ is a
# room. A scoring room imports only the rooms before it in this list (and its own modules).
SCORING_ROOMS = [
    ("scoring.errors", "scoring.checkpoint"),
    ("scoring.metrics",),
    ("scoring.model",),
    ("scoring.estimation",),
    ("scoring.drift",),
    ("scoring.feedback",),
    ("scoring.alerts",),
    ("scoring.lifecycle",),
    ("scoring.offline",),
    ("scoring.report",),
]
SHARED_ROOMS = ("streams.services.loop", "streams.services.shared")  # below every role
ROLE_ROOMS = ("score", "drift", "learn", "control", "inference")


def _dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, by dotted name (relative imports resolved)."""
    found = set()
    here = _dotted(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.add(".".join([*base, node.module] if node.module else base))
    return found


def _rank(module: str, rooms: list[tuple[str, ...]]) -> int | None:
    for index, prefixes in enumerate(rooms):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_scoring_rooms_import_only_the_rooms_below_them() -> None:
    offenders = []
    for path in _modules("scoring"):
        module = _dotted(path)
        if module == "scoring":
            continue
        own = _rank(module, SCORING_ROOMS)
        assert own is not None, f"{module} is in no room of SCORING_ROOMS"
        for imported in _absolute_imports(path):
            if imported.startswith("scoring.") and (_rank(imported, SCORING_ROOMS) or 0) > own:
                offenders.append(f"{module} imports {imported}")
    assert offenders == []


def _role(module: str) -> str | None:
    parts = module.split(".")
    inside = len(parts) > 2 and parts[:2] == ["streams", "services"]
    return parts[2] if inside and parts[2] in ROLE_ROOMS else None


def test_a_role_uses_another_role_only_through_its_package_and_never_in_a_cycle() -> None:
    """A role's modules are its own; what other roles may use is its package's ``__all__``."""
    offenders, uses = [], {role: set() for role in ROLE_ROOMS}
    for path in sorted((ROOT / "streams" / "services").rglob("*.py")):
        module, role = _dotted(path), _role(_dotted(path))
        if role is None:
            if module.startswith(SHARED_ROOMS):
                offenders += [f"{module} (shared) imports {i}" for i in _streams_imports(path) if _role(i)]
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("streams.services"):
                continue
            other = _role(node.module)
            if other is None or other == role:
                continue
            uses[role].add(other)
            package = importlib.import_module(f"streams.services.{other}")
            if node.module != package.__name__:
                offenders.append(f"{module} imports {node.module}, inside the {other} role")
            offenders += [
                f"{module} uses {other}.{a.name}, not in its __all__"
                for a in node.names
                if a.name not in getattr(package, "__all__", ())
            ]
    assert offenders == []
    done: set[str] = set()

    def visit(role: str, trail: tuple[str, ...]) -> None:
        assert role not in trail, "roles in a cycle: " + " -> ".join([*trail, role])
        for other in uses[role] - done:
            visit(other, (*trail, role))
        done.add(role)

    for role in ROLE_ROOMS:
        visit(role, ())


@pytest.mark.parametrize("package", ["scoring", "schemas", "streams"])
def test_no_folder_holds_more_than_12_modules_and_no_module_over_350_lines(package: str) -> None:
    folders: dict[str, int] = {}
    long = []
    for path in _modules(package):
        lines = len(path.read_text().splitlines())
        if lines > 350:
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
        if path.name != "__init__.py":
            folder = str(path.parent.relative_to(ROOT))
            folders[folder] = folders.get(folder, 0) + 1
    assert long == []
    assert {folder: n for folder, n in folders.items() if n > 12} == {}
