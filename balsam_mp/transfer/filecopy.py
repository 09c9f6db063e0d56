"""Copying files the way a transfer service does: atomically, with sync levels, verified.

Modes: a local copy keeps its source's permission bits masked by the umask, as `cp`
does (a 0600 input stays private, a script keeps its exec bit); Globus keeps none, and
its files get the destination's default (0666 masked by the umask), as the emulator's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
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
    """Where a copy to dst is written before it is renamed into place. Its name has a
    fixed length (34 bytes: a hash stands for dst's name), so any legal name has one."""
    digest = hashlib.sha256(os.fsencode(dst.name)).hexdigest()[:PARTIAL_DIGITS]
    return dst.with_name(f"{PARTIAL_PREFIX}{tag}-{digest}")


PARTIAL_PREFIX, PARTIAL_DIGITS = ".partial-", 16


def umask() -> int:
    """This process's umask, read without changing it where /proc tells it (read each
    time: a few microseconds next to a copy, and a process may change it)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1], 8) for line in status
                        if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)  # no /proc: set and restore (not thread-safe, but rare)
        os.umask(mask)
        return mask


def like_cp(src_mode: int) -> int:
    """The mode `cp` gives a new copy: the source's permission bits, masked by the umask."""
    return src_mode & 0o777 & ~umask()


def make_dirs(folder: Path, like: Path | None = None) -> None:
    """mkdir -p without recursion (Path.mkdir recurses once per missing level, and a tree
    may be 2,000 folders deep). A file in the way is left for the next open to report.
    With `like`, the source folder `folder` copies, each new folder gets the mode of its
    source folder as `cp -r` gives it, owner rwx kept (the site writes into them)."""
    pending: list[tuple[str, Path | None]] = [(os.fspath(folder), like)]
    while pending:
        path, model = pending[-1]
        try:
            os.mkdir(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                raise
            pending.append((parent, None if model is None else model.parent))
            continue
        except FileExistsError:
            model = None
        if model is not None:
            with contextlib.suppress(OSError):
                os.chmod(path, like_cp(os.stat(model).st_mode) | 0o700)
        pending.pop()


def copy_atomic(src: Path, dst: Path, tag: str, verify: bool = False,
                guard: Callable[[], AbstractContextManager] = contextlib.nullcontext,
                keep_mode: bool = False) -> int:
    """Copy src to dst via a hidden partial file renamed into place; returns bytes copied.
    With `keep_mode` the copy (and the folders made for it) keep the source's mode as
    `cp` does, else it gets the default mode of a new file (0666 & ~umask).

    The rename runs inside `guard()`, which may raise to refuse it (a cancel). A partial
    file of the same tag left by a killed copy is replaced, not kept."""
    make_dirs(dst.parent, src.parent if keep_mode else None)
    partial = partial_path(dst, tag)
    partial.unlink(missing_ok=True)
    try:
        # 0600 while it is written: the final mode may lack the owner's write bit
        with open(src, "rb") as reader, os.fdopen(os.open(partial, _PARTIAL_FLAGS, 0o600),
                                                  "wb") as writer:
            mode = like_cp(os.fstat(reader.fileno()).st_mode) if keep_mode else \
                0o666 & ~umask()
            while chunk := reader.read(1 << 20):
                writer.write(chunk)
            writer.flush()
            os.fchmod(writer.fileno(), mode)
            os.fsync(writer.fileno())
        if verify and md5(src) != md5(partial):
            raise OSError(f"checksum mismatch copying {src}")
        with guard():
            os.replace(partial, dst)  # a half-copied file never appears under its name
    finally:
        partial.unlink(missing_ok=True)
    return src.stat().st_size


def walk_files(folder: Path, check: Callable[[str], object] | None = None) -> Iterator[str]:
    """Relative paths ('/a/b.dat') of every file under folder, in a stable order."""
    return (relative for relative, is_dir in walk(folder, check) if not is_dir)


def walk(folder: Path, check: Callable[[str], object] | None = None) -> Iterator[tuple[str, bool]]:
    """(relative path, is a folder) of every folder and file under folder, in a stable
    order: a folder (the top one is '') before what it holds, its files before its
    subfolders.

    Iterative (os.walk recurses once per level; a legal tree may be 2,000 deep).
    Symlinked folders are entered (each real folder once, so a loop ends) after
    `check(path)`, which raises to refuse one that leads out of bounds; the caller
    resolves, and confines, every file found. An unreadable folder raises."""
    top = os.fspath(folder)
    stack = [(top, "", os.path.realpath(top))]  # (path, relative path, real path)
    seen = {stack[0][2]}
    while stack:
        parent, relative, real = stack.pop()
        yield relative, True
        dirs, files = [], []
        with os.scandir(parent) as entries:
            for entry in entries:
                (dirs if _is_dir(entry) else files).append(entry.name)
        kept = []
        for name in sorted(dirs):
            path = os.path.join(parent, name)
            if os.path.islink(path):
                if check is not None:
                    check(path)
                child_real = os.path.realpath(path)
            else:  # no realpath (which lstats every level) where nothing is a link
                child_real = os.path.join(real, name)
            if child_real not in seen:
                seen.add(child_real)
                kept.append((path, f"{relative}/{name}", child_real))
        for name in sorted(files):
            yield f"{relative}/{name}", False
        stack.extend(reversed(kept))


def leaves(entries: Iterable[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    """walk()'s entries without the folders that hold something: what a copy must make
    is the files (their folders come with them) and the empty folders. Resolving each
    folder would cost a tree 2,000 deep its depth squared in lookups."""
    empty: str | None = None  # the last folder, until something is found inside it
    for relative, folder in entries:
        if empty is not None and not relative.startswith(f"{empty}/"):
            yield empty, True
        empty = relative if folder else None
        if not folder:
            yield relative, False
    if empty is not None:
        yield empty, True


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a symlink, as os.walk(followlinks=True) does
    except OSError:
        return False
