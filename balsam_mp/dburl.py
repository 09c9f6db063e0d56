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


# libpq's keyword form (host=... password=...): refused, and never shown with its password
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"((?:^|&)(?:ssl)?password=)[^&#]*", re.IGNORECASE)
# a URL starts with its scheme: anything else (even holding `://` in a value) is read as
# a keyword string, so its password is masked
_URL_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_database_url(url: Any, where: str = DATABASE_URL_ENV) -> str:
    """A postgresql://user@host:port/dbname URL, without a password (it would sit in
    plain text in settings.yml or the environment of every process: libpq reads it from
    ~/.pgpass or $PGPASSWORD instead). Messages show it with any password masked."""
    if not isinstance(url, str) or not url or any(c in url for c in "\0\n\r"):
        raise SettingsError(f"{where}: must be a postgresql://user@host:port/dbname URL, "
                            f"got {display_url(url) if isinstance(url, str) else url!r}")
    shown = display_url(url)
    if not _URL_FORM.match(url) and "=" in url:
        raise SettingsError(f"{where}: {shown!r} is a libpq keyword string; write it as a "
                            "URL, postgresql://user@host:port/dbname, with the password in "
                            "~/.pgpass (chmod 600) or $PGPASSWORD")
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
        query = {key.lower() for key in urllib.parse.parse_qs(parts.query)}
    except ValueError as exc:
        raise SettingsError(f"{where}: {shown!r} is not a valid URL: {exc}") from None
    # a `:` before the last `@` may be a password holding `/`, `?` or `#` (which end the
    # user part for a parser): refused as one, whatever else it could be
    if password is not None or query & {"password", "sslpassword"} or \
            _secret_span(url) is not None:
        raise SettingsError(f"{where}: the URL carries a password; remove it and put it in "
                            "~/.pgpass (chmod 600) or $PGPASSWORD, so it is never stored "
                            "in settings.yml nor shown in a process list")
    if not url.startswith(SCHEME):
        raise SettingsError(f"{where}: {shown!r} is not a postgresql:// URL (written so, in "
                            "lower case; without one the site uses SQLite at database_path)")
    hosts = parts.netloc.rpartition("@")[2].split(",")  # libpq tries several in turn
    for host in hosts:
        try:
            urllib.parse.urlsplit(f"//{host}").port  # noqa: B018 - raises if not a number
        except ValueError as exc:
            raise SettingsError(f"{where}: {shown!r} is not a valid URL: {exc}") from None
    if not parts.path.strip("/"):
        raise SettingsError(f"{where}: {shown!r} names no database (postgresql://user@host:"
                            "port/dbname)")
    return url


def _secret_span(url: str) -> tuple[int, int] | None:
    """Where a URL's password may be: from the first `:` after `://` to the last `@`.
    Wider than a parser's reading on purpose: a password holding `/`, `@`, `?` or `%`
    ends the user part early for a parser (and libpq), not for this."""
    start = url.find("://")
    if start < 0:
        return None
    at, colon = url.rfind("@"), url.find(":", start + 3)
    return (colon + 1, at) if 0 <= colon < at else None


def display_url(url: str) -> str:
    """The URL as shown in messages: never with a password, in the user part, the query
    or a libpq keyword string (settings refuse all three; a refused one is still shown
    masked)."""
    if not _URL_FORM.match(url):
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    span = _secret_span(url)
    if span is not None:
        url = f"{url[:span[0]]}***{url[span[1]:]}"
    head, mark, query = url.partition("?")
    return head + mark + _QUERY_PASSWORD.sub(r"\1***", query)


def hide_secrets(text: str, url: str) -> str:
    """A message (a driver's error, which may echo parts of the URL it was given) with
    every piece of the URL's password replaced by ***."""
    secrets = {m.group(2) for m in _KEYWORD_PASSWORD.finditer(url)}
    span = _secret_span(url)
    if span is not None:
        secret = url[span[0]:span[1]]
        secrets |= {secret, urllib.parse.unquote(secret)}
        secrets |= {piece for piece in re.split(r"[/@:?#%]", secret) if len(piece) >= 2}
    secrets |= {m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)}
    text = text.replace(url, display_url(url))
    for secret in sorted((s.strip("'") for s in secrets if s), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


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
        raise fail("database_url", f"{display_url(url)!r} differs from ${DATABASE_URL_ENV} "
                   f"or --database-url ({display_url(env)!r}); give one of them")
    return url
