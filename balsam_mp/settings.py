"""Load and validate a site's settings.yml, once, with one clear message per mistake.

The `transfers:` section takes Balsam's keys unchanged, plus the keys this project adds.
Sections of a full Balsam settings.yml that this site does not use are accepted and
ignored with one informational log line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

from balsam_mp.dburl import DATABASE_URL_ENV as DATABASE_URL_ENV
from balsam_mp.dburl import check_database_url as check_database_url
from balsam_mp.dburl import parse_database_url
from balsam_mp.errors import SettingsError, SiteNotFound
from balsam_mp.logsettings import LogSettings, parse_logging
from balsam_mp.yamlfile import read_yaml

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.yml"
PROTOCOLS = ("globus", "local")
IGNORED_SECTIONS = (
    "site_id", "title", "filter_tags", "launcher", "scheduler", "processing",
    "elastic_queue", "queue_maintainer", "file_cleaner",
)
SYNC_LEVELS = ("exists", "size", "mtime", "checksum")
_ALIAS = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    """The `transfers:` section. Defaults are documented in site_template/settings.yml."""

    # none unless settings.yml lists some: local:// would trust every path on the machine
    transfer_locations: dict[str, str] = dataclasses.field(default_factory=dict)
    globus_endpoint_id: str | None = None
    globus_endpoint_site_path: str | None = None
    globus_client_id: str | None = None
    max_concurrent_transfers: int = 5
    transfer_batch_size: int | str = "auto"  # "auto": shaped per claim (site/batching.py)
    num_items_query_limit: int = 2000
    service_period: float = 1.0
    max_retries: int = 3
    retry_backoff: float = 5.0
    retry_backoff_max: float = 600.0
    task_deadline: int = 86400
    inactive_timeout: int = 3600
    skip_source_errors: bool = True
    verify_checksum: bool = True
    sync_level: str | None = "size"
    claim_lease: float = 60.0
    globus_requests_per_second: float = 20.0
    encrypt_data: bool = True
    fault_timeout: float = 600.0


# key -> (types accepted, minimum, maximum); None bounds are open.
_NUMBERS: dict[str, tuple[type | tuple[type, ...], float | None, float | None]] = {
    "max_concurrent_transfers": (int, 1, 1000),
    "transfer_batch_size": (int, 1, 100_000),
    "num_items_query_limit": (int, 1, 10_000_000),
    "service_period": ((int, float), 0.01, 3600),
    "max_retries": (int, 0, 100),
    "retry_backoff": ((int, float), 0, 86400),
    "retry_backoff_max": ((int, float), 0, 7 * 86400),
    "task_deadline": (int, 1, 30 * 86400),
    "inactive_timeout": (int, 1, 30 * 86400),
    "claim_lease": ((int, float), 1, 3600),
    "globus_requests_per_second": ((int, float), 0.1, 10_000),
    "fault_timeout": ((int, float), 0.1, 30 * 86400),
}
_BOOLS = ("skip_source_errors", "verify_checksum", "encrypt_data")
_OPTIONAL_STRINGS = ("globus_endpoint_id", "globus_endpoint_site_path", "globus_client_id",
                     "sync_level")


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


def find_site(path: str | os.PathLike | None = None) -> Path:
    """The site directory: `path`, then $BALSAM_SITE_PATH, then cwd and its parents."""
    if path is None:
        path = os.environ.get("BALSAM_SITE_PATH")
    if path is not None:
        site = Path(path).resolve()
        if not (site / SETTINGS_FILE).is_file():
            raise SiteNotFound(f"{site} is not a balsam site: it has no {SETTINGS_FILE}")
        return site
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
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
             *IGNORED_SECTIONS}
    for key in raw:
        if key not in known:
            raise fail(str(key), "unknown key")

    site_name = raw.get("site_name", site.name)
    if not isinstance(site_name, str) or not site_name.strip() or \
            any(c in site_name for c in "\n\r\0"):
        raise fail("site_name", f"must be a one-line string, got {site_name!r}")

    db_file = _database_file(site, raw.get("database_path"), fail)
    section = raw.get("transfers")
    transfers = _parse_transfers({} if section is None else section, fail)
    url = parse_database_url(raw.get("database_url"), fail)
    return Settings(site, site_name, transfers, db_file, parse_logging(raw.get("logging"), fail),
                    url)



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


def _number(where: str, value: Any, spec: tuple, fail) -> float:
    types, low, high = spec
    kind = "an integer" if types is int else "a number"
    if where.endswith(".transfer_batch_size"):
        kind += " or auto"
    if isinstance(value, bool) or not isinstance(value, types):
        raise fail(where, f"must be {kind}, got {value!r}")
    # .nan passes every comparison, .inf never times out; a huge int is only out of range
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(where, f"must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(where, f"{value} is out of range [{low}, {high}]")
    return value


def _parse_transfers(section: Any, fail) -> TransferSettings:
    if not isinstance(section, dict):
        raise fail("transfers", "must be a mapping")
    fields = {f.name for f in dataclasses.fields(TransferSettings)}
    values: dict[str, Any] = {}
    for key, value in section.items():
        where = f"transfers.{key}"
        if key not in fields:
            raise fail(where, "unknown key")
        if key == "transfer_batch_size" and value == "auto":
            pass
        elif key in _NUMBERS:
            _number(where, value, _NUMBERS[key], fail)
        elif key in _BOOLS:
            if not isinstance(value, bool):
                raise fail(where, f"must be true or false, got {value!r}")
        elif key in _OPTIONAL_STRINGS:
            if value is not None and (not isinstance(value, str) or "\0" in value):
                raise fail(where, f"must be a string, got {value!r}")
        values[key] = value

    if values.get("transfer_locations", {}) is None:
        values["transfer_locations"] = {}  # `transfer_locations:` left empty: none trusted
    elif "transfer_locations" in values:
        values["transfer_locations"] = _parse_locations(values["transfer_locations"], fail)
    endpoint = values.get("globus_endpoint_id")
    if endpoint is not None and not _is_uuid(endpoint):
        raise fail("transfers.globus_endpoint_id", f"{endpoint!r} is not a UUID")
    site_path = values.get("globus_endpoint_site_path")
    if site_path is not None and not site_path.startswith("/"):
        raise fail("transfers.globus_endpoint_site_path", f"{site_path!r} must be absolute")
    level = values.get("sync_level")
    if level is not None and level not in SYNC_LEVELS:
        raise fail("transfers.sync_level", f"{level!r} is not one of {', '.join(SYNC_LEVELS)}")
    return TransferSettings(**values)


def _parse_locations(locations: Any, fail) -> dict[str, str]:
    if not isinstance(locations, dict) or not locations:
        raise fail("transfers.transfer_locations", "must be a non-empty mapping alias: URL")
    parsed = {}
    for alias, url in locations.items():
        where = f"transfers.transfer_locations.{alias}"
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise fail(where, "alias must be letters, digits, '_', '.' or '-'")
        if not isinstance(url, str) or "://" not in url or "\0" in url:
            raise fail(where, f"{url!r} is not protocol://address")
        protocol, _, address = url.partition("://")
        if protocol not in PROTOCOLS:
            raise fail(where, f"unknown protocol {protocol!r} (use {' or '.join(PROTOCOLS)})")
        if protocol == "globus" and not _is_uuid(address):
            raise fail(where, f"globus address {address!r} is not an endpoint UUID")
        if protocol == "local" and address:
            if not address.startswith("/"):
                raise fail(where, f"local address {address!r} must be empty or an absolute path")
            if not os.path.isdir(address):
                what = "is not a directory" if os.path.exists(address) else "does not exist"
                raise fail(where, f"local root {address!r} {what}")
        parsed[alias] = url
    return parsed


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
