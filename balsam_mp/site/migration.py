"""`balsam site migrate --database-url URL`: a stopped SQLite site moves to PostgreSQL.

The order leaves one usable site whatever fails: nothing of the site may run (and the
supervisor's lock is held throughout, so no `site start` slips in); the new settings.yml
is written aside and read back first; the copy commits on PostgreSQL or rolls back
(db/transplant.py); only then does settings.yml switch, by a rename, and site.db is
renamed as a backup last (the site no longer reads it by then).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from balsam_mp import permissions, settings
from balsam_mp.db import transplant
from balsam_mp.db.postgres import open_postgres, schema_of
from balsam_mp.dburl import DATABASE_URL_ENV, check_database_url, display_url
from balsam_mp.errors import BalsamError
from balsam_mp.site import pidfile
from balsam_mp.yamlfile import read_yaml

_EXAMPLE = "\n# database_url: postgresql://"  # the template's commented example
_TOP_LEVEL_URL = re.compile(r"^database_url:.*$", re.MULTILINE)


@dataclass(frozen=True)
class Moved:
    site: str
    url: str  # as shown: never with a password
    schema: str
    copied: transplant.Copied
    backup: list[Path]  # site.db (and any -wal, -shm) under their new names
    note: str | None = None  # what went wrong renaming site.db, if anything


def migrate(site_path: Path, url: str) -> Moved:
    """Copy the stopped SQLite site at `site_path` into a new schema at `url`, then
    point its settings.yml there and keep site.db as a backup."""
    file = site_path / settings.SETTINGS_FILE
    url = check_database_url(url, "--database-url")
    shown = display_url(url)
    raw = read_yaml(file)
    raw = {} if raw is None else raw
    if isinstance(raw, dict) and raw.get("database_url") is not None:
        raise BalsamError(f"{file}: the site is on PostgreSQL already (database_url: "
                          f"{display_url(str(raw['database_url']))}); nothing to migrate")
    env = os.environ.get(DATABASE_URL_ENV)
    if env and env != url:
        raise BalsamError(f"${DATABASE_URL_ENV} names another database ({display_url(env)}) "
                          f"than --database-url ({shown}); unset it, or give the same URL")
    site = settings.load(site_path)  # the whole file is valid before anything moves
    with _site_lock(site), _new_settings(file, raw, url) as partial:
        source = transplant.open_source(site.database_path)
        try:
            database = open_postgres(url, site.site_name)
            try:
                transplant.bind(database)
                transplant.refuse_occupied(database)
                copied = transplant.copy(source, database)
            finally:
                database.close()
            _switch(partial, file, shown, schema_of(site.site_name))
        finally:
            transplant.close_source(source)
    backup, note = _keep_backup(site.database_path)
    return Moved(site.site_name, shown, schema_of(site.site_name), copied, backup, note)


@contextlib.contextmanager
def _site_lock(site: settings.Settings) -> Iterator[None]:
    """Refuse a site that runs (or whose workers outlive their supervisor); hold the
    supervisor's lock meanwhile, so a `site start` halts at once."""
    info = pidfile.read(site.site_path)
    if info is not None and not info.damaged:
        if not info.here:
            raise BalsamError(f"site {site.site_name} is running on host {info.host} (pid "
                              f"{info.pid}), says its pidfile; stop it there first")
        if info.alive():
            raise BalsamError(f"site {site.site_name} is running (pid {info.pid}); stop it "
                              "first: balsam site stop")
        for name, pid in (info.workers or {}).items():
            if _still_running(pid, pidfile.path_of(site.site_path)):
                raise BalsamError(f"site {site.site_name}: its {name} (pid {pid}) still "
                                  "runs after its supervisor ended; it leaves within "
                                  "seconds: wait, or kill it, then migrate")
    folder = permissions.make_folder(site.site_path / ".run", permissions.RUNTIME.folder)
    with os.fdopen(permissions.open_file(folder / "supervisor.lock", os.O_WRONLY,
                                         permissions.RUNTIME.file), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BalsamError(f"site {site.site_name} is running: a supervisor (or a migrate) "
                              f"holds its lock ({folder / 'supervisor.lock'}); stop it "
                              "first") from None
        yield


def _still_running(pid: int, written: Path) -> bool:
    """A worker the pidfile names, alive (not a later process that reused its pid)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and \
            process.create_time() <= written.stat().st_mtime + 1.0
    except (psutil.Error, OSError):
        return False


@contextlib.contextmanager
def _new_settings(file: Path, raw: dict, url: str) -> Iterator[Path]:
    """settings.yml with `database_url: URL` added and all else kept (comments too),
    written beside it with its mode and read back; removed unless renamed into place."""
    text = file.read_text()
    line = f"database_url: {json.dumps(url)}"
    at_end = f"{text.rstrip(chr(10))}\n{line}\n" if text.strip() else f"{line}\n"
    candidates = [at_end]
    if "database_url" in raw:  # `database_url: null`: that line gets the URL
        candidates = [_TOP_LEVEL_URL.sub(lambda _: line, text, count=1)]
    elif _EXAMPLE in text:  # first choice: under the template's commented example
        end = text.find("\n", text.index(_EXAMPLE) + 1)
        candidates.insert(0, f"{text}\n{line}\n" if end < 0 else
                          f"{text[:end]}\n{line}{text[end:]}")
    for stale in file.parent.glob(f".{file.name}.migrate.*"):  # of a migrate killed
        stale.unlink(missing_ok=True)  # (we hold the lock: no other one runs)
    partial = file.with_name(f".{file.name}.migrate.{os.getpid()}")
    mode = stat.S_IMODE(file.stat().st_mode)
    try:
        for candidate in candidates:
            with os.fdopen(permissions.open_file(partial, os.O_WRONLY | os.O_TRUNC, mode),
                           "w") as out:
                out.write(candidate)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(BalsamError):  # then the next place, if any
                if read_yaml(partial) == {**raw, "database_url": url}:
                    break
        else:
            raise BalsamError(f"{file}: cannot add database_url at its top level (is it "
                              "written in flow style?); write it in block style, then migrate")
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _switch(partial: Path, file: Path, shown: str, schema: str) -> None:
    """The new settings.yml into place: from here on the site is on PostgreSQL."""
    try:
        os.replace(partial, file)
    except OSError as exc:
        raise BalsamError(f"the site is copied into schema {schema} of {shown}, but {file} "
                          f"could not be switched: {exc.strerror or exc}; add `database_url: "
                          f"{shown}` to it yourself (site.db stays unused), or drop that "
                          "schema to stay on SQLite") from None
    with contextlib.suppress(OSError):  # the rename done, make it durable if we can
        fd = os.open(file.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _keep_backup(database: Path) -> tuple[list[Path], str | None]:
    """site.db, and any -wal and -shm, renamed site.db.migrated-<UTC time>[-wal|-shm]."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept, name = [], f"{database.name}.migrated-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        old, new = database.with_name(database.name + suffix), database.with_name(name + suffix)
        try:
            if not old.exists():
                continue
            if new.exists():
                raise FileExistsError(0, "a file of that name is in the way", str(new))
            os.rename(old, new)
            kept.append(new)
        except OSError as exc:
            return kept, (f"could not rename {old} to {new}: {exc.strerror or exc}; the site "
                          "no longer uses it (rename or remove it yourself)")
    return kept, None
