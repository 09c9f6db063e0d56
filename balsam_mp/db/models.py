"""Tables a user can read with sqlite3: app, job, transfer_item, transfer_task, log_event
(and request_budget, the workers' shared Globus request budget; lease, the site's
leadership on PostgreSQL).

States are text, times are ISO-8601 UTC text (sortable as strings), JSON is text.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee

SCHEMA_VERSION = 7


class _SiteProxy(peewee.DatabaseProxy):
    """peewee's proxy opens a transaction on itself; this one asks the database, so a
    PostgreSQL worker's connection shared by its threads holds its lock for the whole
    transaction however it is opened (postgres.py SitePostgres.atomic)."""

    def atomic(self, *args, **kwargs):
        return self.obj.atomic(*args, **kwargs)


database_proxy = _SiteProxy()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class UtcField(peewee.TextField):
    """A UTC datetime stored as fixed-width ISO-8601 text."""

    def db_value(self, value: dt.datetime | str | None) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return iso(value)

    def python_value(self, value: str | None) -> dt.datetime | None:
        if value is None:
            return None
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=dt.timezone.utc
        )


class JSONField(peewee.TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Meta(BaseModel):
    key = peewee.TextField(primary_key=True)
    value = peewee.TextField()


class App(BaseModel):
    name = peewee.TextField(unique=True)
    source_file = peewee.TextField()
    description = peewee.TextField(default="")
    transfers = JSONField(default=dict)  # slot name -> slot spec
    updated_at = UtcField(default=utcnow)


class Job(BaseModel):
    app = peewee.ForeignKeyField(App, backref="jobs", on_delete="RESTRICT")
    workdir = peewee.TextField(unique=True)  # relative to SITE/data
    state = peewee.TextField(index=True)
    state_data = JSONField(default=dict)
    tags = JSONField(default=dict)
    parameters = JSONField(default=dict)
    created_at = UtcField(default=utcnow)
    updated_at = UtcField(default=utcnow)


class TransferTask(BaseModel):
    direction = peewee.TextField()
    location_alias = peewee.TextField()
    remote_address = peewee.TextField()
    protocol = peewee.TextField()
    state = peewee.TextField(index=True)
    submission_id = peewee.TextField(null=True, unique=True)
    task_id = peewee.TextField(null=True, index=True)  # the remote (e.g. Globus) task id
    remote_status = peewee.TextField(null=True)
    nice_status = peewee.TextField(null=True)
    label = peewee.TextField(default="")
    item_count = peewee.IntegerField(default=0)
    files_transferred = peewee.IntegerField(default=0)
    files_skipped = peewee.IntegerField(default=0)
    bytes_transferred = peewee.BigIntegerField(default=0)
    bytes_per_second = peewee.DoubleField(default=0.0)
    fatal_error = peewee.TextField(null=True)
    owner = peewee.TextField(null=True)  # "pid:create_time" of the claiming worker
    lease_expires = UtcField(null=True)
    deadline = UtcField(null=True)
    created_at = UtcField(default=utcnow)  # claimed (a finished task's updated_at: its end)
    updated_at = UtcField(default=utcnow)
    submitted_at = UtcField(null=True)  # the service accepted it (analytics' timeline)
    started_at = UtcField(null=True)  # first seen running at the service, not "Queued"
    inactive_since = UtcField(null=True)
    fault_since = UtcField(null=True)  # since when the same fault repeats (ACTIVE)
    # when a user's `transfer cancel` asked for it: whatever then ends the task, its
    # unfinished items end `error "cancelled"` (itemmoves.py)
    cancel_requested = UtcField(null=True)


class TransferItem(BaseModel):
    job = peewee.ForeignKeyField(Job, backref="transfer_items", on_delete="CASCADE")
    slot = peewee.TextField()
    direction = peewee.TextField()
    location_alias = peewee.TextField()
    remote_path = peewee.TextField()
    local_path = peewee.TextField()  # absolute path on this machine
    recursive = peewee.BooleanField(default=False)
    state = peewee.TextField()
    transfer_task = peewee.ForeignKeyField(
        TransferTask, null=True, backref="items", on_delete="SET NULL"
    )
    task_id = peewee.TextField(null=True)  # remote task id, as in Balsam's API
    attempts = peewee.IntegerField(default=0)
    not_before = UtcField(null=True)
    error = peewee.TextField(null=True)
    owner = peewee.TextField(null=True)
    lease_expires = UtcField(null=True)
    created_at = UtcField(default=utcnow)
    updated_at = UtcField(default=utcnow)
    # a task that failed or stalled as a whole is split in halves: the items of one half
    # share a batch_key (claimed together, alone) and count the splits in split_round
    split_round = peewee.IntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    batch_key = peewee.TextField(null=True, index=True)
    # a stage-out in flight when its job entered POSTPROCESSED again: it carries the
    # previous run's result, so when its task ends the item goes out again, not done
    resend = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])

    class Meta:
        indexes = (
            # the submitter's claim: pending items of one group, oldest job first
            (("state", "direction", "location_alias", "job"), False),
            (("job", "direction"), False),
        )


class LogEvent(BaseModel):
    job = peewee.ForeignKeyField(Job, null=True, backref="events", on_delete="CASCADE")
    transfer_item = peewee.ForeignKeyField(TransferItem, null=True, on_delete="CASCADE")
    from_state = peewee.TextField(null=True)
    to_state = peewee.TextField(null=True)
    message = peewee.TextField(default="")
    timestamp = UtcField(default=utcnow, index=True)
    # the state_data a user gave with this change (Balsam's event data); None: none
    data = JSONField(null=True)


class RequestBudget(BaseModel):
    """A token bucket per Globus identity, shared by the site's processes (db/budget.py)."""

    name = peewee.TextField(primary_key=True)
    tokens = peewee.DoubleField()  # DOUBLE PRECISION: REAL on PostgreSQL is 4 bytes
    updated = peewee.DoubleField()  # epoch seconds of the last refill


class Lease(BaseModel):
    """Which host runs the site's workers (PostgreSQL, site/leader.py): one row, id 1.
    Times are epoch seconds of the database server's clock; unused on SQLite."""

    id = peewee.IntegerField(primary_key=True)
    epoch = peewee.BigIntegerField(default=0)  # +1 at each takeover: fences the old leader
    host = peewee.TextField(null=True)
    pid = peewee.IntegerField(null=True)  # its supervisor on that host
    backend_pid = peewee.IntegerField(null=True)  # its server session (gone: lease free)
    renewed_at = peewee.DoubleField(default=0.0)
    expires_at = peewee.DoubleField(default=0.0)


ALL_MODELS = [Meta, App, Job, TransferTask, TransferItem, LogEvent, RequestBudget, Lease]
