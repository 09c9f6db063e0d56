"""The public Python API of a site.

    from balsam_mp.api import Job, TransferItem
    for item in TransferItem.objects.filter(direction="in", state="active"):
        print(f"File {item.remote_path} is currently staging in via task ID: {item.task_id}")

The site is found from `use_site(path)`, else $BALSAM_SITE_PATH, else the current
directory and its parents. The database opens lazily, once per process.
"""

from __future__ import annotations

import os
from typing import Any

from balsam_mp import db, settings
from balsam_mp.api.apps import ApplicationDefinition, sync_apps
from balsam_mp.api.jobs import create_jobs, specs_from_dicts
from balsam_mp.api.query import Manager, QuerySet
from balsam_mp.db import jobs as job_states
from balsam_mp.settings import Settings

_site: dict[str, Any] = {"path": None, "settings": None, "db": None, "pid": None}


def use_site(path: str | os.PathLike | None) -> Settings:
    """Point the API at a site directory (closes any connection to another site)."""
    close()
    _site["path"] = path
    return current_settings()


def current_settings() -> Settings:
    if _site["settings"] is None:
        _site["settings"] = settings.load(_site["path"])
    return _site["settings"]


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
        connect()
        return sync_apps(current_settings())


class Job:
    objects = JobManager(db.Job, connect)


class TransferItem:
    objects: Manager[db.TransferItem] = Manager(db.TransferItem, connect)


class TransferTask:
    objects: Manager[db.TransferTask] = Manager(db.TransferTask, connect)


__all__ = [
    "App", "ApplicationDefinition", "Job", "QuerySet", "TransferItem", "TransferTask",
    "close", "connect", "current_settings", "use_site",
]
