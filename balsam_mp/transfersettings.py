"""The `transfers:` section of settings.yml: Balsam's keys unchanged, plus the keys this
project adds, each checked with one clear message (`fail(key, what)` makes it)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import uuid
from typing import Any

PROTOCOLS = ("globus", "local")
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
    sync_level: str | None = "checksum"
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


def parse_transfers(section: Any, fail) -> TransferSettings:
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
