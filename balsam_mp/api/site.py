"""Which site the API talks to, and this process's connection to its database.

The site is found from `use_site(path)`, else $BALSAM_SITE_PATH, else the current
directory and its parents. The database opens lazily, once per process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import peewee

from balsam_mp import db, settings
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings

_site: dict[str, Any] = {"path": None, "settings": None, "db": None, "pid": None}


def use_site(path: str | os.PathLike | None) -> Settings:
    """Point the API at a site directory (closes any connection to another site)."""
    close()
    _site["path"] = path
    return current_settings()


def current_settings() -> Settings:
    if _site["settings"] is None:
        _site["settings"] = settings.load(_site["path"])
    return _site["settings"]


def connect() -> None:
    """Open this process's connection to the site database if it is not open yet."""
    if _site["db"] is None or _site["pid"] != os.getpid():
        _site["db"] = db.connect(current_settings().database_path)
        _site["pid"] = os.getpid()


def database() -> peewee.Database:
    connect()
    return _site["db"]


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE); a database failure, such as the write
    lock not coming within the timeout, reaches the user as a BalsamError."""
    try:
        with database().atomic():
            yield
    except peewee.PeeweeException as exc:
        raise BalsamError(f"site database: {exc}") from None


def close() -> None:
    if _site["db"] is not None and _site["pid"] == os.getpid():
        _site["db"].close()
    _site.update(settings=None, db=None, pid=None)
