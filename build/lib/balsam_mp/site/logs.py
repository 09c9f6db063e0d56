"""Each site process logs to its own file in SITE/logs/."""

from __future__ import annotations

import logging

from balsam_mp.settings import Settings

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(site_settings: Settings, process_name: str) -> None:
    site_settings.logs_path.mkdir(exist_ok=True)
    handler = logging.FileHandler(site_settings.logs_path / f"{process_name}.log")
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
