"""database_url: where a site on PostgreSQL keeps its tables (settings.yml or
$BALSAM_DATABASE_URL), checked before anything connects."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from balsam_mp.errors import SettingsError

DATABASE_URL_ENV = "BALSAM_DATABASE_URL"


SCHEME = "postgresql://"  # as peewee and libpq read it: any other spelling is refused


def check_database_url(url: Any, where: str = DATABASE_URL_ENV) -> str:
    """A postgresql://user@host:port/dbname URL, without a password (it would sit in
    plain text in settings.yml or the environment of every process: libpq reads it from
    ~/.pgpass or $PGPASSWORD instead). Messages show it with any password masked."""
    if not isinstance(url, str) or not url or any(c in url for c in "\0\n\r"):
        raise SettingsError(f"{where}: must be a postgresql://user@host:port/dbname URL, "
                            f"got {display_url(url) if isinstance(url, str) else url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
        query = {key.lower() for key in urllib.parse.parse_qs(parts.query)}
    except ValueError as exc:
        raise SettingsError(f"{where}: {display_url(url)!r} is not a valid URL: "
                            f"{exc}") from None
    if password is not None or "password" in query:
        raise SettingsError(f"{where}: the URL carries a password; remove it and put it in "
                            "~/.pgpass (chmod 600) or $PGPASSWORD, so it is never stored "
                            "in settings.yml nor shown in a process list")
    if not url.startswith(SCHEME):
        raise SettingsError(f"{where}: {url!r} is not a postgresql:// URL (written so, in "
                            "lower case; without one the site uses SQLite at database_path)")
    hosts = parts.netloc.rpartition("@")[2].split(",")  # libpq tries several in turn
    for host in hosts:
        try:
            urllib.parse.urlsplit(f"//{host}").port  # noqa: B018 - raises if not a number
        except ValueError as exc:
            raise SettingsError(f"{where}: {url!r} is not a valid URL: {exc}") from None
    if not parts.path.strip("/"):
        raise SettingsError(f"{where}: {url!r} names no database (postgresql://user@host:port"
                            "/dbname)")
    return url


def display_url(url: str) -> str:
    """The URL as shown in messages: never with a password, in the user part or the
    query (settings refuse both; a refused URL is still shown masked)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return re.sub(r":[^:@/]*@", ":***@", url.split("?")[0])  # cannot parse: mask
    if password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@"))
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower() == "password" for key, _ in query):
        parts = parts._replace(query=urllib.parse.urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in query], safe="*"))
    return parts.geturl()


def parse_database_url(value: Any, fail: Callable[[str, str], Exception]) -> str | None:
    """settings.yml's database_url, else $BALSAM_DATABASE_URL; both set must agree."""
    env = os.environ.get(DATABASE_URL_ENV) or None
    if env is not None:
        check_database_url(env)
    if value is None:
        return env
    try:
        url = check_database_url(value, "database_url")
    except SettingsError as exc:
        raise fail("database_url", str(exc).removeprefix("database_url: ")) from None
    if env is not None and env != url:
        raise fail("database_url", f"{url!r} differs from ${DATABASE_URL_ENV} or "
                   f"--database-url ({env!r}); give one of them")
    return url
