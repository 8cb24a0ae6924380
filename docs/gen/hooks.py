"""MkDocs hooks (``hooks:`` in mkdocs.yml): the generated parts of the reference, on every build.

``on_files`` adds the JSON Schema files of ``streamscore schemas export`` to the site under
``reference/schemas/``; ``on_page_markdown`` fills the markers of the reference pages
(``reference_tables.py`` says which). Nothing here is written into ``docs/``.
"""

from __future__ import annotations

# docs/gen/reference_tables.py: MkDocs puts a hook's folder on sys.path while it loads the hook
import reference_tables as reference
from mkdocs.structure.files import File, Files

SCHEMA_DIR = "reference/schemas"


def on_files(files: Files, config) -> Files:
    for name, text in reference.json_schemas().items():
        files.append(File.generated(config, f"{SCHEMA_DIR}/{name}", content=text))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    return reference.expand(markdown)
