"""What a path must be before a job may name it, and job folders made all or nothing.

A path no file system can hold (a NUL byte, a component over NAME_MAX bytes, more than
PATH_MAX bytes in all, bytes that are not UTF-8) is refused when the job is created, not
found out later by a transfer that then fails a whole batch.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path, PurePosixPath
from typing import Any

from balsam_mp.errors import ValidationError

NAME_MAX = 255  # bytes in one path component (Linux, and what Globus endpoints accept)
PATH_MAX = 4096  # bytes in a whole path


def shown(path: str, limit: int = 60) -> str:
    """A path short enough for a one-line message."""
    return repr(path if len(path) <= limit else f"{path[:limit]}...")


def check_limits(what: str, path: str, name_max: int = NAME_MAX,
                 path_max: int = PATH_MAX) -> None:
    """Refuse what no file system can hold."""
    if "\0" in path:
        raise ValidationError(f"{what}: {shown(path)} contains a NUL byte")
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what}: {shown(path)} is not valid UTF-8") from None
    if len(raw) > path_max:
        raise ValidationError(f"{what}: {shown(path)} is {len(raw)} bytes long; "
                              f"the limit is {path_max}")
    for part in raw.split(b"/"):
        if len(part) > name_max:
            name = part.decode("utf-8", "replace")
            inside = "" if name == path else f" in {shown(path)}"
            raise ValidationError(f"{what}: name {shown(name, 40)}{inside} is "
                                  f"{len(part)} bytes long; the limit is {name_max}")


def check_relative_path(what: str, path: Any) -> PurePosixPath:
    """A path that stays inside its root: relative, no '..', within the limits."""
    if not isinstance(path, str) or not path:
        raise ValidationError(f"{what}: must be a non-empty string, got {path!r}")
    check_limits(what, path)
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ValidationError(f"{what}: {shown(path)} must be relative")
    if ".." in pure.parts:
        raise ValidationError(f"{what}: {shown(path)} escapes its directory with '..'")
    return pure


def name_max_of(folder: Path) -> int:
    """The longest file name the file system holding `folder` accepts."""
    try:
        return min(NAME_MAX, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def overlap(paths: dict[str, PurePosixPath]) -> tuple[str, str] | None:
    """Two names whose paths are the same, or one inside the other (None if no two are)."""
    ordered = sorted(paths.items(), key=lambda kv: kv[1].parts)
    for (name_a, a), (name_b, b) in itertools.pairwise(ordered):
        if b.parts[:len(a.parts)] == a.parts:
            return name_a, name_b
    return None


class Folders:
    """Makes job folders before their jobs are committed; can undo exactly what it made.

    A folder that already existed is not ours to remove; another `bulk_create` may have
    made it and may commit a job on it."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.found: list[str] = []
        self._known: set[str] = set()

    def make(self, what: str, path: str) -> None:
        try:
            self._make(path)
        except OSError as exc:
            raise ValidationError(f"{what}: cannot create {shown(path, 80)}: "
                                  f"{exc.strerror or exc}") from None

    def _make(self, path: str) -> None:
        """One mkdir for a new folder whose parent exists (the common case); a loop, not
        recursion, up to the first ancestor that exists (a workdir may be 2,000 deep)."""
        pending = [path]
        while pending:
            folder = pending[-1]
            if folder not in self._known:
                try:
                    os.mkdir(folder)
                    self.made.append(folder)
                except FileNotFoundError:
                    parent = os.path.dirname(folder)
                    if parent == folder:
                        raise
                    pending.append(parent)
                    continue
                except FileExistsError:  # there before, made meanwhile, or a file
                    if not os.path.isdir(folder):
                        raise NotADirectoryError(20, "a file is in the way") from None
                    if folder == path:
                        self.found.append(path)
                self._known.add(folder)
            pending.pop()

    def recheck_found(self) -> None:
        """Recreate folders that existed before and were removed meanwhile (by another
        creator undoing its work): call under lock_job_creation, just before commit."""
        for path in self.found:
            os.makedirs(path, exist_ok=True)

    def undo(self, keep: set[str]) -> None:
        """Remove the folders made here, newest first, except `keep` and non-empty ones."""
        for path in reversed(self.made):
            if path not in keep:
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        self.made.clear()
