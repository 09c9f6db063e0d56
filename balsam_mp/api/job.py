"""Job: Balsam's object model over the site database, every write through the state machine.

    job = Job(workdir="ensemble/1", app_id=app.id, transfers={...}, tags={...})
    job.save()                       # created (all or nothing, folders included)
    job.state = "POSTPROCESSED"      # after the app ran
    job.save()                       # compare-and-set from the state it was read in

save() writes only what changed since the object was read: tags and parameters as set,
state_data merged key by key (None removes a key), and state as a compare-and-set from
the state it was read in (StateConflict if the job moved meanwhile), checked against
the transition table (balsam_mp/transitions.py). workdir, app and transfers are fixed
once a job exists. A job whose items are in flight cannot be deleted: cancel the task
first (`balsam transfer cancel`) or wait for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import peewee

from balsam_mp import db
from balsam_mp.api import inputs, waiting
from balsam_mp.api.appcheck import check_site
from balsam_mp.api.jobmanager import JobManager
from balsam_mp.api.jobs import JobSpec, create_jobs
from balsam_mp.api.jobwrite import FIXED, UpdateResult, update, write
from balsam_mp.api.model import Model
from balsam_mp.api.models import CHOICES, App, EventLog, site_lookup
from balsam_mp.api.query import QuerySet, guarded
from balsam_mp.api.site import connect, current_settings, retried, transaction
from balsam_mp.db import jobs as job_db
from balsam_mp.db.bulk import value_list
from balsam_mp.errors import BalsamError, ValidationError

# Balsam's launcher settings: meaningless here (this site stages files, it runs no apps).
LAUNCH_FIELDS = {"num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core",
                 "launch_params", "gpus_per_rank", "node_packing_count", "wall_time_min",
                 "parent_ids", "data", "return_code", "batch_job_id"}


class AppNotHere(App.DoesNotExist, ValidationError):  # type: ignore[name-defined,misc]
    """A job names its app at another site (Balsam raises App.DoesNotExist)."""


class NoResult(BalsamError, ValueError):
    """Balsam's Job.NoResult: here every job has none (this site runs no apps)."""


class Job(Model):
    _table = db.Job
    _manager = JobManager
    _choices = CHOICES
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        "id": (db.Job.id, "int"), "app_id": (db.Job.app, "int"), "app": (db.App.name, "text"),
        "workdir": (db.Job.workdir, "path"), "state": (db.Job.state, "job_state"),
        "tags": (db.Job.tags, "tags"), "parameters": (db.Job.parameters, "tags"),
        "last_update": (db.Job.updated_at, "time"), "created_at": (db.Job.created_at, "time"),
        "site_name": (db.App.name, "site"), "site_id": (db.App.name, "site"),
    }
    _tracked = ("workdir", "app_id", "app", "state", "state_data", "tags", "parameters")
    _repr_fields = ("workdir", "state")
    objects: ClassVar[JobManager[Job]]

    workdir: Path
    app_id: int | None
    app: str | None
    state: str | None
    state_data: dict[str, Any]
    tags: dict[str, str]
    parameters: dict[str, Any]

    NoResult = NoResult

    def __init__(self, workdir: Any = None, app_id: Any = None, tags: Any = None,
                 parameters: Any = None, transfers: Any = None, app: Any = None,
                 app_name: str | None = None, site_name: Any = None, site_id: Any = None,
                 **unsupported: Any) -> None:
        if unsupported:
            name = sorted(unsupported)[0]
            why = ("is a Balsam launcher setting; balsam_mp stages files and runs no apps"
                   if name in LAUNCH_FIELDS else
                   "is not a Job field (fields: workdir, app_id, app_name or app, transfers, "
                   "tags, parameters, site_name)")
            raise ValidationError(f"Job({name}=...): {name} {why}")
        for key, site in (("site_name", site_name), ("site_id", site_id)):
            try:
                check_site(f"Job({key}=...)", site, current_settings().site_name)
            except ValidationError as exc:  # Balsam: no such app at that site
                raise AppNotHere(str(exc)) from None
        self._app_name = app_name
        self.id = None
        self.workdir = workdir
        self.app_id, self.app = app_id, app
        self.tags = {} if tags is None else tags
        self.parameters = {} if parameters is None else parameters
        self.state, self.state_data = None, {}
        self.created_at = self.last_update = None
        self._transfers = {} if transfers is None else transfers
        self._loaded = {}

    @classmethod
    def _select(cls, *columns: Any) -> peewee.ModelSelect:
        connect()
        columns = columns or (db.Job, db.App.name.alias("app_name"))
        return db.Job.select(*columns).join(db.App)

    @classmethod
    def _convert(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {"id": row["id"], "app_id": row["app"], "app": row["app_name"],
                "workdir": Path(row["workdir"]), "state": row["state"],
                "state_data": row["state_data"] or {}, "tags": row["tags"] or {},
                "parameters": row["parameters"] or {}, "created_at": row["created_at"],
                "last_update": row["updated_at"], "_transfers": None}

    @property
    def transfers(self) -> dict[str, str]:
        """slot -> "alias:/remote/path", read from the job's transfer items."""
        if self._transfers is None:
            items = guarded(lambda: list(
                db.TransferItem.select(db.TransferItem.slot, db.TransferItem.location_alias,
                                       db.TransferItem.remote_path)
                .where(db.TransferItem.job == self.id).order_by(db.TransferItem.id).tuples()))
            self._transfers = {slot: f"{alias}:{path}" for slot, alias, path in items}
            self._loaded["transfers"] = dict(self._transfers)
        return self._transfers

    @transfers.setter
    def transfers(self, value: Any) -> None:
        if self.id is not None and self._transfers is None:
            _ = self.transfers  # remember what it was, so save() can refuse a change
        self._transfers = value

    def __getattr__(self, name: str) -> Any:  # only for names not found otherwise
        if name in LAUNCH_FIELDS or name == "parent_query":
            name = "parent_ids" if name == "parent_query" else name
            raise AttributeError(f"Job.{name}: {name} is a Balsam launcher setting; "
                                 "balsam_mp stages files and runs no apps")
        raise AttributeError(f"'Job' object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in LAUNCH_FIELDS:
            raise ValidationError(f"job {self.__dict__.get('id')}: {name} is a Balsam "
                                  "launcher setting; balsam_mp stages files and runs no apps")
        if name == "state_timestamp":  # silently dropped, it would mislead
            raise ValidationError(f"job {self.__dict__.get('id')}: state_timestamp is not "
                                  "supported; an event's time is the database's clock")
        super().__setattr__(name, value)

    def done(self) -> bool:
        """Balsam's: re-read the job; True once it is JOB_FINISHED or FAILED."""
        self.refresh_from_db()
        return self.state in waiting.DONE_STATES

    def get_parameters(self) -> dict[str, Any]:
        """Balsam's: the job's parameters (a copy)."""
        return dict(self.parameters)

    def result(self, timeout: float | None = None) -> Any:
        """Balsam's run() apps return a value through the job; none runs here."""
        raise NoResult(f"job {self.id}: result() is the return value of a Balsam run() app; "
                       "this site stages files and runs no apps, so no job has one (read "
                       "what the app wrote in the job's workdir)")

    def result_nowait(self) -> Any:
        """As result()."""
        return self.result()

    @classmethod
    def _lookup(cls, name: str, op: str, value: Any) -> Any:
        return site_lookup(cls, name, op, value)

    def resolve_workdir(self, data_path: Path | str | None = None) -> Path:
        """The workdir's absolute path (Balsam's name for it)."""
        return Path(data_path or current_settings().data_path) / self.workdir

    @property
    def events(self) -> QuerySet[EventLog]:
        """This job's log rows (none before it is saved)."""
        return EventLog.objects.filter(job_id=[] if self.id is None else [self.id])

    def _same_row(self) -> Any:
        # SQLite reuses the id of the newest row once it is deleted: created_at tells a
        # new job from the deleted one a stale object still names
        return (db.Job.id == self.id) & (db.Job.created_at == self.created_at)

    def _changed(self) -> list[str]:
        changed = super()._changed()
        if "transfers" in self._loaded and self._transfers != self._loaded["transfers"]:
            changed.append("transfers")
        return changed

    def save(self) -> None:
        """Create the job, or write what changed since it was read (see the module doc)."""
        if self.id is None:
            _create([self])
            return
        fields, event_data = self._patch()
        if not fields:
            self.refresh_from_db()  # nothing to write; a deleted job says so
            return
        with transaction():
            if not guarded(lambda: db.Job.select().where(self._same_row()).exists()):
                raise self.DoesNotExist(f"job {self.id} no longer exists")
            write([(self.id, self._loaded["state"])], fields, event_data)
        self.refresh_from_db()

    def _patch(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What save() writes: the changed fields (state_data as the keys that changed,
        None removing one), and the state_data given, for the event of a state change."""
        changed = self._changed()
        fixed = [name for name in changed if name in FIXED]
        if fixed:
            raise ValidationError(f"job {self.id}: {fixed[0]} cannot be changed once the "
                                  "job exists (delete it and create another)")
        fields = {name: getattr(self, name) for name in changed}
        event_data = None
        if "state_data" in fields:  # only the keys that changed, so the site's keys survive
            old = self._loaded["state_data"]
            new = inputs.mapping(self.id, "state_data", self.state_data)
            fields["state_data"] = {**{k: None for k in old if k not in new},
                                    **{k: v for k, v in new.items() if old.get(k) != v}}
            event_data = new
        return fields, event_data

    def delete(self) -> None:
        """Delete the job, its items and log rows; refused while items are in flight."""
        if self.id is None:
            raise ValidationError("this Job is not saved: nothing to delete")
        with transaction():
            if not guarded(lambda: db.Job.select().where(self._same_row()).exists()):
                raise self.DoesNotExist(f"job {self.id} no longer exists")
            guarded(lambda: job_db.delete_jobs([self.id]))
        self.id = None

    @classmethod
    def _create_all(cls, objs: list[Job]) -> list[Job]:
        return _create(objs)

    @classmethod
    def _update(cls, query: QuerySet[Any], fields: dict[str, Any]) -> UpdateResult:
        """Each job moves through the same compare-and-set as save(); all or nothing.
        state_data is merged key by key. Returns the updated jobs; see UpdateResult for
        FAILED jobs sent to RESTART_READY that failed on a transfer."""
        return update(query, fields)

    @classmethod
    def _delete(cls, query: QuerySet[Any]) -> int:
        def still_matching(ids: list[int]) -> list[int]:  # the filter, asked under lock
            return [row[0] for row in query._query(db.Job.id).where(
                db.Job.id.in_(value_list(ids))).tuples()]

        return retried(lambda: guarded(lambda: job_db.delete_jobs(query._ids(),
                                                                  still_matching)))


def _create(objs: list[Job]) -> list[Job]:
    """Balsam's input forms -> JobSpec -> create_jobs; the objects become saved."""
    connect()
    registered = guarded(lambda: list(db.App.select(db.App.id, db.App.name,
                                                     db.App.source_file,
                                                     db.App.transfers).tuples()))
    apps = {app_id: name for app_id, name, _, _ in registered}
    stems = {name: Path(source).stem for _, name, source, _ in registered}
    slots = {name: transfers for _, name, _, transfers in registered}
    site_name = current_settings().site_name
    specs = []
    for index, job in enumerate(objs):
        where = f"job {index}" if len(objs) > 1 else "job"
        if job.id is not None:
            raise ValidationError(f"{where}: job {job.id} is already saved")
        specs.append(JobSpec(app=inputs.app_name(where, job, apps, stems, site_name, slots),
                             workdir=inputs.workdir_text(where, job.workdir),
                             transfers=inputs.transfer_texts(where, job._transfers),
                             # checked by create_jobs, whose messages name the workdir
                             tags={} if job.tags is None else job.tags,
                             parameters={} if job.parameters is None else job.parameters))
    rows = guarded(lambda: create_jobs(current_settings(), specs))
    for job, row in zip(objs, rows, strict=True):
        job._load({**row.__data__, "app_name": apps[row.__data__["app"]]})
    return objs
