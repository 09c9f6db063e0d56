"""Copying files the way a transfer service does: atomically, with sync levels, verified."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
# O_NOFOLLOW: a partial file name planted as a symlink is refused, never written through
_PARTIAL_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


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


def partial_path(dst: Path, tag: str) -> Path:
    """Where a copy to dst is written before it is renamed into place."""
    return dst.with_name(f".{dst.name}.partial-{tag}")


def copy_atomic(src: Path, dst: Path, tag: str, verify: bool = False) -> int:
    """Copy src to dst via a hidden partial file renamed into place; returns bytes copied.

    A partial file of the same tag left by a killed copy is replaced, not kept."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(dst, tag)
    partial.unlink(missing_ok=True)
    try:
        with open(src, "rb") as reader, os.fdopen(os.open(partial, _PARTIAL_FLAGS, 0o644),
                                                  "wb") as writer:
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


def walk_files(folder: Path, check: Callable[[str], object] | None = None) -> Iterator[str]:
    """Relative paths ('/a/b.dat') of every file under folder, in a stable order.

    Symlinked folders are entered (each real folder once, so a loop ends) after
    `check(path)`, which raises to refuse one that leads out of bounds; the caller
    resolves, and confines, every file found."""
    seen = {os.path.realpath(folder)}
    for parent, dirs, files in os.walk(folder, followlinks=True, onerror=_raise):
        kept = []
        for name in sorted(dirs):
            path = os.path.join(parent, name)
            if check is not None and os.path.islink(path):
                check(path)
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            yield "/" + os.path.relpath(os.path.join(parent, name), folder)


def _raise(error: OSError) -> None:
    raise error  # os.walk would skip an unreadable folder silently
