"""Creating jobs and their transfer items: validate everything, make the folders, then
commit in one go. An error leaves neither rows nor folders; a kill -9 at any point leaves
no job without its folder (folders come first, so at worst an empty folder is left)."""

from __future__ import annotations

import os
import posixpath
import unicodedata
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import peewee

from balsam_mp import states
from balsam_mp.api.jobspec import JobSpec, check_json, check_tags
from balsam_mp.api.paths import (
    NAME_MAX,
    Folders,
    check_limits,
    check_relative_path,
    name_max_of,
    overlap,
    shown,
)
from balsam_mp.db.bulk import insert_rows, lock_job_creation, refresh_statistics, value_list
from balsam_mp.db.models import App, Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import ValidationError
from balsam_mp.settings import SETTINGS_FILE, Settings
from balsam_mp.states import Item

__all__ = ["JobSpec", "create_jobs", "parse_location"]
KEEP_NAME = PurePosixPath(".")


def parse_location(where: str, value: Any, settings: Settings) -> tuple[str, str]:
    """'alias:/absolute/path' -> (alias, path); only trusted aliases pass."""
    if not isinstance(value, str) or ":" not in value:
        raise ValidationError(f"{where}: {value!r} is not 'alias:/absolute/path'")
    alias, _, path = value.partition(":")
    locations = settings.transfers.transfer_locations
    if not locations:
        raise ValidationError(f"{where}: no transfer location is configured; add "
                              f"transfer_locations to {settings.site_path / SETTINGS_FILE}")
    if alias not in locations:
        raise ValidationError(f"{where}: location alias {alias!r} is not in "
                              f"transfer_locations ({', '.join(sorted(locations))})")
    check_limits(f"{where}: remote path", path)
    if not path.startswith("/"):
        raise ValidationError(f"{where}: remote path {shown(path)} must be absolute")
    if ".." in PurePosixPath(path).parts:
        raise ValidationError(f"{where}: remote path {shown(path)} must not contain '..'")
    protocol, root = settings.location(alias)
    if protocol == "local" and root:  # local:///root: the path is joined to the root
        check_limits(f"{where}: remote path under {root}", root.rstrip("/") + path)
    return alias, posixpath.normpath(path)


def create_jobs(settings: Settings, specs: list[JobSpec]) -> list[Job]:
    """Create many jobs in one transaction; one bad job rejects them all."""
    if isinstance(specs, (str, bytes, Mapping)) or not all(isinstance(s, JobSpec)
                                                         for s in specs):
        raise ValidationError("expected a list of jobs")
    if not specs:
        return []
    planner = _Planner(settings)
    wheres = _names(specs)
    planned = [planner.plan(where, spec) for where, spec in zip(wheres, specs, strict=True)]
    _reject_used_workdirs(list(planner.workdirs))

    folders = Folders()
    try:
        for where, (spec, _, _) in zip(wheres, planned, strict=True):
            if not settings.client:  # a client's jobs get their folders from the site
                folders.make(f"{where}: workdir", f"{settings.data_path}/{spec.workdir}")
        return _commit(folders, planned)
    except BaseException:
        _undo(folders, settings.data_path)
        raise


def _names(specs: list[JobSpec]) -> list[str]:
    if len(specs) == 1:
        return [f"job {shown(str(specs[0].workdir))}"]
    return [f"job {n} ({shown(str(s.workdir))})" for n, s in enumerate(specs)]


def _commit(folders: Folders, planned: list) -> list[Job]:
    db = Job._meta.database
    now = utcnow()
    job_rows = [{"app": app.id, "workdir": spec.workdir, "tags": spec.tags,
                 "parameters": spec.parameters, "created_at": now, "updated_at": now,
                 "state": states.READY if any(i["direction"] == "in" for i in items)
                 else states.STAGED_IN, "state_data": {}}
                for spec, app, items in planned]
    try:
        with db.atomic():
            lock_job_creation()
            _recheck_apps([app for _, app, _ in planned])
            folders.recheck_found()
            insert_rows(Job, job_rows)
            ids = _ids_by_workdir([row["workdir"] for row in job_rows])
            insert_rows(TransferItem, [
                dict(item, job=ids[spec.workdir], created_at=now, updated_at=now)
                for spec, _, items in planned for item in items])
            insert_rows(LogEvent, [{"job": ids[row["workdir"]], "from_state": states.CREATED,
                                    "to_state": row["state"], "message": "created",
                                    "timestamp": now}
                                   for row in job_rows])
    except peewee.IntegrityError:
        # another process committed one of these workdirs, or removed an app, since
        _reject_used_workdirs([row["workdir"] for row in job_rows])
        _recheck_apps([app for _, app, _ in planned])
        raise
    refresh_statistics(len(job_rows))
    return [Job(id=ids[row["workdir"]], **row) for row in job_rows]


def _undo(folders: Folders, data: Path) -> None:
    """Remove the folders made for a failed creation, except those that meanwhile became
    another process's committed workdirs (checked under lock_job_creation)."""
    if not folders.made:
        return
    names = [os.path.relpath(path, data) for path in folders.made]
    with Job._meta.database.atomic():
        lock_job_creation()
        used = {f"{data}/{w}" for (w,) in Job.select(Job.workdir)
                .where(Job.workdir.in_(value_list(names))).tuples()}
        folders.undo(keep=used)


class _Planner:
    """Checks jobs one by one and turns them into rows; caches what all jobs share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.apps = {app.name: app for app in App.select()}
        self.data = str(settings.data_path)
        # a client sees no folder of the site: paths are checked as written, and the
        # site checks symlinks when it makes the workdir
        self.client = settings.client
        self.real_data = self.data if self.client else os.path.realpath(self.data)
        self.name_max = NAME_MAX if self.client else name_max_of(Path(self.real_data))
        self.workdirs: set[str] = set()
        self._real: dict[str, str] = {}  # workdir parent -> its real path

    def plan(self, where: str, spec: JobSpec) -> tuple[JobSpec, App, list[dict[str, Any]]]:
        if not isinstance(spec.app, str):
            raise ValidationError(f"{where}: app must be an app name, got {spec.app!r}")
        app = self.apps.get(spec.app)
        if app is None:
            known = ", ".join(sorted(self.apps)) or "none; run `balsam app sync`"
            raise ValidationError(f"{where}: unknown app {spec.app!r} (known: {known})")
        spec.workdir = self.workdir(f"{where}: workdir", spec.workdir)
        if spec.workdir in self.workdirs:
            raise ValidationError(f"{where}: workdir {spec.workdir!r} is used twice in this "
                                  "batch")
        self.workdirs.add(spec.workdir)
        spec.tags = check_tags(f"{where}: tags", spec.tags)
        if not isinstance(spec.parameters, dict):
            raise ValidationError(f"{where}: parameters must be a mapping, "
                                  f"got {type(spec.parameters).__name__}")
        check_json(f"{where}: parameters", spec.parameters)
        if not isinstance(spec.transfers, dict):
            raise ValidationError(f"{where}: transfers must be a mapping of slot: "
                                  f"'alias:/path', got {type(spec.transfers).__name__}")
        slots: dict[str, dict[str, Any]] = app.transfers
        unknown = sorted(str(name) for name in set(spec.transfers) - set(slots))
        if unknown:
            raise ValidationError(f"{where}: app {app.name} has no transfer slot "
                                  f"{unknown[0]!r} (slots: {', '.join(sorted(slots)) or 'none'})")
        missing = [name for name, slot in slots.items()
                   if slot["required"] and name not in spec.transfers]
        if missing:
            raise ValidationError(f"{where}: required transfer slot {missing[0]!r} is missing")
        return spec, app, self.items(where, spec, slots)

    def items(self, where: str, spec: JobSpec,
              slots: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        job_root = f"{self.data}/{spec.workdir}"
        items = []
        local_paths: dict[str, dict[str, PurePosixPath]] = {"in": {}, "out": {}}
        for name, value in spec.transfers.items():
            slot = slots[name]
            at = f"{where}: slot {name!r}"
            alias, remote_path = parse_location(at, value, self.settings)
            local = PurePosixPath(slot["local_path"])
            if local == KEEP_NAME and slot["recursive"]:
                pass  # as Balsam: a directory moves to (or from) the workdir itself
            elif local == KEEP_NAME:  # a file keeps its remote name
                if remote_path == "/":
                    raise ValidationError(f"{at}: remote path '/' has no name to keep "
                                          "(local_path '.')")
                local = PurePosixPath(posixpath.basename(remote_path))
            local_paths[slot["direction"]][name] = local
            local_path = job_root if local == KEEP_NAME else f"{job_root}/{local.as_posix()}"
            check_limits(f"{at}: local path", local_path, self.name_max)
            items.append({
                "slot": name, "direction": slot["direction"], "location_alias": alias,
                "remote_path": remote_path, "local_path": local_path,
                "recursive": slot["recursive"],
                "state": Item.PENDING if slot["direction"] == "in" else Item.AWAITING_JOB,
            })
        for direction, paths in local_paths.items():
            clash = overlap(paths) if len(paths) > 1 else None
            if clash:
                a, b = (paths[n].as_posix() for n in clash)
                raise ValidationError(
                    f"{where}: stage-{direction} slots {clash[0]!r} and {clash[1]!r} would "
                    f"both use local path {a!r}" + ("" if a == b else f" (and {b!r})"))
        return items

    def workdir(self, what: str, workdir: Any) -> str:
        """The normalized workdir: strictly inside SITE/data, and no symlink on the way
        (SITE/data itself may be one): then each folder has one name, so the one-job-per-
        workdir rule, checked on names, holds for folders."""
        pure = check_relative_path(what, workdir)
        control = next((c for c in workdir if unicodedata.category(c) == "Cc"), None)
        if control is not None:  # a newline or an escape would forge lines in tables, logs
            raise ValidationError(f"{what}: {shown(workdir)} contains the control character "
                                  f"{control!r}; workdirs are printable")
        if pure == KEEP_NAME:
            raise ValidationError(f"{what}: {workdir!r} is SITE/data itself; name a folder "
                                  "in it")
        relative = pure.as_posix()
        check_limits(what, f"{self.data}/{relative}", self.name_max)
        real = self.resolve(relative)
        if real == self.real_data:
            raise ValidationError(f"{what}: {shown(workdir)} resolves to SITE/data itself")
        if not real.startswith(self.real_data + "/"):
            raise ValidationError(f"{what}: {shown(workdir)} leads out of SITE/data "
                                  f"(to {shown(real)}) through a symlink")
        if real != f"{self.real_data}/{relative}":  # one folder, two names: two jobs in it
            raise ValidationError(f"{what}: {shown(workdir)} passes through a symlink inside "
                                  f"SITE/data (it is {shown(real)}); name the folder itself")
        return relative

    def resolve(self, relative: str) -> str:
        """realpath of SITE/data/relative, its parent's cached: jobs share parents."""
        if self.client:
            return f"{self.data}/{relative}"
        parent, _, leaf = relative.rpartition("/")
        base = self._real.get(parent)
        if base is None:
            base = self._real[parent] = os.path.realpath(
                f"{self.data}/{parent}" if parent else self.data)
        full = f"{base}/{leaf}"
        return os.path.realpath(full) if os.path.islink(full) else full


def _ids_by_workdir(workdirs: list[str]) -> dict[str, int]:
    return dict(Job.select(Job.workdir, Job.id).where(Job.workdir.in_(value_list(workdirs)))
                .tuples())


def _reject_used_workdirs(workdirs: list[str]) -> None:
    used = Job.select(Job.workdir).where(Job.workdir.in_(value_list(workdirs))).first()
    if used is not None:
        raise ValidationError(f"job {used.workdir!r}: workdir is already used by another job")


def _recheck_apps(apps: list[App]) -> None:
    """The apps the jobs were planned with are still registered as they were read: an
    `app rm` or an `app sync` that changed their slots meanwhile refuses the creation
    whole (it was a FOREIGN KEY error, or items made from the old slots)."""
    planned = {app.id: app for app in apps}
    now = dict(App.select(App.id, App.transfers).where(
        App.id.in_(value_list(sorted(planned)))).tuples())
    for app_id, app in sorted(planned.items()):
        if app_id not in now:
            raise ValidationError(f"app {app.name} was removed while its jobs were being "
                                  "created; nothing was created")
        if now[app_id] != app.transfers:
            raise ValidationError(f"app {app.name}'s transfer slots changed while its jobs "
                                  "were being created (`app sync`); nothing was created: "
                                  "create them again")
