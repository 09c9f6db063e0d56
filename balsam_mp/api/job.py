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

from balsam_mp import db, transitions
from balsam_mp.api import inputs
from balsam_mp.api.jobs import JobSpec, create_jobs
from balsam_mp.api.model import Model
from balsam_mp.api.models import CHOICES, EventLog
from balsam_mp.api.query import Manager, QuerySet, guarded
from balsam_mp.api.site import connect, current_settings, retried, transaction
from balsam_mp.db import jobs as job_db
from balsam_mp.db.bulk import value_list
from balsam_mp.errors import ValidationError

# Balsam's launcher settings: meaningless here (this site stages files, it runs no apps).
LAUNCH_FIELDS = {"num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core",
                 "launch_params", "gpus_per_rank", "node_packing_count", "wall_time_min",
                 "parent_ids", "data", "return_code", "batch_job_id"}
WRITABLE = ("tags", "parameters", "state_data", "state")
SITE_KEYS = ("failed_from", "failed_files", "previous_failures")  # state_data the site owns
FIXED = ("workdir", "app_id", "app", "transfers")


class JobManager(Manager["Job"]):
    def create(self, workdir: Any = None, app_id: int | None = None, tags: Any = None,
               parameters: Any = None, transfers: Any = None, app: Any = None,
               **unsupported: Any) -> Job:
        """Create and save one job (the keywords of Job(...))."""
        job = Job(workdir=workdir, app_id=app_id, tags=tags, parameters=parameters,
                  transfers=transfers, app=app, **unsupported)
        job.save()
        return job

    def bulk_create(self, jobs: list[Job | dict[str, Any]]) -> list[Job]:
        """Create many jobs (Job objects or dicts of its keywords) in one transaction:
        all of them, or none if one is bad. The Job objects given become saved."""
        if not isinstance(jobs, (list, tuple)):
            raise ValidationError(f"bulk_create takes a list of Job objects, not {jobs!r}")
        objs = []
        for index, job in enumerate(jobs):
            if isinstance(job, dict):
                job = Job(**job)
            elif not isinstance(job, Job):
                raise ValidationError(f"job {index}: {job!r} is not a Job or a dict")
            objs.append(job)
        return _create(objs)

    def set_state(self, job_id: int, from_state: str, to_state: str, message: str = "") -> None:
        """Compare-and-set one job's state (e.g. RUN_DONE -> POSTPROCESSED)."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise ValidationError(f"set_state: job id {job_id!r} is not an integer")
        with transaction():
            guarded(lambda: job_db.set_job_state(job_id, from_state, to_state, message))


class Job(Model):
    _table = db.Job
    _manager = JobManager
    _choices = CHOICES
    _filters: ClassVar[dict[str, tuple[Any, str]]] = {
        "id": (db.Job.id, "int"), "app_id": (db.Job.app, "int"), "app": (db.App.name, "text"),
        "workdir": (db.Job.workdir, "path"), "state": (db.Job.state, "job_state"),
        "tags": (db.Job.tags, "tags"), "parameters": (db.Job.parameters, "tags"),
        "last_update": (db.Job.updated_at, "time"), "created_at": (db.Job.created_at, "time"),
    }
    _tracked = ("workdir", "app_id", "app", "state", "state_data", "tags", "parameters")
    _repr_fields = ("workdir", "state")
    objects: ClassVar[JobManager]

    workdir: Path
    app_id: int | None
    app: str | None
    state: str | None
    state_data: dict[str, Any]
    tags: dict[str, str]
    parameters: dict[str, Any]

    def __init__(self, workdir: Any = None, app_id: int | None = None, tags: Any = None,
                 parameters: Any = None, transfers: Any = None, app: Any = None,
                 **unsupported: Any) -> None:
        if unsupported:
            name = sorted(unsupported)[0]
            why = ("is a Balsam launcher setting; balsam_mp stages files and runs no apps"
                   if name in LAUNCH_FIELDS else
                   "is not a Job field (fields: workdir, app_id or app, transfers, tags, "
                   "parameters)")
            raise ValidationError(f"Job({name}=...): {name} {why}")
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
        changed = self._changed()
        fixed = [name for name in changed if name in FIXED]
        if fixed:
            raise ValidationError(f"job {self.id}: {fixed[0]} cannot be changed once the "
                                  "job exists (delete it and create another)")
        if not changed:
            self.refresh_from_db()  # nothing to write; a deleted job says so
            return
        fields = {name: getattr(self, name) for name in changed}
        if "state_data" in fields:  # only the keys that changed, so the site's keys survive
            old = self._loaded["state_data"]
            new = inputs.mapping(self.id, "state_data", self.state_data)
            fields["state_data"] = {**{k: None for k in old if k not in new},
                                    **{k: v for k, v in new.items() if old.get(k) != v}}
        with transaction():
            if not guarded(lambda: db.Job.select().where(self._same_row()).exists()):
                raise self.DoesNotExist(f"job {self.id} no longer exists")
            _write([(self.id, self._loaded["state"])], fields)
        self.refresh_from_db()

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
    def _update(cls, query: QuerySet[Any], fields: dict[str, Any]) -> list[Job]:
        """Each job moves through the same compare-and-set as save(); all or nothing.
        state_data is merged key by key. Returns the updated jobs."""
        for name in fields:
            if name in FIXED:
                raise ValidationError(f"update: {name} cannot be changed once a job exists")
            if name not in WRITABLE:
                raise ValidationError(f"update: Job has no writable field {name!r} "
                                      f"(writable: {', '.join(WRITABLE)})")
        def write() -> list[tuple[int, str]]:  # run again whole after a deadlock
            rows = guarded(lambda: list(job_db.locked(query._query(db.Job.id, db.Job.state))
                                        .tuples()))  # locked in id order, then read
            _write(rows, fields)
            return rows

        rows = retried(write)
        ids = [job_id for job_id, _ in rows]
        return list(QuerySet(cls, where=(db.Job.id.in_(value_list(ids)),)))

    @classmethod
    def _delete(cls, query: QuerySet[Any]) -> int:
        def still_matching(ids: list[int]) -> list[int]:  # the filter, asked under lock
            return [row[0] for row in query._query(db.Job.id).where(
                db.Job.id.in_(value_list(ids))).tuples()]

        return retried(lambda: guarded(lambda: job_db.delete_jobs(query._ids(),
                                                                  still_matching)))


def _write(rows: list[tuple[int, str]], fields: dict[str, Any]) -> None:
    """Write `fields` on jobs (id, state they were read in), in the caller's transaction."""
    values = {getattr(db.Job, name): inputs.mapping(rows[0][0] if len(rows) == 1 else "update",
                                              name, fields[name])
              for name in ("tags", "parameters") if name in fields}
    patch = inputs.mapping("update", "state_data", fields["state_data"]) \
        if "state_data" in fields else None
    owned = sorted(set(patch or ()) & set(SITE_KEYS))
    if owned:
        raise ValidationError(f"state_data key {owned[0]!r} is written by the site (use "
                              "`balsam transfer retry` to send a failed job back)")
    target = fields.get("state")
    if "state" in fields:
        transitions.check_state_name(target, "state")
    ids = [job_id for job_id, _ in rows]
    guarded(lambda: job_db.write_fields(ids, values, patch))
    read_in: dict[str, list[int]] = {}  # one compare-and-set per state the jobs were in
    for job_id, read_state in rows:
        if target is not None and read_state != target:
            read_in.setdefault(read_state, []).append(job_id)
    for read_state, job_ids in read_in.items():
        guarded(lambda s=read_state, i=job_ids: job_db.set_jobs_state(i, s, target))


def _create(objs: list[Job]) -> list[Job]:
    """Balsam's input forms -> JobSpec -> create_jobs; the objects become saved."""
    connect()
    apps = dict(guarded(lambda: list(db.App.select(db.App.id, db.App.name).tuples())))
    specs = []
    for index, job in enumerate(objs):
        where = f"job {index}" if len(objs) > 1 else "job"
        if job.id is not None:
            raise ValidationError(f"{where}: job {job.id} is already saved")
        specs.append(JobSpec(app=inputs.app_name(where, job, apps),
                             workdir=inputs.workdir_text(where, job.workdir),
                             transfers=inputs.transfer_texts(where, job._transfers),
                             # checked by create_jobs, whose messages name the workdir
                             tags={} if job.tags is None else job.tags,
                             parameters={} if job.parameters is None else job.parameters))
    rows = guarded(lambda: create_jobs(current_settings(), specs))
    for job, row in zip(objs, rows, strict=True):
        job._load({**row.__data__, "app_name": apps[row.__data__["app"]]})
    return objs
