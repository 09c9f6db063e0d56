"""Load and validate a site's settings.yml, once, with one clear message per mistake.

The `transfers:` section is checked in transfersettings.py. Sections of a full Balsam
settings.yml that this site does not use are accepted and ignored with one log line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any

from balsam_mp.dburl import DATABASE_URL_ENV as DATABASE_URL_ENV
from balsam_mp.dburl import check_database_url as check_database_url
from balsam_mp.dburl import parse_database_url
from balsam_mp.errors import SettingsError, SiteNotFound
from balsam_mp.logsettings import LogSettings, parse_logging
from balsam_mp.permissions import MODES, PERMISSIONS, Modes
from balsam_mp.transfersettings import TransferSettings as TransferSettings
from balsam_mp.transfersettings import parse_transfers
from balsam_mp.yamlfile import read_yaml

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.yml"
IGNORED_SECTIONS = (
    "site_id", "title", "filter_tags", "launcher", "scheduler", "processing",
    "elastic_queue", "queue_maintainer", "file_cleaner",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    site_path: Path
    site_name: str
    transfers: TransferSettings
    database_path: Path
    logging: LogSettings = LogSettings()
    database_url: str | None = None  # PostgreSQL instead of database_path, when set
    # a client without the site directory (api.use_database): the site makes workdirs
    client: bool = False
    permissions: str = "private"  # site_permissions: who may read the site's files

    @property
    def modes(self) -> Modes:
        """The folder and file modes of the site's own files (permissions.py)."""
        return MODES[self.permissions]

    @property
    def database_file(self) -> Path | None:
        """site.db's path, or None on PostgreSQL."""
        return None if self.database_url else self.database_path

    @property
    def database(self) -> Path | str:
        """What db.connect() opens: the PostgreSQL URL if set, else the SQLite file."""
        return self.database_url or self.database_path

    @property
    def data_path(self) -> Path:
        return self.site_path / "data"

    @property
    def logs_path(self) -> Path:
        return self.site_path / "logs"

    @property
    def apps_path(self) -> Path:
        return self.site_path / "apps"

    def location(self, alias: str) -> tuple[str, str]:
        """(protocol, address) of a trusted alias."""
        protocol, _, address = self.transfers.transfer_locations[alias].partition("://")
        return protocol, address

    def aliases_without_endpoint(self) -> list[str]:
        """globus:// aliases that wait until transfers.globus_endpoint_id is set (Balsam's
        rendered templates leave it null; Balsam errors their items, we hold them)."""
        if self.transfers.globus_endpoint_id:
            return []
        return [alias for alias in self.transfers.transfer_locations
                if self.location(alias)[0] == "globus"]


SITE_NAME_RULE = ("1 to 64 characters: ASCII letters, digits, '.', '_' and '-', starting with "
                  "a letter or a digit")
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def site_name_problem(name: object) -> str | None:
    """Why `name` cannot name a site, or None. One rule everywhere: it names the site's
    PostgreSQL schema, shows in tables and logs, and goes on command lines unquoted."""
    if isinstance(name, str) and _SITE_NAME.fullmatch(name):
        return None
    return f"site name {name!r} must be {SITE_NAME_RULE}"


def find_site(path: str | os.PathLike | None = None) -> Path:
    """The site directory: `path`, then $BALSAM_SITE_PATH, then cwd and its parents."""
    if path is None:
        path = os.environ.get("BALSAM_SITE_PATH")
    if path is not None:
        site = Path(path).resolve()
        try:
            found = (site / SETTINGS_FILE).is_file()
        except PermissionError:  # another user's site (private, or not our group)
            raise SiteNotFound(f"{site}: permission denied: the site is private to its "
                               "owner (see site_permissions)") from None
        if not found:
            raise SiteNotFound(f"{site} is not a balsam site: it has no {SETTINGS_FILE}")
        return site
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        with contextlib.suppress(PermissionError):  # a folder we may not look into
            if (candidate / SETTINGS_FILE).is_file():
                return candidate
    raise SiteNotFound(
        f"no balsam site in {here} or its parents; pass --site PATH or set BALSAM_SITE_PATH"
    )


def load(site_path: str | os.PathLike | None = None) -> Settings:
    site = find_site(site_path)
    file = site / SETTINGS_FILE
    raw = read_yaml(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SettingsError(f"{file}: expected a mapping at the top level")
    return _parse(file, site, raw)


def _parse(file: Path, site: Path, raw: dict[str, Any]) -> Settings:
    def fail(key: str, what: str) -> SettingsError:
        return SettingsError(f"{file}: {key}: {what}")

    ignored = [key for key in raw if key in IGNORED_SECTIONS]
    if ignored:
        log.info("%s: ignoring sections this site does not use: %s", file, ", ".join(ignored))
    known = {"site_name", "transfers", "database_path", "database_url", "logging",
             "site_permissions", *IGNORED_SECTIONS}
    for key in raw:
        if key not in known:
            raise fail(str(key), "unknown key")

    site_name = raw.get("site_name", site.name)
    problem = site_name_problem(site_name)
    if problem:
        raise fail("site_name", problem)
    permissions = raw.get("site_permissions", "private")
    if permissions not in PERMISSIONS:
        raise fail("site_permissions", f"must be one of {', '.join(PERMISSIONS)}, got "
                                       f"{permissions!r}")

    db_file = _database_file(site, raw.get("database_path"), fail)
    section = raw.get("transfers")
    transfers = parse_transfers({} if section is None else section, fail)
    url = parse_database_url(raw.get("database_url"), fail)
    return Settings(site, site_name, transfers, db_file, parse_logging(raw.get("logging"), fail),
                    url, permissions=permissions)



def _database_file(site: Path, value: Any, fail) -> Path:
    if value is None:
        return site / "site.db"
    if not isinstance(value, str) or not value or "\0" in value:
        raise fail("database_path", f"must be a path string, got {value!r}")
    db_file = (site / os.path.expanduser(value)).resolve()
    if db_file.is_dir():
        raise fail("database_path", f"{value!r} is a directory; name a file in it")
    if not db_file.parent.is_dir():
        raise fail("database_path", f"folder {str(db_file.parent)!r} does not exist")
    return db_file


def database_of(site: Path) -> tuple[Path | str, str | None, str | None]:
    """The site database even when settings.yml is broken (for `site status`): (site.db's
    path or a PostgreSQL URL, the site's name, None) from valid settings, else (best
    guess, the name if known, a note saying what was used)."""
    try:
        loaded = load(site)
        return loaded.database, loaded.site_name, None
    except SettingsError as exc:
        error = exc
    try:
        raw = read_yaml(site / SETTINGS_FILE)
        raw = raw if isinstance(raw, dict) else {}
        url, name = raw.get("database_url"), raw.get("site_name")
        if url is not None and isinstance(name, str):  # a schema needs its site's name
            url = check_database_url(url, "database_url")
            return url, name, (f"{error}; using database_url {url} and site_name "
                               f"{name!r} from it")
        value = raw.get("database_path")
        if value is not None:
            path = _database_file(site, value, lambda key, what: SettingsError(what))
            return path, None, f"{error}; using database_path {path} from it"
    except SettingsError:
        pass
    path = site / "site.db"
    return path, None, f"{error}; using the default database {path}"


