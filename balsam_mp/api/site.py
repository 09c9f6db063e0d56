"""Which site the API talks to, and this process's connection to its database.

The site is found from `use_site(path)`, else $BALSAM_SITE_PATH, else the current
directory and its parents. A client without the site directory names the database and
the site instead: `use_database(url, site="polaris")`, or $BALSAM_DATABASE_URL with
$BALSAM_SITE_NAME. The database opens lazily, once per process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import peewee

from balsam_mp import db, settings
from balsam_mp.db.failures import explain
from balsam_mp.db.postgres import site_names as postgres_site_names
from balsam_mp.db.retry import retry_transaction
from balsam_mp.errors import BalsamError, ValidationError, first_line
from balsam_mp.settings import Settings, TransferSettings

T = TypeVar("T")

SITE_NAME_ENV = "BALSAM_SITE_NAME"
_site: dict[str, Any] = {"path": None, "settings": None, "db": None, "pid": None,
                         "client": None, "directory": False, "file": None}


def use_site(path: str | os.PathLike | None) -> Settings:
    """Point the API at a site directory (closes any connection to another site); None:
    $BALSAM_SITE_PATH, then the current directory upward - never $BALSAM_SITE_NAME."""
    close()
    _site.update(path=path, client=None, directory=True)
    return current_settings()


def use_database(url: str | None, site: str) -> Settings:
    """Point the API at a site by its database and name, from a machine without the
    site directory (url None: $BALSAM_DATABASE_URL). Jobs are checked against the apps
    and aliases the site published; the site makes their workdirs before staging."""
    if not isinstance(site, str) or not site:
        raise ValidationError(f"use_database: site must be a site's name, not {site!r}")
    close()
    url = url or os.environ.get(settings.DATABASE_URL_ENV)
    if not url:
        raise BalsamError(f"site {site!r} is named without a database: pass its URL or set "
                          f"${settings.DATABASE_URL_ENV} (or set $BALSAM_SITE_PATH to use a "
                          "site directory)")
    url = settings.check_database_url(url, "database url")
    _site.update(path=None, client=(url, site), directory=False)
    return current_settings()


def current_settings() -> Settings:
    if _site["settings"] is None:
        name = client_site_name()
        if _site["client"] is None and not _site["directory"] and name:
            return use_database(None, name)
        if _site["client"] is not None:
            _site["settings"] = _client_settings(*_site["client"])
        else:
            _site["settings"] = settings.load(_site["path"])
    return _site["settings"]


def client_site_name() -> str | None:
    """$BALSAM_SITE_NAME, when no $BALSAM_SITE_PATH names a site directory."""
    return None if os.environ.get("BALSAM_SITE_PATH") else os.environ.get(SITE_NAME_ENV)


def _client_settings(url: str, site: str) -> Settings:
    _site["db"], _site["pid"] = db.connect(url, site=site), os.getpid()
    published = db.sites.published()
    if published is None:
        raise BalsamError(f"site {site!r} has published no settings in its database yet; "
                          "start it once with `balsam site start`")
    site_path = Path(published["site_path"])
    return Settings(site_path, site, TransferSettings(
        transfer_locations=published["transfer_locations"]), site_path / "site.db",
        database_url=url, client=True)


def site_names(url: str | None = None) -> list[str]:
    """Every site in the PostgreSQL database at `url`, else in the current site's
    database (on SQLite, just the current site)."""
    if url is None:
        current = current_settings()
        if not current.database_url:
            return [current.site_name]
        url = current.database_url
    return postgres_site_names(settings.check_database_url(url, "database url"))


def connect() -> None:
    """Open this process's connection to the site database if it is not open yet."""
    if _site["db"] is None or _site["pid"] != os.getpid():
        _site["db"] = db.connect(current_settings().database,
                                  site=current_settings().site_name)
        _site["pid"] = os.getpid()
        _site["file"] = _identity(current_settings().database)
    _check_same_file()


def _identity(database: Path | str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a SQLite site's file; None on PostgreSQL or if it is gone."""
    if db.is_database_url(database):
        return None
    try:
        info = os.stat(database)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _check_same_file() -> None:
    """A SQLite site's file moved away since this process opened it (`balsam site
    migrate` renames it as a backup): refuse, or the write would land in the backup."""
    if _site["file"] is None or _site["pid"] != os.getpid():
        return
    path = current_settings().database
    if _identity(path) != _site["file"]:
        raise BalsamError(f"{path} was moved or replaced since this process opened it (a "
                          "`balsam site migrate` keeps it as site.db.migrated-*): open the "
                          "site again (api.use_site, or a new process)")


def database() -> peewee.Database:
    connect()
    return _site["db"]


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE); a database failure, such as the write
    lock not coming within the timeout, reaches the user as a BalsamError."""
    try:
        with database().atomic():
            _check_same_file()  # again, holding the write lock (a migrate held it)
            yield
    except (peewee.PeeweeException, sqlite3.Error) as exc:
        raise database_error(exc) from None


def retried(body: Callable[[], T]) -> T:
    """transaction() around `body`, run again whole if PostgreSQL aborts it to break a
    deadlock or a serialization failure (db/retry.py): the user sees neither."""
    def checked() -> T:
        _check_same_file()  # again, holding the write lock (a migrate held it)
        return body()

    try:
        return retry_transaction(database(), checked)
    except (peewee.PeeweeException, sqlite3.Error) as exc:
        raise database_error(exc) from None


def database_error(exc: Exception) -> BalsamError:
    """The BalsamError for a database error that reached the API: a raw sqlite3 error
    (met while rows are fetched) names the file and the cause, as the connection's own."""
    database = current_settings().database
    if isinstance(exc, sqlite3.Error) and not db.is_database_url(database):
        return explain(Path(database), exc)
    first = first_line(exc)
    return BalsamError(f"site database: {first}")  # PostgreSQL adds the query's lines


def close() -> None:
    if _site["db"] is not None and _site["pid"] == os.getpid():
        _site["db"].close()
    _site.update(settings=None, db=None, pid=None, file=None)
