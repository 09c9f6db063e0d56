"""The local runner's view of one item: confined paths, and errors pinned on one file.

Every error that belongs to one file becomes a `FileError` with a Globus-like code and
that file's own path; only `TaskError`s (a root gone, a full disk) stop the whole task.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from balsam_mp.transfer.filecopy import leaves, walk

# errno -> the code Globus reports for the same trouble with one file
FILE_CODES = {
    errno.ENOENT: "FILE_NOT_FOUND", errno.EACCES: "PERMISSION_DENIED",
    errno.EPERM: "PERMISSION_DENIED", errno.EROFS: "PERMISSION_DENIED",
    errno.ENOTDIR: "NOT_A_DIRECTORY", errno.EISDIR: "IS_A_DIRECTORY",
    errno.EEXIST: "FILE_EXISTS", errno.ENOTEMPTY: "FILE_EXISTS",
    errno.ENAMETOOLONG: "NAME_TOO_LONG", errno.ELOOP: "INVALID_PATH",
    errno.EINVAL: "INVALID_PATH", errno.EILSEQ: "INVALID_PATH",
}
# errno -> code of the errors that no file of the task can escape
TASK_CODES = {errno.ENOSPC: "QUOTA_EXCEEDED", errno.EDQUOT: "QUOTA_EXCEEDED"}


class FileError(Exception):
    """One file's trouble: fails only its own item."""

    def __init__(self, code: str, path: str, detail: str, source: bool = False) -> None:
        super().__init__(f"{path}: {detail}")
        self.code, self.source = code, source


class TaskError(Exception):
    """Trouble every file of the task shares: fails the task."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Root:
    """A folder paths are confined to, resolved once (it may itself be a symlink)."""

    given: str
    real: str

    @classmethod
    def of(cls, folder: str) -> Root:
        return cls(folder, os.path.realpath(folder))

    def check_exists(self) -> None:
        if not os.path.isdir(self.real):
            raise TaskError("ENDPOINT_ERROR", f"{self.given} is not a folder (gone or unmounted)")

    def contains(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real.rstrip("/") + "/")

    def confine(self, real: str, shown: str) -> str:
        if not self.contains(real):
            raise FileError("PERMISSION_DENIED", shown, f"leads outside {self.given}")
        return real

    def resolve(self, path: str, joined: bool) -> Path:
        """`path` (inside the root when `joined`, else absolute), every symlink followed."""
        if "\0" in path:
            raise FileError("INVALID_PATH", path.replace("\0", "\\0"), "contains a NUL byte")
        full = os.path.join(self.real, path.lstrip("/")) if joined else path
        return Path(self.confine(os.path.realpath(full), path))


def file_error(exc: OSError | ValueError, shown: str, source: bool = False) -> Exception:
    """The error a failed file operation means: one file's, or the whole task's."""
    if isinstance(exc, ValueError):  # e.g. an embedded NUL byte
        return FileError("INVALID_PATH", shown, str(exc), source)
    if exc.errno in TASK_CODES:
        return TaskError(TASK_CODES[exc.errno], f"{shown}: {exc.strerror}")
    code = FILE_CODES.get(exc.errno, "FILE_ERROR")
    return FileError(code, shown, exc.strerror or str(exc), source)


@dataclass(frozen=True)
class Pair:
    """One file to copy: real paths, and the paths to name in its errors."""

    src: Path
    dest: Path
    src_shown: str
    dest_shown: str
    folder: bool = False  # a folder of a recursive item: made at the destination, even empty


def plan(item: dict, inbound: bool, remote: Root, site: Root) -> list[Pair]:
    """Every file of an item, each path resolved inside its root.

    Raises FileError before anything is copied when any of them leads out of its root."""
    src_root, dest_root = (remote, site) if inbound else (site, remote)
    src_name, dest_name = item["src"], item["dest"]
    try:
        src = src_root.resolve(src_name, joined=src_root is remote)
        dest = dest_root.resolve(dest_name, joined=dest_root is remote)
        if not src.exists():
            raise FileError("FILE_NOT_FOUND", src_name, "no such file or directory", True)
        if not src.is_dir():
            return [Pair(src, dest, src_name, dest_name)]
        if not item["recursive"]:
            raise FileError("IS_A_DIRECTORY", src_name, "is a directory (not recursive)", True)

        def shown(base: str, path: str) -> str:
            return base.rstrip("/") + "/" + os.path.relpath(path, src)

        pairs = []
        for relative, folder in leaves(walk(src, lambda path: src_root.confine(
                os.path.realpath(path), shown(src_name, path)))):
            src_shown, dest_shown = src_name.rstrip("/") + relative, \
                dest_name.rstrip("/") + relative
            pairs.append(Pair(
                Path(src_root.confine(os.path.realpath(f"{src}{relative}"), src_shown)),
                Path(dest_root.confine(os.path.realpath(f"{dest}{relative}"), dest_shown)),
                src_shown, dest_shown, folder))
        return pairs
    except (OSError, ValueError) as exc:
        raise file_error(exc, src_name, source=True) from exc
