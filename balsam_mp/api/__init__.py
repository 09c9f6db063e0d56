"""The public Python API of a site, a compatible subset of Balsam's.

    from balsam_mp.api import Job, TransferItem
    for item in TransferItem.objects.filter(direction="in", state="active"):
        print(f"File {item.remote_path} is currently staging in via task ID: {item.task_id}")

The site is found from `use_site(path)`, else $BALSAM_SITE_PATH, else the current
directory and its parents. A client without the site directory names the database and
the site instead: `use_database(url, site="polaris")`, or $BALSAM_DATABASE_URL with
$BALSAM_SITE_NAME. The database opens lazily, once per process.

`site_config` (Balsam's name) is the current site's Settings: `site_config.data_path`.
"""

from __future__ import annotations

from balsam_mp.api.appdef import ApplicationDefinition
from balsam_mp.api.job import Job, JobManager
from balsam_mp.api.model import Model, MultipleObjectsReturned
from balsam_mp.api.models import App, EventLog, TransferItem, TransferTask
from balsam_mp.api.query import Manager, QuerySet
from balsam_mp.api.site import (
    SITE_NAME_ENV,
    client_site_name,
    close,
    connect,
    current_settings,
    site_names,
    use_database,
    use_site,
)
from balsam_mp.api.waiting import JobWaitResult
from balsam_mp.errors import BalsamError, NotFound, StateConflict, ValidationError
from balsam_mp.settings import Settings

__all__ = [
    "SITE_NAME_ENV",
    "App", "ApplicationDefinition", "BalsamError", "EventLog", "Job", "JobManager",
    "JobWaitResult", "Manager",
    "Model", "MultipleObjectsReturned", "NotFound", "QuerySet", "StateConflict",
    "TransferItem", "TransferTask", "ValidationError", "client_site_name", "close", "connect",
    "current_settings", "site_names", "use_database", "use_site",
]


def __getattr__(name: str) -> Settings:
    """`from balsam_mp.api import site_config`: the site, found when first asked for."""
    if name == "site_config":
        return current_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
