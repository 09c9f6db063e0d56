"""Creating jobs and their transfer items: validate everything, make the folders, then
commit in one go. An error leaves neither rows nor folders; a kill -9 at any point leaves
no job without its folder (folders come first, so at worst an empty folder is left)."""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import peewee

from balsam_mp import states
from balsam_mp.api.paths import (
    PATH_MAX,
    Folders,
    check_limits,
    check_relative_path,
    name_max_of,
    overlap,
    shown,
)
from balsam_mp.db.bulk import insert_rows, value_list
from balsam_mp.db.models import App, Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import ValidationError
from balsam_mp.settings import SETTINGS_FILE, Settings
from balsam_mp.states import Item

SPEC_KEYS = ("app", "workdir", "transfers", "tags", "parameters")


@dataclass
class JobSpec:
    app: str
    workdir: str
    transfers: dict[str, str]
    tags: dict[str, str]
    parameters: dict[str, Any]


def specs_from_dicts(jobs: Any) -> list[JobSpec]:
    """The API's list of job dicts as JobSpecs; a wrong shape is a ValidationError."""
    if isinstance(jobs, (str, bytes, Mapping)) or not hasattr(jobs, "__iter__"):
        raise ValidationError(f"expected a list of jobs (dicts), got {type(jobs).__name__}")
    specs = []
    for index, job in enumerate(jobs):
        if not isinstance(job, Mapping):
            raise ValidationError(f"job {index}: expected a dict, got {type(job).__name__}")
        unknown = sorted(map(str, set(job) - set(SPEC_KEYS)))
        if unknown:
            raise ValidationError(f"job {index}: unknown key {unknown[0]!r} "
                                  f"(keys: {', '.join(SPEC_KEYS)})")
        for key in ("app", "workdir"):
            if key not in job:
                raise ValidationError(f"job {index}: the {key!r} key is missing")
        specs.append(JobSpec(app=job["app"], workdir=job["workdir"],
                             transfers=_or_empty(job.get("transfers")),
                             tags=_or_empty(job.get("tags")),
                             parameters=_or_empty(job.get("parameters"))))
    return specs


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


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
    apps = {app.name: app for app in App.select()}
    data = Path(os.path.realpath(settings.data_path))
    name_max = name_max_of(data)
    seen_workdirs: set[str] = set()
    wheres = _names(specs)
    planned = [_plan(where, spec, apps, settings, data, name_max, seen_workdirs)
               for where, spec in zip(wheres, specs, strict=True)]
    _reject_used_workdirs(list(seen_workdirs))

    folders = Folders()
    try:
        for where, (spec, _, _) in zip(wheres, planned, strict=True):
            folders.make(f"{where}: workdir", settings.data_path / spec.workdir)
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
            folders.recheck_found()
            insert_rows(Job, job_rows)
            ids = _ids_by_workdir([row["workdir"] for row in job_rows])
            insert_rows(TransferItem, [
                dict(item, job=ids[spec.workdir], created_at=now, updated_at=now)
                for spec, _, items in planned for item in items])
            insert_rows(LogEvent, [{"job": ids[row["workdir"]], "to_state": row["state"],
                                    "message": "created", "timestamp": now}
                                   for row in job_rows])
    except peewee.IntegrityError:
        # another process committed one of these workdirs since we checked
        _reject_used_workdirs([row["workdir"] for row in job_rows])
        raise
    return [Job(id=ids[row["workdir"]], **row) for row in job_rows]


def _undo(folders: Folders, data: Path) -> None:
    """Remove the folders made for a failed creation, except those that meanwhile became
    another process's committed workdirs (checked under the write lock)."""
    if not folders.made:
        return
    names = [p.relative_to(data).as_posix() for p in folders.made]
    with Job._meta.database.atomic():
        used = {data / w for (w,) in Job.select(Job.workdir)
                .where(Job.workdir.in_(value_list(names))).tuples()}
        folders.undo(keep=used)


def _ids_by_workdir(workdirs: list[str]) -> dict[str, int]:
    return dict(Job.select(Job.workdir, Job.id).where(Job.workdir.in_(value_list(workdirs)))
                .tuples())


def _plan(where: str, spec: JobSpec, apps: dict[str, App], settings: Settings, data: Path,
          name_max: int, seen_workdirs: set[str]) -> tuple[JobSpec, App, list[dict[str, Any]]]:
    if not isinstance(spec.app, str):
        raise ValidationError(f"{where}: app must be an app name, got {spec.app!r}")
    app = apps.get(spec.app)
    if app is None:
        known = ", ".join(sorted(apps)) or "none; run `balsam app sync`"
        raise ValidationError(f"{where}: unknown app {spec.app!r} (known: {known})")
    spec.workdir = _workdir(f"{where}: workdir", spec.workdir, settings, data, name_max)
    if spec.workdir in seen_workdirs:
        raise ValidationError(f"{where}: workdir {spec.workdir!r} is used twice in this batch")
    seen_workdirs.add(spec.workdir)
    spec.tags = _tags(f"{where}: tags", spec.tags)
    if not isinstance(spec.parameters, dict):
        raise ValidationError(f"{where}: parameters must be a mapping, "
                              f"got {type(spec.parameters).__name__}")
    _check_json(f"{where}: parameters", spec.parameters)
    if not isinstance(spec.transfers, dict):
        raise ValidationError(f"{where}: transfers must be a mapping of slot: "
                              f"'alias:/path', got {type(spec.transfers).__name__}")

    slots: dict[str, dict[str, Any]] = app.transfers
    unknown = sorted(str(name) for name in set(spec.transfers) - set(slots))
    if unknown:
        raise ValidationError(
            f"{where}: app {app.name} has no transfer slot {unknown[0]!r} "
            f"(slots: {', '.join(sorted(slots)) or 'none'})"
        )
    missing = [name for name, slot in slots.items()
               if slot["required"] and name not in spec.transfers]
    if missing:
        raise ValidationError(f"{where}: required transfer slot {missing[0]!r} is missing")

    job_root = Path(settings.data_path, spec.workdir)
    items = []
    relative: dict[str, dict[str, PurePosixPath]] = {"in": {}, "out": {}}
    for name, value in spec.transfers.items():
        slot = slots[name]
        at = f"{where}: slot {name!r}"
        alias, remote_path = parse_location(at, value, settings)
        local = PurePosixPath(slot["local_path"])
        if local == PurePosixPath("."):  # keep the remote file's name
            if remote_path == "/":
                raise ValidationError(f"{at}: remote path '/' has no name to keep "
                                      f"(local_path '.')")
            local = PurePosixPath(posixpath.basename(remote_path))
        relative[slot["direction"]][name] = local
        local_path = job_root / local
        check_limits(f"{at}: local path", str(local_path), name_max)
        items.append({
            "slot": name, "direction": slot["direction"], "location_alias": alias,
            "remote_path": remote_path, "local_path": str(local_path),
            "recursive": slot["recursive"],
            "state": Item.PENDING if slot["direction"] == "in" else Item.AWAITING_JOB,
        })
    for direction, paths in relative.items():
        clash = overlap(paths)
        if clash:
            a, b = clash
            raise ValidationError(
                f"{where}: stage-{direction} slots {a!r} and {b!r} would both use local "
                f"path {paths[a].as_posix()!r}" + ("" if paths[a] == paths[b] else
                                                    f" (and {paths[b].as_posix()!r})"))
    return spec, app, items


def _workdir(what: str, workdir: Any, settings: Settings, data: Path, name_max: int) -> str:
    """The normalized workdir: strictly inside SITE/data, even through symlinks."""
    pure = check_relative_path(what, workdir)
    if pure == PurePosixPath("."):
        raise ValidationError(f"{what}: {workdir!r} is SITE/data itself; name a folder in it")
    full = settings.data_path / pure
    check_limits(what, str(full), name_max, PATH_MAX)
    real = Path(os.path.realpath(full))
    if real == data:
        raise ValidationError(f"{what}: {shown(workdir)} resolves to SITE/data itself")
    if data not in real.parents:
        raise ValidationError(f"{what}: {shown(workdir)} leads out of SITE/data "
                              f"(to {shown(str(real))}) through a symlink")
    return pure.as_posix()


def _tags(what: str, tags: Any) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise ValidationError(f"{what}: must be a mapping of key: value, "
                              f"got {type(tags).__name__}")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValidationError(f"{what}: {key!r}: {value!r}: keys and values must be "
                                  "strings")
        for text in (key, value):
            if "\0" in text:
                raise ValidationError(f"{what}: {shown(text)} contains a NUL byte")
    return tags


def _check_json(what: str, value: Any) -> None:
    """Plain JSON only: what comes back from the database is what went in."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{what}: key {key!r} must be a string")
            _check_json(f"{what}.{key}", inner)
    elif isinstance(value, list):
        for n, inner in enumerate(value):
            _check_json(f"{what}[{n}]", inner)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{what}: {value!r} is not a JSON number")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValidationError(f"{what}: {type(value).__name__} is not JSON "
                              "(use strings, numbers, booleans, lists and dicts)")
    if isinstance(value, str):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{what}: {shown(value)} is not valid UTF-8") from None


def _reject_used_workdirs(workdirs: list[str]) -> None:
    used = Job.select(Job.workdir).where(Job.workdir.in_(value_list(workdirs))).first()
    if used is not None:
        raise ValidationError(f"job {used.workdir!r}: workdir is already used by another job")
