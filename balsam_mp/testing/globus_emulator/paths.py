"""Endpoint paths resolved inside the endpoint's folder, never outside it."""

from __future__ import annotations

import os
from pathlib import Path


class PathEscape(Exception):
    """A path that would leave its endpoint's root (via '..' or a symlink)."""


def resolve(root: Path, path: str) -> Path:
    """Map an endpoint path ('/a/b', '/~/a/b') to a real path under `root`."""
    if path.startswith("/~/") or path == "/~":
        path = path[2:]
    return confine(root, os.path.join(root, path.lstrip("/")), path)


def confine(root: Path, local: str, shown: str | None = None) -> Path:
    """The real path of `local` (every symlink followed), if it is inside `root`."""
    candidate = os.path.realpath(local)
    real_root = os.path.realpath(root)
    if candidate != real_root and not candidate.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PathEscape(shown or local)
    return Path(candidate)
