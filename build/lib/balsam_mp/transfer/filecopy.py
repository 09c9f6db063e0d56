"""Copying files the way a transfer service does: atomically, with sync levels, verified."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as reader:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def in_sync(src: Path, dst: Path, level: int | None) -> bool:
    """Globus sync_level: 0 exists, 1 same size, 2 dst not older, 3 same checksum."""
    if level is None or not dst.is_file():
        return False
    if level == 0:
        return True
    s, d = src.stat(), dst.stat()
    if s.st_size != d.st_size:
        return False
    if level == 1:
        return True
    if level == 2:
        return d.st_mtime >= s.st_mtime
    return md5(src) == md5(dst)


def copy_atomic(src: Path, dst: Path, tag: str, verify: bool = False) -> int:
    """Copy src to dst via a hidden partial file renamed into place; returns bytes copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.partial-{tag}")
    try:
        with open(src, "rb") as reader, open(partial, "wb") as writer:
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        if verify and md5(src) != md5(partial):
            raise OSError(f"checksum mismatch copying {src}")
        os.replace(partial, dst)  # a half-copied file never appears under its name
    finally:
        partial.unlink(missing_ok=True)
    return src.stat().st_size


def walk_files(folder: Path) -> Iterator[str]:
    """Relative paths ('/a/b.dat') of every file under folder, in a stable order."""
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield "/" + os.path.relpath(os.path.join(parent, name), folder)
