"""Creating jobs and their transfer items: validate everything, then write in one go."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from balsam_mp import states
from balsam_mp.api.apps import check_relative_path
from balsam_mp.db.bulk import insert_rows, value_list
from balsam_mp.db.models import App, Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import ValidationError
from balsam_mp.settings import Settings
from balsam_mp.states import Item


@dataclass
class JobSpec:
    app: str
    workdir: str
    transfers: dict[str, str]
    tags: dict[str, str]
    parameters: dict[str, Any]


def parse_location(where: str, value: Any, settings: Settings) -> tuple[str, str]:
    """'alias:/absolute/path' -> (alias, path); only trusted aliases pass."""
    if not isinstance(value, str) or ":" not in value:
        raise ValidationError(f"{where}: {value!r} is not 'alias:/absolute/path'")
    alias, _, path = value.partition(":")
    if alias not in settings.transfers.transfer_locations:
        trusted = ", ".join(sorted(settings.transfers.transfer_locations))
        raise ValidationError(
            f"{where}: location alias {alias!r} is not in transfer_locations ({trusted})"
        )
    if not path.startswith("/"):
        raise ValidationError(f"{where}: remote path {path!r} must be absolute")
    if ".." in PurePosixPath(path).parts:
        raise ValidationError(f"{where}: remote path {path!r} must not contain '..'")
    return alias, posixpath.normpath(path)


def create_jobs(settings: Settings, specs: list[JobSpec]) -> list[Job]:
    """Create many jobs in one transaction; one bad job rejects them all."""
    apps = {app.name: app for app in App.select()}
    seen_workdirs: set[str] = set()
    planned = []
    for index, spec in enumerate(specs):
        where = f"job {index} ({spec.workdir!r})" if len(specs) > 1 else f"job {spec.workdir!r}"
        planned.append(_plan(where, spec, apps, settings, seen_workdirs))
    _reject_used_workdirs(list(seen_workdirs))

    db = Job._meta.database
    now = utcnow()
    with db.atomic():
        job_rows = [{"app": app.id, "workdir": spec.workdir, "tags": spec.tags,
                     "parameters": spec.parameters, "created_at": now, "updated_at": now,
                     "state": states.READY if any(i["direction"] == "in" for i in items)
                     else states.STAGED_IN, "state_data": {}}
                    for spec, app, items in planned]
        insert_rows(Job, job_rows)
        ids = _ids_by_workdir([row["workdir"] for row in job_rows])
        insert_rows(TransferItem, [
            dict(item, job=ids[spec.workdir], created_at=now, updated_at=now)
            for spec, _, items in planned for item in items])
        insert_rows(LogEvent, [{"job": ids[row["workdir"]], "to_state": row["state"],
                                "message": "created", "timestamp": now} for row in job_rows])
    for spec, _, _ in planned:
        (settings.data_path / spec.workdir).mkdir(parents=True, exist_ok=True)
    return [Job(id=ids[row["workdir"]], **row) for row in job_rows]


def _ids_by_workdir(workdirs: list[str]) -> dict[str, int]:
    return dict(Job.select(Job.workdir, Job.id).where(Job.workdir.in_(value_list(workdirs)))
                .tuples())


def _plan(where: str, spec: JobSpec, apps: dict[str, App], settings: Settings,
          seen_workdirs: set[str]) -> tuple[JobSpec, App, list[dict[str, Any]]]:
    app = apps.get(spec.app)
    if app is None:
        known = ", ".join(sorted(apps)) or "none; run `balsam app sync`"
        raise ValidationError(f"{where}: unknown app {spec.app!r} (known: {known})")
    workdir = check_relative_path(f"{where}: workdir", spec.workdir)
    spec.workdir = workdir.as_posix()
    if spec.workdir in seen_workdirs:
        raise ValidationError(f"{where}: workdir {spec.workdir!r} is used twice in this batch")
    seen_workdirs.add(spec.workdir)
    for name, value in (("tags", spec.tags), ("parameters", spec.parameters)):
        if not isinstance(value, dict):
            raise ValidationError(f"{where}: {name} must be a mapping")

    slots: dict[str, dict[str, Any]] = app.transfers
    unknown = set(spec.transfers) - set(slots)
    if unknown:
        raise ValidationError(
            f"{where}: app {app.name} has no transfer slot {sorted(unknown)[0]!r} "
            f"(slots: {', '.join(sorted(slots)) or 'none'})"
        )
    missing = [name for name, slot in slots.items()
               if slot["required"] and name not in spec.transfers]
    if missing:
        raise ValidationError(f"{where}: required transfer slot {missing[0]!r} is missing")

    job_root = Path(settings.data_path, spec.workdir)
    items = []
    for name, value in spec.transfers.items():
        slot = slots[name]
        alias, remote_path = parse_location(f"{where}: slot {name!r}", value, settings)
        local = slot["local_path"]
        if local == ".":  # as Balsam: a directory moves to/from the workdir itself,
            # a file keeps its remote name
            local_path = job_root if slot["recursive"] else job_root / posixpath.basename(
                remote_path)
        else:
            local_path = job_root / local
        items.append({
            "slot": name, "direction": slot["direction"], "location_alias": alias,
            "remote_path": remote_path, "local_path": str(local_path),
            "recursive": slot["recursive"],
            "state": Item.PENDING if slot["direction"] == "in" else Item.AWAITING_JOB,
        })
    return spec, app, items


def _reject_used_workdirs(workdirs: list[str]) -> None:
    used = Job.select(Job.workdir).where(Job.workdir.in_(value_list(workdirs))).first()
    if used is not None:
        raise ValidationError(f"job {used.workdir!r}: workdir is already used by another job")
