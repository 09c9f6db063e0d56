"""The site database: models, per-process connections, and state transitions."""

from balsam_mp.db import sites
from balsam_mp.db.connection import (
    allow_connections,
    connect,
    forbid_connections,
    is_database_url,
)
from balsam_mp.db.models import App, Job, LogEvent, TransferItem, TransferTask, utcnow

__all__ = [
    "App", "Job", "LogEvent", "TransferItem", "TransferTask", "allow_connections", "connect",
    "forbid_connections", "is_database_url", "sites", "utcnow",
]
