"""The `logging:` section of settings.yml: Balsam's keys, plus rotation by size."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class LogSettings:
    """The `logging:` section: Balsam's level/format/datefmt, plus rotation."""

    level: str = "INFO"
    format: str = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    datefmt: str | None = None
    max_bytes: int = 20 * 2**20  # a log file is rotated past this size ...
    backup_count: int = 5  # ... keeping this many old files per process


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Balsam's other logging keys (buffering and the like) mean nothing to a site: ignored.
IGNORED_LOG_KEYS = ("buffer_num_records", "flush_period", "color", "topic_filter")


def parse_logging(section: Any, fail: Callable[[str, str], Exception]) -> LogSettings:
    if section is None:
        return LogSettings()
    if not isinstance(section, dict):
        raise fail("logging", "must be a mapping")
    values: dict[str, Any] = {}
    for key, value in section.items():
        where = f"logging.{key}"
        if key in IGNORED_LOG_KEYS:
            continue
        if key == "level":
            if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
                raise fail(where, f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
            value = value.upper()
        elif key in ("format", "datefmt"):
            if not isinstance(value, str) or not value:
                raise fail(where, f"must be a non-empty string, got {value!r}")
        elif key in ("max_bytes", "backup_count"):
            low = 1024 if key == "max_bytes" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise fail(where, f"must be a whole number >= {low}, got {value!r}")
        else:
            raise fail(where, "unknown key")
        values[key] = value
    if "format" in values:
        try:  # a bad format would only show when the first line is logged
            logging.Formatter(values["format"], values.get("datefmt"), validate=True)
        except ValueError as exc:
            raise fail("logging.format", str(exc)) from None
    return LogSettings(**values)
