"""The read-only models: TransferItem, TransferTask, App, EventLog (Job is in job.py)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import peewee

from balsam_mp import db
from balsam_mp.api.appcheck import check_site
from balsam_mp.api.appstore import remove_apps, sync_apps
from balsam_mp.api.model import Model
from balsam_mp.api.query import QuerySet
from balsam_mp.api.site import connect, current_settings
from balsam_mp.errors import BalsamError, ValidationError
from balsam_mp.schemas import plain
from balsam_mp.states import CREATED, DIRECTIONS, JOB_STATES, Item, Task

CHOICES = {"job_state": JOB_STATES, "item_state": Item.ALL, "task_state": Task.ALL,
           "direction": DIRECTIONS}


def _kind(field: peewee.Field) -> str:
    if isinstance(field, db.models.UtcField):
        return "time"
    if isinstance(field, (peewee.IntegerField, peewee.AutoField)):
        return "int"
    return "float" if isinstance(field, peewee.FloatField) else "text"


class TransferItem(Model):
    """One file (or directory) of a job to stage in or out.

    `local_path` is relative to the job's workdir, as in Balsam (`.` is the workdir
    itself: a recursive stage-in of a directory puts its contents there, a recursive
    stage-out sends the whole workdir). `remote_path` is the absolute path at
    `location_alias`."""

    _table = db.TransferItem
    _choices = CHOICES
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        "id": (db.TransferItem.id, "int"), "job_id": (db.TransferItem.job, "int"),
        "slot": (db.TransferItem.slot, "text"),
        "direction": (db.TransferItem.direction, "direction"),
        "location_alias": (db.TransferItem.location_alias, "text"),
        "remote_path": (db.TransferItem.remote_path, "path"),
        "recursive": (db.TransferItem.recursive, "bool"),
        "state": (db.TransferItem.state, "item_state"),
        "task_id": (db.TransferItem.task_id, "text"),
        "attempts": (db.TransferItem.attempts, "int"),
        "split_round": (db.TransferItem.split_round, "int"),
        "error": (db.TransferItem.error, "text"),
        "last_update": (db.TransferItem.updated_at, "time"),
        "created_at": (db.TransferItem.created_at, "time"),
        "job_state": (db.Job.state, "job_state"), "tags": (db.Job.tags, "tags"),
    }
    _tracked = ("job_id", "slot", "direction", "location_alias", "remote_path", "local_path",
                "recursive", "state", "task_id", "transfer_info")
    _repr_fields = ("job_id", "direction", "state")
    _read_only_hint = ("the site moves transfer items; retry failed ones with "
                       "`balsam transfer retry`, stop a task with `balsam transfer cancel`")

    job_id: int
    slot: str
    direction: str
    location_alias: str
    remote_path: PurePosixPath
    local_path: Path
    recursive: bool
    state: str
    task_id: str | None
    transfer_info: dict[str, Any]

    @classmethod
    def _select(cls, *columns: Any) -> peewee.ModelSelect:
        connect()
        columns = columns or (db.TransferItem, db.Job.workdir.alias("job_workdir"))
        return db.TransferItem.select(*columns).join(db.Job)

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["id"], "job_id": row["job"], "slot": row["slot"],
            "direction": row["direction"], "location_alias": row["location_alias"],
            "remote_path": PurePosixPath(row["remote_path"]),
            "local_path": _relative(row["local_path"], row["job_workdir"]),
            "recursive": bool(row["recursive"]), "state": row["state"],
            "task_id": row["task_id"], "attempts": row["attempts"], "error": row["error"],
            "split_round": row["split_round"],
            "not_before": row["not_before"], "created_at": row["created_at"],
            "last_update": row["updated_at"],
            "transfer_info": {"transfer_task_id": row["transfer_task"],
                              "attempts": row["attempts"], "error": row["error"],
                              "split_round": row["split_round"]},
        }


def site_lookup(model: type[Model], name: str, op: str, value: Any) -> Any:
    """Balsam's site_name= / site_id= filters: everything here is this site's, or a
    clear refusal naming this site."""
    if name not in ("site_name", "site_id"):
        return None
    if op:
        raise ValidationError(f"unknown lookup {name}__{op!r} ({name} takes this site's name)")
    check_site(f"{model.__name__}.objects.filter({name}=...)", value,
               current_settings().site_name)
    return peewee.SQL("1 = 1")


def _relative(local_path: str, workdir: str) -> Path:
    """An item's local path (stored absolute) relative to its job's workdir."""
    root = f"{current_settings().data_path}/{workdir}"
    if local_path == root:
        return Path(".")
    if local_path.startswith(root + "/"):
        return Path(local_path[len(root) + 1:])
    return Path(os.path.relpath(local_path, root))


class TransferTask(Model):
    """A batch of items sent as one Globus (or local) task."""

    _table = db.TransferTask
    _choices = CHOICES
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        **{name: (field, _kind(field)) for name, field in db.TransferTask._meta.fields.items()},
        "state": (db.TransferTask.state, "task_state"),
        "direction": (db.TransferTask.direction, "direction"),
        "last_update": (db.TransferTask.updated_at, "time"),
    }
    _tracked = ("state", "task_id", "direction", "location_alias")
    _repr_fields = ("task_id", "direction", "state")
    _read_only_hint = "the site moves transfer tasks; stop one with `balsam transfer cancel`"

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "last_update": row["updated_at"]}


class App(Model):
    """An app registered from SITE/apps/*.py; `App.sync()` registers them all."""

    _table = db.App
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        "id": (db.App.id, "int"), "name": (db.App.name, "text"),
        "last_modified": (db.App.updated_at, "time"),
        "site_name": (db.App.name, "site"), "site_id": (db.App.name, "site"),
    }
    _tracked = ("name", "description", "transfers", "source_file")
    _repr_fields = ("name",)
    _read_only_hint = "edit the class in SITE/apps/ and run `balsam app sync`"

    @classmethod
    def _lookup(cls, name: str, op: str, value: Any) -> Any:
        return site_lookup(cls, name, op, value)

    def delete(self) -> None:
        """Forget this app (Balsam's app.delete()); refused while jobs use it."""
        if self.id is None:
            raise ValidationError("this App is not saved: nothing to delete")
        if not remove_apps([self.id]):
            raise self.DoesNotExist(f"app {self.id} no longer exists")
        self.id = None

    @classmethod
    def _delete(cls, query: QuerySet[Any]) -> int:
        return remove_apps(query._ids())

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        stem = Path(row["source_file"]).stem
        return {**row, "class_path": f"{stem}.{row['name']}", "last_modified": row["updated_at"]}

    @staticmethod
    def sync() -> list[str]:
        """Register or update every app in SITE/apps/*.py (as `balsam app sync`)."""
        if current_settings().client:
            raise BalsamError("apps are synced by the site from its apps/ folder: run "
                              "`balsam app sync` on the site's machine")
        connect()
        site = current_settings()
        names = sync_apps(site)
        db.sites.publish(str(site.site_path), site.transfers.transfer_locations)  # clients'
        return names


class EventLog(Model):
    """One state change of a job or item (and site events, with no job), newest first
    as in Balsam. `data` is the state_data the user gave with the change, else
    {"message": ...}; a job's first event comes from CREATED."""

    _table = db.LogEvent
    _default_order = (db.LogEvent.timestamp.desc(), db.LogEvent.id.desc())
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        "id": (db.LogEvent.id, "int"), "job_id": (db.LogEvent.job, "int"),
        "transfer_item_id": (db.LogEvent.transfer_item, "int"),
        "from_state": (db.LogEvent.from_state, "text"),
        "to_state": (db.LogEvent.to_state, "text"),
        "timestamp": (db.LogEvent.timestamp, "time"),
        "tags": (db.Job.tags, "tags"), "data": (db.LogEvent.data, "tags"),
    }
    _tracked = ("job_id", "from_state", "to_state", "message", "data")
    _repr_fields = ("job_id", "from_state", "to_state")
    _read_only_hint = "the log is written by every state change"

    @classmethod
    def _select(cls, *columns: Any) -> peewee.ModelSelect:
        connect()  # tags= filters through the job (site events have none)
        return db.LogEvent.select(*(columns or (db.LogEvent,))).join(
            db.Job, peewee.JOIN.LEFT_OUTER)

    @classmethod
    def _lookup(cls, name: str, op: str, value: Any) -> Any:
        """from_state="CREATED" also finds creation events written before schema 6."""
        values = [value] if isinstance(value, str) else value
        if name != "from_state" or op not in ("", "in") or \
                not isinstance(values, (list, tuple, set, frozenset)) or CREATED not in values:
            return None
        column = db.LogEvent.from_state
        return column.in_([plain(v) for v in values]) | (
            column.is_null() & db.LogEvent.job.is_null(False)
            & db.LogEvent.transfer_item.is_null())

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        from_state = row["from_state"]
        if from_state is None and row["job"] is not None and row["transfer_item"] is None:
            from_state = CREATED  # written before schema 6: a job's creation
        return {"id": row["id"], "job_id": row["job"], "transfer_item_id": row["transfer_item"],
                "from_state": from_state, "to_state": row["to_state"],
                "message": row["message"], "timestamp": row["timestamp"],
                "data": row["data"] if row["data"] is not None else
                {"message": row["message"]}}
