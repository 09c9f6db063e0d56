"""One line for a failed SQLite site database: the file and the cause.

The cause comes from SQLite's error code and from what the file system says about the
file and its folder (never from the text of a message): a full disk or an exhausted
quota is "disk full" or "disk quota exceeded" wherever it shows, not whatever SQLite
said on the way out ("cannot rollback - no transaction is active", "disk I/O error").
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from balsam_mp.errors import DatabaseFailure, DiskFull

PROBE_BYTES = 64 * 1024  # written (and never linked) to ask the disk why a write failed
READONLY_DBMOVED = 1032  # SQLITE_READONLY_DBMOVED: the file was renamed or unlinked
_PRIMARY = {
    sqlite3.SQLITE_CORRUPT: "database disk image is malformed",
    sqlite3.SQLITE_NOTADB: "file is not a database",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_AUTH: "permission denied",
    sqlite3.SQLITE_BUSY: "database is locked: another process held the write lock too long",
    sqlite3.SQLITE_LOCKED: "database is locked",
}


def sqlite_error(exc: BaseException) -> sqlite3.Error | None:
    """The sqlite3 error behind `exc` (peewee wraps it and keeps it as its first arg)."""
    for candidate in (exc, *exc.args[:1], exc.__cause__, exc.__context__):
        if isinstance(candidate, sqlite3.Error):
            return candidate
    return None


def explain(path: Path, exc: BaseException) -> DatabaseFailure:
    """The BalsamError to raise for `exc`, met while using the database file `path`."""
    error = sqlite_error(exc)
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        space = disk_space_problem(path)
        if space:
            return DiskFull(f"{path}: {space}; free space there, or move the database "
                            "(database_path in settings.yml)")
    if primary == sqlite3.SQLITE_FULL:
        return DiskFull(f"{path}: disk full")
    if primary == sqlite3.SQLITE_CANTOPEN:
        cause = _cannot_open(path)
    elif primary == sqlite3.SQLITE_READONLY:
        cause = _read_only(path, code)
    elif primary in _PRIMARY:
        cause = _PRIMARY[primary]
    elif primary == sqlite3.SQLITE_IOERR:
        cause = f"disk I/O error ({getattr(error, 'sqlite_errorname', code)})"
        if _wal_lost(path):
            cause = (f"{path.name}-wal was deleted (or emptied) while a process had it open "
                     f"({cause}); stop every process using the site (`balsam site stop`), "
                     "then it opens again, without the commits that were only in the WAL")
    else:
        cause = str(error or exc) or type(exc).__name__
    return DatabaseFailure(f"{path}: {cause}")


def disk_space_problem(path: Path) -> str | None:
    """'disk full' or 'disk quota exceeded' if a small write next to `path` fails so."""
    try:
        with tempfile.TemporaryFile(dir=path.parent) as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return "disk full"
        if exc.errno == errno.EDQUOT:
            return "disk quota exceeded"
    return None


def _wal_lost(path: Path) -> bool:
    """-shm indexes a WAL, but the -wal file is gone or empty."""
    try:
        if os.stat(path.with_name(path.name + "-shm")).st_size == 0:
            return False
    except OSError:
        return False
    try:
        return os.stat(path.with_name(path.name + "-wal")).st_size == 0
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _denied(path: Path, mode: int) -> bool:
    try:
        return not os.access(path, mode)
    except OSError:
        return False


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _cannot_open(path: Path) -> str:
    folder = path.parent
    if _read_only_fs(path):
        return (f"read-only file system (SQLite must make {path.name}-wal and -shm next "
                "to it, even to read)")
    if _denied(folder, os.X_OK):
        return f"permission denied on its folder {folder}"
    if not present(path):
        return "missing (deleted or moved?); restore it, or run `balsam site init` anew"
    if _denied(path, os.R_OK | os.W_OK):
        return "permission denied (this user may not read and write it)"
    for extra in ("-wal", "-shm"):
        side = path.with_name(path.name + extra)
        if present(side) and _denied(side, os.R_OK | os.W_OK):
            return f"permission denied on {side.name}"
    if _denied(folder, os.W_OK):
        return (f"permission denied on its folder {folder} (SQLite makes {path.name}-wal "
                "and -shm there)")
    return "unable to open the database file"


def _read_only(path: Path, code: int | None) -> str:
    if code == READONLY_DBMOVED:
        return "the file was deleted or replaced while open"
    if _read_only_fs(path):
        return "read-only file system"
    if _denied(path, os.W_OK):
        return "permission denied (read-only for this user)"
    if _denied(path.parent, os.W_OK):
        return f"permission denied on its folder {path.parent} (read-only for this user)"
    return "attempt to write a readonly database"


def present(path: Path) -> bool:
    """False only if the file is not there (a folder we may not enter: SQLite says so)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


def create_file(path: Path, mode: int) -> None:
    """An empty file with `mode` whatever the umask, for SQLite to fill."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseFailure(f"{path}: cannot create the site database: {exc.strerror}") \
            from None
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
