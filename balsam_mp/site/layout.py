"""Creating a site directory from site_template/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from balsam_mp import db, permissions, settings
from balsam_mp.errors import BalsamError

# package data in an installed wheel; in a checkout, a link to the top-level site_template/
TEMPLATE = Path(__file__).parents[1] / "site_template"


def _listing(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except OSError as exc:
        raise BalsamError(f"cannot create a site at {path}: {exc.strerror}") from None


def _build(staging: Path, site_name: str, database_url: str | None) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    modes = permissions.MODES["private"]  # a new site is private until its owner says so
    staging.parent.mkdir(parents=True, exist_ok=True)  # `site init ~/sites/a` makes ~/sites
    permissions.make_folder(staging, modes.folder)  # first: no one else ever sees inside
    shutil.copytree(TEMPLATE, staging, ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    os.chmod(staging, modes.folder)  # copytree gave it the template's mode
    text = (staging / settings.SETTINGS_FILE).read_text().replace("{site_name}", site_name)
    if database_url:  # after the template's commented example
        example = text.index("\n# database_url: postgresql://")
        end = text.index("\n", example + 1)
        text = f"{text[:end]}\ndatabase_url: {json.dumps(database_url)}{text[end:]}"
    (staging / settings.SETTINGS_FILE).write_text(text)
    for sub in ("data", "logs"):
        (staging / sub).mkdir()
    for folder, subfolders, files in os.walk(staging):
        for name in subfolders:
            os.chmod(os.path.join(folder, name), modes.folder)
        for name in files:
            os.chmod(os.path.join(folder, name), modes.file)


SELECTORS = ("all", "this")  # --site all|this (cli.common) select sites, not one by name


def init_site(path: Path, name: str | None = None,
              database_url: str | None = None) -> settings.Settings:
    """A new site directory; its database is site.db, or the tables are made in the
    PostgreSQL database `database_url` (unless they exist)."""
    if database_url is not None:
        settings.check_database_url(database_url, "--database-url")
    path = path.resolve()
    if (path / settings.SETTINGS_FILE).exists():
        raise BalsamError(f"{path} is already a balsam site")
    if path.exists() and not path.is_dir():
        raise BalsamError(f"{path} exists and is not a directory")
    if path.exists() and _listing(path):
        raise BalsamError(f"{path} exists and is not empty")
    site_name = path.name if name is None else name
    problem = settings.site_name_problem(site_name)
    if site_name.lower() in SELECTORS:
        problem = (f"site name {site_name!r} is what `--site {site_name.lower()}` means "
                   "(Balsam's selector), so no command could pick this site by it")
    if problem:
        hint = "" if name is not None else " (it defaults to the folder's name; pass --name)"
        raise BalsamError(f"{problem}{hint}")
    staging = path.with_name(f".{path.name}.init")
    try:
        _build(staging, site_name, database_url)
        if database_url is not None:  # its schema first: a refusal leaves no folder
            db.connect(database_url, site=site_name, create=True)
        if path.exists():
            path.rmdir()
        staging.rename(path)  # a half-made site never appears under its real name
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BalsamError(f"cannot create a site at {path}: "
                          f"{exc.strerror or exc} ({exc.filename or path})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    loaded = settings.load(path)
    if database_url is None:
        db.connect(loaded.database, site=loaded.site_name, create=True,
                   file_mode=loaded.modes.file)
    db.sites.publish(str(loaded.site_path), loaded.transfers.transfer_locations)
    db.Job._meta.database.close()
    return loaded
