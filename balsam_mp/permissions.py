"""Who may read a site: its owner alone (`site_permissions: private`, the default), or
its group too (`group`), whatever the umask.

A login node is shared by hundreds of users: a site's database, settings and logs name
every job's files and parameters. So the site's own files get explicit modes: folders
0700 and files 0600 (group: 0750 with the setgid bit, so new files keep the site's
group, and 0640). `.run/` and its lock files are the owner's alone in both cases: a
lock file another user could open is a lock they could take. The contents of `data/`
are the jobs' files: they keep the modes their copies give them (see filecopy.py).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

PERMISSIONS = ("private", "group")


@dataclass(frozen=True)
class Modes:
    folder: int
    file: int


MODES = {"private": Modes(0o700, 0o600), "group": Modes(0o2750, 0o640)}
RUNTIME = Modes(0o700, 0o600)  # .run/ and the locks, whatever the setting


def make_folder(path: Path, mode: int) -> Path:
    """mkdir with `mode` whatever the umask (an existing folder gets `mode` too)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if os.path.islink(path):  # e.g. data/ pointing at scratch: its owner's business
            return path
    os.chmod(path, mode)
    return path


def open_file(path: Path, flags: int, mode: int) -> int:
    """os.open that leaves the file with `mode`, whatever the umask or its old mode."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_file(path: Path, text: str, mode: int) -> None:
    """Write `text` to `path` by renaming a partial file with `mode` into place."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    with os.fdopen(open_file(partial, os.O_WRONLY | os.O_TRUNC, mode), "w") as out:
        out.write(text)
    os.replace(partial, path)


def site_files(site_path: Path, database: Path | None) -> list[tuple[Path, Modes]]:
    """The site's own files and folders, each with the modes it follows (RUNTIME or the
    setting's, filled in by the caller): what `apply` sets and `too_wide` checks."""
    setting = Modes(-1, -1)  # placeholder: the setting's modes
    found: list[tuple[Path, Modes]] = [(site_path, setting)]
    for name in ("settings.yml", "apps", "data", "logs", "local_tasks", ".run"):
        found.append((site_path / name, RUNTIME if name in (".run", "local_tasks")
                      else setting))
    for folder, modes in ((site_path / "apps", setting), (site_path / "logs", setting),
                          (site_path / ".run", RUNTIME)):
        try:
            found += [(child, modes) for child in sorted(folder.iterdir())
                      if not child.is_symlink()]
        except OSError:
            pass
    found += [(pid, setting) for pid in sorted(site_path.glob("site*.pid"))]
    if database is not None:
        found += [(database.with_name(database.name + extra), setting)
                  for extra in ("", "-wal", "-shm")]
    return found


def _modes_of(path: Path, modes: Modes, setting: Modes) -> tuple[int, int] | None:
    """(the mode `path` should have, the mode it has), or None if it is not there (a
    file may go between the listing and here: a rotated log) or is a symlink."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None
    modes = setting if modes.folder < 0 else modes
    wanted = modes.folder if stat.S_ISDIR(info.st_mode) else modes.file
    return wanted, stat.S_IMODE(info.st_mode)


def apply(site_path: Path, permissions: str, database: Path | None) -> None:
    """Give the site's own files the modes of `permissions` (at start and sync): take
    away every bit the setting does not give, and give the group what `group` says. The
    owner's own bits are never added (a file its owner made unreadable stays so)."""
    setting = MODES[permissions]
    for path, modes in site_files(site_path, database):
        found = _modes_of(path, modes, setting)
        if found is None:
            continue
        wanted, current = found
        new = (current & wanted & 0o700) | (wanted & ~0o700)
        if new != current:
            try:
                os.chmod(path, new)
            except OSError:  # e.g. a file another user owns: `too_wide` tells
                pass


def too_wide(site_path: Path, permissions: str, database: Path | None) -> list[str]:
    """'path (0644)' for every file of the site whose mode lets more users in than
    `permissions` says."""
    setting = MODES[permissions]
    found = []
    for path, modes in site_files(site_path, database):
        modes_of = _modes_of(path, modes, setting)
        if modes_of is not None and modes_of[1] & 0o077 & ~modes_of[0]:
            found.append(f"{path} ({modes_of[1] & 0o777:04o})")
    return found
