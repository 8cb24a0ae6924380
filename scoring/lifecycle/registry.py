"""A model registry: versioned bundles under one root, a local path or any fsspec URL.

Layout: ``<root>/<name>/<version>/`` holds one bundle (see ``scoring.model.bundle``). A
bundle is registered once and never changed in place: a new model is a new version.
Which version serves is not recorded here but on the ``model-updates`` topic, so
every worker agrees on it without sharing a file system.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from schemas.lifecycle import ModelRef
from scoring.errors import BundleError
from scoring.model.bundle import MANIFEST_FILE, METADATA_FILE, METRICS_FILE, ModelBundle


@dataclass(frozen=True)
class RegisteredModel:
    ref: ModelRef
    created_at: str
    task: str
    metrics: dict[str, float]


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = str(root).rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root)
        self.local = isinstance(self.fs, LocalFileSystem)

    def _dir(self, name: str, version: str) -> str:
        for part in (name, version):
            if not part or "/" in part or part in (".", ".."):
                raise BundleError(f"invalid model name or version {part!r}")
        return f"{self._root_path}/{name}/{version}"

    def ref(self, name: str, version: str) -> ModelRef:
        path = self._dir(name, version)
        if not self.fs.exists(f"{path}/{MANIFEST_FILE}"):
            raise BundleError(f"{name} version {version} is not in the registry at {self.root}")
        uri = path if self.local else self.fs.unstrip_protocol(path)
        return ModelRef(name=name, version=version, uri=uri)

    def register(self, bundle_dir: Path) -> ModelRef:
        """Verify a bundle directory and copy it in under its own name and version."""
        bundle = ModelBundle.load(bundle_dir)
        target = self._dir(bundle.name, bundle.version)
        if self.fs.exists(f"{target}/{MANIFEST_FILE}"):
            existing = self.fs.cat_file(f"{target}/{MANIFEST_FILE}")
            if existing != (Path(bundle_dir) / MANIFEST_FILE).read_bytes():
                raise BundleError(
                    f"{bundle.name} version {bundle.version} is already registered with other contents; "
                    "register a new version instead"
                )
            return self.ref(bundle.name, bundle.version)
        self.fs.makedirs(target, exist_ok=True)
        for file in sorted(Path(bundle_dir).iterdir()):
            if file.is_file():
                self.fs.put_file(str(file), f"{target}/{file.name}")
        return self.ref(bundle.name, bundle.version)

    def models(self, name: str | None = None) -> list[RegisteredModel]:
        """Registered bundles, oldest first."""
        out = []
        pattern = f"{self._root_path}/{name or '*'}/*/{METADATA_FILE}"
        for path in self.fs.glob(pattern):
            version_dir = path.rsplit("/", 1)[0]
            model_name, version = version_dir.rsplit("/", 2)[-2:]
            try:
                metadata = json.loads(self.fs.cat_file(path))
                metrics = json.loads(self.fs.cat_file(f"{version_dir}/{METRICS_FILE}"))
            except (OSError, ValueError):
                continue
            out.append(
                RegisteredModel(
                    self.ref(model_name, version),
                    str(metadata.get("created_at", "")),
                    str(metadata.get("task", "")),
                    {k: float(v) for k, v in metrics.items()},
                )
            )
        return sorted(out, key=lambda m: (m.created_at, m.ref.version))

    def describe(self, name: str, version: str) -> dict:
        ref = self.ref(name, version)
        path = self._dir(name, version)
        return {
            "ref": ref.model_dump(),
            "metadata": json.loads(self.fs.cat_file(f"{path}/{METADATA_FILE}")),
            "metrics": json.loads(self.fs.cat_file(f"{path}/{METRICS_FILE}")),
            "manifest": json.loads(self.fs.cat_file(f"{path}/{MANIFEST_FILE}")),
        }


def load_ref(ref: ModelRef) -> ModelBundle:
    """Load (and verify) a registered bundle; a remote one is copied to a local directory first."""
    fs, path = fsspec.core.url_to_fs(ref.uri)
    if isinstance(fs, LocalFileSystem):
        return ModelBundle.load(Path(path))
    local = Path(tempfile.mkdtemp(prefix=f"streamscore-{ref.name}-{ref.version}-"))
    try:
        for remote in fs.ls(path, detail=False):
            fs.get_file(remote, str(local / remote.rsplit("/", 1)[-1]))
        return ModelBundle.load(local)
    except FileNotFoundError as exc:
        raise BundleError(f"{ref.uri}: cannot read the bundle: {exc}") from exc
    finally:
        shutil.rmtree(local, ignore_errors=True)
