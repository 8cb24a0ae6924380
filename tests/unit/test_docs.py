"""The manual: the site builds with --strict, its reference is the code's, the README a first screen."""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from schemas import ALL_MESSAGES
from streams.cli import build_parser
from streams.environment import NOT_SETTINGS, variable
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _load_reference():
    path = ROOT / "docs" / "gen" / "reference_tables.py"
    spec = importlib.util.spec_from_file_location("reference_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_reference()


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about its successor
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, timeout=300, check=False, env=env, cwd=config.parent,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


def _text(page: Path) -> str:
    """The page's text without tags, entities decoded: what a reader sees, in one line."""
    body = re.sub(r"<script.*?</script>|<[^>]+>", " ", page.read_text(), flags=re.S)
    return " ".join(html.unescape(body).split())


def _words(text: str) -> str:
    """The words of a text, markup and punctuation left out: `model compare`. -> model compare."""
    return " ".join(re.findall(r"[\w.:/,-]*\w", html.unescape(re.sub(r"<[^>]+>", " ", text))))


def _rows(page: Path) -> list[str]:
    """The words of each table row of a page."""
    return [_words(row) for row in re.findall(r"<tr>(.*?)</tr>", page.read_text(), flags=re.S)]


def _headings(page: str) -> list[str]:
    """The text of each h2-h4 of a page, without the permalink sign."""
    found = re.findall(r"<h[2-4][^>]*>(.*?)</h[2-4]>", page, flags=re.S)
    return [_words(re.sub(r'<a class="headerlink".*?</a>', "", h)) for h in found]


def test_every_setting_is_on_the_settings_page_with_its_default_and_description(site: Path) -> None:
    rows = {row.split()[0]: row for row in _rows(site / "reference" / "settings.html") if row}
    for name, field in Settings.model_fields.items():
        row = rows.get(variable(name))
        assert row is not None, f"{variable(name)} is not on the settings page"
        assert _words(field.description) in row, row
        default = field.default.value if hasattr(field.default, "value") else field.default
        if default not in (None, ""):
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert f" {_words(shown)} " in row, f"default {shown!r} missing from {row!r}"
    for name in NOT_SETTINGS:
        assert name in rows, f"{name} is not on the settings page"


def test_every_setting_has_a_description() -> None:
    missing = [variable(name) for name, field in Settings.model_fields.items() if not field.description]
    assert missing == [], f"add description= to these fields of streams/settings.py: {missing}"


def test_a_setting_added_to_settings_shows_on_the_page_without_editing_it() -> None:
    class Extended(Settings):
        frobnicate_interval_s: float = Field(2.5, gt=0, description="How often the frobnicator runs.")

    page = (ROOT / "docs" / "reference" / "settings.md").read_text()
    before = reference.expand(page)
    tables = {**reference.TABLES, "settings": lambda: reference.settings_table(Extended)}
    after = reference.expand(page, tables)
    assert "STREAMSCORE_FROBNICATE_INTERVAL_S" not in before
    (row,) = [line for line in after.splitlines() if "STREAMSCORE_FROBNICATE_INTERVAL_S" in line]
    assert row == "| `STREAMSCORE_FROBNICATE_INTERVAL_S` | float | `2.5` | How often the frobnicator runs. |"
    assert after.count("\n| `STREAMSCORE_") == before.count("\n| `STREAMSCORE_") + 1


def test_a_page_naming_a_table_that_does_not_exist_fails() -> None:
    with pytest.raises(reference.ReferenceError, match="no generated table 'setings'"):
        reference.expand("# Settings\n\n<!-- reference: setings -->\n")


def _options(parser) -> dict[str, list[str]]:
    """Every command's prog and the option strings and positionals its --help shows."""
    found = {}

    def walk(p) -> None:
        shown = []
        for action in p._actions:
            if action.help == "==SUPPRESS==" or type(action).__name__ in ("_HelpAction", "_SubParsersAction"):
                continue
            shown += action.option_strings or [action.metavar or action.dest]
        found[p.prog] = shown
        for action in p._actions:
            if type(action).__name__ == "_SubParsersAction":
                for sub in action.choices.values():
                    walk(sub)

    walk(parser)
    return found


def test_every_command_and_option_is_on_the_commands_page(site: Path) -> None:
    page = (site / "reference" / "commands.html").read_text()
    headings = _headings(page)
    names = reference.command_names()
    assert "streamscore model deploy" in names and "streamscore schemas export" in names
    for name in names:
        assert name in headings, f"{name} has no section on the commands page"
    sections = re.split(r"<h[2-4][^>]*>", page)
    for prog, options in _options(build_parser()).items():
        section = next((s for s in sections if re.match(rf"{re.escape(prog)}\s*<", s)), sections[0])
        text = html.unescape(section)
        for option in options:
            assert option in text, f"{prog}: {option} is missing from its section"


def test_every_message_and_its_json_schema_are_on_the_site(site: Path) -> None:
    page = (site / "reference" / "messages.html").read_text()
    sections = {re.sub(r"<.*", "", s, flags=re.S).strip(): s for s in re.split(r"<h2[^>]*>", page)[1:]}
    exported = reference.json_schemas()
    assert len(exported) == len(ALL_MESSAGES)
    for name, model in ALL_MESSAGES.items():
        served = site / "reference" / "schemas" / f"{name}.schema.json"
        assert served.read_text() == exported[served.name]
        assert json.loads(served.read_text()) == model.model_json_schema()
        section = sections.get(model.__name__)
        assert section is not None, f"{model.__name__} has no section on the messages page"
        assert f'href="schemas/{served.name}"' in section
        for field in model.model_json_schema()["properties"]:
            assert f"<code>{field}</code>" in section, f"{model.__name__}.{field} is not in its section"


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    for page in pages:
        source = page.read_text()
        remote = re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', source)
        assert remote == [], f"{page.relative_to(site)} loads {remote}"
        assert "fonts.googleapis" not in source and "fonts.gstatic" not in source


def test_a_broken_link_or_a_page_left_out_of_the_nav_fails_the_strict_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with open(tmp_path / "docs" / "getting-started.md", "a") as page:
        page.write("\nSee [the old page](no-such-page.md).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# An orphan\n")
    done = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stderr
    assert "orphan.md" in done.stderr


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_is_a_first_screen_that_points_to_the_manual() -> None:
    readme = _readme()
    assert len(readme.splitlines()) < 200
    assert "make demo" in readme and "make test" in readme and "make docs" in readme
    assert "](docs/img/dashboard.png)" in readme
    assert (ROOT / "docs" / "img" / "dashboard.png").stat().st_size < 150_000, "a small picture"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links {target}, which does not exist"


def test_the_readme_and_getting_started_run_the_same_commands() -> None:
    def block(text: str) -> str:
        section = text.split("## Run it yourself", 1)[1]
        return re.search(r"```sh\n(.*?)```", section, re.S).group(1)

    assert block(_readme()) == block((ROOT / "docs" / "getting-started.md").read_text())
