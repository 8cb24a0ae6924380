"""Where model bundles may be loaded from: the registry, the worker's own bundle, listed prefixes.

A ``model-updates`` record names a bundle by URI, and anyone who can write the topic can
write a record: a worker loads only what lies under a trusted root, and says no to
anything else before touching it (no connection made, no file looked at), in the same
words whatever the URI names, so refusals describe nothing outside the roots.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

NOT_ALLOWED = "not in the model registry or an allowed model source (STREAMSCORE_MODEL_SOURCES)"


class ModelSources:
    """Trusted roots: local directories (resolved, no escape through ``..`` or links) and URL prefixes."""

    def __init__(self, roots: list[str]) -> None:
        self.local: list[Path] = []
        self.remote: list[str] = []
        for root in roots:
            if not root:
                continue
            if is_local(root):
                self.local.append(Path(_local_path(root)).resolve())
            else:
                self.remote.append(root.rstrip("/") + "/")

    def allows(self, uri: str) -> bool:
        if is_local(uri):
            try:
                path = Path(_local_path(uri)).resolve()
            except (OSError, ValueError):
                return False
            return any(path == root or path.is_relative_to(root) for root in self.local)
        parts = urlsplit(uri)
        if ".." in PurePosixPath(parts.path).parts:
            return False
        return any((uri.rstrip("/") + "/").startswith(prefix) for prefix in self.remote)


def is_local(uri: str) -> bool:
    """A path on this machine (or a file: URL), not a remote URL."""
    return urlsplit(uri).scheme in ("", "file") or (len(uri) > 1 and uri[1] == ":")


def _local_path(uri: str) -> str:
    return urlsplit(uri).path if uri.startswith("file:") else uri
