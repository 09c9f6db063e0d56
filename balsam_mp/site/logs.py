"""Each site process logs to its own file set in SITE/logs/, rotated by size."""

from __future__ import annotations

import logging
import os
from logging.handlers import RotatingFileHandler

from balsam_mp import permissions
from balsam_mp.settings import Settings


class SiteLogHandler(RotatingFileHandler):
    """Rotates by size; every file it opens (the first and each new one after a
    rotation) gets the site's file mode, whatever the umask."""

    def __init__(self, filename: os.PathLike, file_mode: int, **kwargs) -> None:
        self.file_mode = file_mode  # before super().__init__, which opens the file
        super().__init__(filename, **kwargs)

    def _open(self):
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                    opener=lambda path, flags: permissions.open_file(path, flags,
                                                                     self.file_mode))


def configure_logging(site_settings: Settings, process_name: str) -> None:
    """One rotating file per process (no two processes write one file, so rotation is
    safe); its size and count come from the `logging:` section of settings.yml."""
    options = site_settings.logging
    permissions.make_folder(site_settings.logs_path, site_settings.modes.folder)
    handler = SiteLogHandler(site_settings.logs_path / f"{process_name}.log",
                             site_settings.modes.file, maxBytes=options.max_bytes,
                             backupCount=options.backup_count)
    handler.setFormatter(logging.Formatter(options.format, options.datefmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(options.level)
