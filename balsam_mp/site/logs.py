"""Each site process logs to its own file set in SITE/logs/, rotated by size."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from balsam_mp.settings import Settings


def configure_logging(site_settings: Settings, process_name: str) -> None:
    """One rotating file per process (no two processes write one file, so rotation is
    safe); its size and count come from the `logging:` section of settings.yml."""
    options = site_settings.logging
    site_settings.logs_path.mkdir(exist_ok=True)
    handler = RotatingFileHandler(site_settings.logs_path / f"{process_name}.log",
                                  maxBytes=options.max_bytes, backupCount=options.backup_count)
    handler.setFormatter(logging.Formatter(options.format, options.datefmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level)
