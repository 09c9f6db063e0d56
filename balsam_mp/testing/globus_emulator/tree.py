"""What one transfer item covers, walked as Globus walks it: its files and folders.

Globus' documented rules (`globus transfer` reference, SDK `TransferData` docs): a
source file goes to the destination path; a source folder's contents go inside the
destination folder, made with its missing parents, empty folders included; an item
without `recursive` has its type detected; `filter_rules` apply, in order, to the
names found while walking (the first match decides; an excluded folder excludes all
it holds).
"""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path

from balsam_mp.testing.globus_emulator.paths import confine, resolve
from balsam_mp.testing.globus_emulator.task import TransferEntry
from balsam_mp.transfer.filecopy import leaves, walk


def expand(root: Path, entry: TransferEntry,
           rules: list[dict] | None) -> tuple[list[tuple[Path, str, bool]], int]:
    """(real source path, suffix of the destination path, is a folder) of the files and
    empty folders of an item (a folder that holds something is made with it), and how
    many folders it has in all.

    Raises FileNotFoundError, IsADirectoryError (a folder named by an item that says
    it is not recursive), PermissionError or PathEscape before anything is copied."""
    src = resolve(root, entry.source_path)
    if not src.exists():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", entry.source_path)
    if not src.is_dir():
        return [(src, "", False)], 0  # recursive or not, as `cp -r` copies a file
    if entry.recursive is False:
        raise IsADirectoryError(errno.EISDIR, "Is a directory (not recursive)",
                                entry.source_path)
    base = entry.source_path.rstrip("/")

    def inside(folder: str) -> None:  # errors name the endpoint path, never ours
        confine(root, folder, f"{base}/{os.path.relpath(folder, src)}")

    kept = list(_filtered(walk(src, inside), rules))
    parts = [(resolve(root, base + relative), relative, folder)
             for relative, folder in leaves(kept)]
    return parts, sum(1 for _, folder in kept if folder)


def _filtered(entries: Iterator[tuple[str, bool]],
              rules: list[dict] | None) -> Iterator[tuple[str, bool]]:
    excluded: list[str] = []
    for relative, folder in entries:
        if relative and (any(relative.startswith(f"{gone}/") for gone in excluded)
                         or _excluded(relative, folder, rules)):
            if folder:
                excluded.append(relative)
            continue
        yield relative, folder


def _excluded(relative: str, folder: bool, rules: list[dict] | None) -> bool:
    name = relative.rsplit("/", 1)[-1]
    for rule in rules or []:
        if rule.get("type") not in (None, "dir" if folder else "file"):
            continue
        if fnmatch.fnmatchcase(name, rule["name"]):
            return rule["method"] == "exclude"
    return False
