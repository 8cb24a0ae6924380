"""Write the JSON Schema of every message, for producers and consumers in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from schemas import ALL_MESSAGES


def export_json_schemas(directory: Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in ALL_MESSAGES.items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
