"""The public Python API of a site.

    from balsam_mp.api import Job, TransferItem
    for item in TransferItem.objects.filter(direction="in", state="active"):
        print(f"File {item.remote_path} is currently staging in via task ID: {item.task_id}")

The site is found from `use_site(path)`, else $BALSAM_SITE_PATH, else the current
directory and its parents. A client without the site directory names the database and
the site instead: `use_database(url, site="polaris")`, or $BALSAM_DATABASE_URL with
$BALSAM_SITE_NAME. The database opens lazily, once per process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from balsam_mp import db, settings
from balsam_mp.api.apps import ApplicationDefinition, sync_apps
from balsam_mp.api.jobs import create_jobs, specs_from_dicts
from balsam_mp.api.query import Manager, QuerySet
from balsam_mp.db import jobs as job_states
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings, TransferSettings

SITE_NAME_ENV = "BALSAM_SITE_NAME"
_site: dict[str, Any] = {"path": None, "settings": None, "db": None, "pid": None,
                         "client": None}


def use_site(path: str | os.PathLike | None) -> Settings:
    """Point the API at a site directory (closes any connection to another site)."""
    close()
    _site.update(path=path, client=None)
    return current_settings()


def use_database(url: str | None, site: str) -> Settings:
    """Point the API at a site by its database and name, from a machine without the
    site directory (url None: $BALSAM_DATABASE_URL). Jobs are checked against the apps
    and aliases the site published; the site makes their workdirs before staging."""
    close()
    url = url or os.environ.get(settings.DATABASE_URL_ENV)
    if not url:
        raise BalsamError(f"site {site!r} is named without a database: pass its URL or set "
                          f"${settings.DATABASE_URL_ENV} (or set $BALSAM_SITE_PATH to use a "
                          "site directory)")
    url = settings.check_database_url(url, "database url")
    _site.update(path=None, client=(url, site))
    return current_settings()


def current_settings() -> Settings:
    if _site["settings"] is None:
        name = client_site_name()
        if _site["client"] is None and _site["path"] is None and name:
            return use_database(None, name)
        if _site["client"] is not None:
            _site["settings"] = _client_settings(*_site["client"])
        else:
            _site["settings"] = settings.load(_site["path"])
    return _site["settings"]


def client_site_name() -> str | None:
    """$BALSAM_SITE_NAME, when no $BALSAM_SITE_PATH names a site directory."""
    return None if os.environ.get("BALSAM_SITE_PATH") else os.environ.get(SITE_NAME_ENV)


def _client_settings(url: str, site: str) -> Settings:
    _site["db"], _site["pid"] = db.connect(url, site=site), os.getpid()
    published = db.sites.published()
    if published is None:
        raise BalsamError(f"site {site!r} has published no settings in its database yet; "
                          "start it once with `balsam site start`")
    site_path = Path(published["site_path"])
    return Settings(site_path, site, TransferSettings(
        transfer_locations=published["transfer_locations"]), site_path / "site.db",
        database_url=url, client=True)


def connect() -> None:
    """Open this process's connection to the site database if it is not open yet."""
    if _site["db"] is None or _site["pid"] != os.getpid():
        _site["db"] = db.connect(current_settings().database,
                                  site=current_settings().site_name)
        _site["pid"] = os.getpid()


def close() -> None:
    if _site["db"] is not None and _site["pid"] == os.getpid():
        _site["db"].close()
    _site.update(settings=None, db=None, pid=None)


class JobManager(Manager[db.Job]):
    def create(self, app: str, workdir: str, transfers: dict[str, str] | None = None,
               tags: dict[str, str] | None = None,
               parameters: dict[str, Any] | None = None) -> db.Job:
        return self.bulk_create([{"app": app, "workdir": workdir, "transfers": transfers,
                                  "tags": tags, "parameters": parameters}])[0]

    def bulk_create(self, jobs: list[dict[str, Any]]) -> list[db.Job]:
        """Create many jobs in one transaction: all of them, or none if one is bad."""
        connect()
        return create_jobs(current_settings(), specs_from_dicts(jobs))

    def set_state(self, job_id: int, from_state: str, to_state: str, message: str = "") -> None:
        """Compare-and-set one job's state (e.g. RUN_DONE -> POSTPROCESSED)."""
        connect()
        with _site["db"].atomic():
            job_states.set_job_state(job_id, from_state, to_state, message)


class App:
    objects: Manager[db.App] = Manager(db.App, connect)

    @staticmethod
    def sync() -> list[str]:
        if current_settings().client:
            raise BalsamError("apps are synced by the site from its apps/ folder: run "
                              "`balsam app sync` on the site's machine")
        connect()
        site = current_settings()
        names = sync_apps(site)
        db.sites.publish(str(site.site_path), site.transfers.transfer_locations)  # clients'
        return names


class Job:
    objects = JobManager(db.Job, connect)


class TransferItem:
    objects: Manager[db.TransferItem] = Manager(db.TransferItem, connect)


class TransferTask:
    objects: Manager[db.TransferTask] = Manager(db.TransferTask, connect)


__all__ = [
    "App", "ApplicationDefinition", "Job", "QuerySet", "TransferItem", "TransferTask",
    "close", "connect", "current_settings", "use_database", "use_site",
]
