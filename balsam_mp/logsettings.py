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


# Rotation checks every old file's name at each roll-over: keep the count sane.
LIMITS = {"max_bytes": (1024, 2**40), "backup_count": (1, 1000)}
WHY = {"backup_count": " (with 0, Python's rotation never rotates and a log grows without "
                       "bound)"}
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
            low, high = LIMITS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise fail(where, f"must be a whole number from {low} to {high}, got {value!r}"
                                  f"{WHY.get(key, '')}")
        else:
            raise fail(where, "unknown key")
        values[key] = value
    if "format" in values or "datefmt" in values:
        # a format that fails only shows when the first line is logged (and every line then
        # goes to supervisor.out as a traceback): format a sample line now
        sample = logging.LogRecord("balsam_mp", logging.INFO, __file__, 1, "a line", None, None)
        try:
            logging.Formatter(values.get("format", LogSettings.format), values.get("datefmt"),
                              validate=True).format(sample)
        except (ValueError, TypeError, KeyError) as exc:
            raise fail("logging.format", f"cannot format a log line: {exc}") from None
    return LogSettings(**values)
