"""Creating a site directory from site_template/."""

from __future__ import annotations

import shutil
from pathlib import Path

from balsam_mp import db, settings
from balsam_mp.errors import BalsamError

# package data in an installed wheel; in a checkout, a link to the top-level site_template/
TEMPLATE = Path(__file__).parents[1] / "site_template"


def init_site(path: Path, name: str | None = None) -> settings.Settings:
    path = path.resolve()
    if (path / settings.SETTINGS_FILE).exists():
        raise BalsamError(f"{path} is already a balsam site")
    if path.exists() and any(path.iterdir()):
        raise BalsamError(f"{path} exists and is not empty")
    site_name = name or path.name
    if not site_name or '"' in site_name or "\n" in site_name or "\\" in site_name:
        raise BalsamError(f"site name {site_name!r} must be one line without quotes")
    template = TEMPLATE
    staging = path.with_name(f".{path.name}.init")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(template, staging, ignore=shutil.ignore_patterns("__pycache__"))
    text = (staging / settings.SETTINGS_FILE).read_text().replace("{site_name}", site_name)
    (staging / settings.SETTINGS_FILE).write_text(text)
    for sub in ("data", "logs"):
        (staging / sub).mkdir()
    if path.exists():
        path.rmdir()
    staging.rename(path)  # a half-made site never appears under its real name
    loaded = settings.load(path)
    db.connect(loaded.database_path, create=True).close()
    return loaded
