"""Writing jobs: what save(), qs.update() and Job.objects.bulk_update() share.

Every write is a compare-and-set from the state the job was read in, checked against
the transition table, in one transaction (all or none). The state_data given with a
state change is also the data of its event (EventLog.data), as in Balsam.
"""

from __future__ import annotations

import json
from typing import Any

from balsam_mp import db, transitions
from balsam_mp.api import inputs
from balsam_mp.api.model import Model
from balsam_mp.api.query import QuerySet, guarded
from balsam_mp.api.site import retried as in_retried_transaction
from balsam_mp.db import controls
from balsam_mp.db import jobs as job_db
from balsam_mp.db.bulk import value_list
from balsam_mp.errors import ValidationError
from balsam_mp.states import FAILED, RESTART_READY

WRITABLE = ("tags", "parameters", "state_data", "state")
SITE_KEYS = ("failed_from", "failed_files", "previous_failures")  # state_data the site owns
FIXED = ("workdir", "app_id", "app", "transfers")


class UpdateResult(list):
    """The jobs an update wrote (a list, as Balsam's update returns), and `retried`:
    job id -> the state a FAILED job went to instead of RESTART_READY, because it
    failed on a transfer (its failed items are retried: READY, then STAGED_IN when
    they arrive; POSTPROCESSED for a failed stage-out) or its stage-in never finished
    (READY)."""

    retried: dict[int, str]

    def __init__(self, jobs: list[Any], retried: dict[int, str] | None = None) -> None:
        super().__init__(jobs)
        self.retried = retried or {}


def write(rows: list[tuple[int, str]], fields: dict[str, Any],
          event_data: dict[str, Any] | None = None) -> dict[int, str]:
    """Write `fields` on jobs (id, state they were read in), in the caller's
    transaction. FAILED jobs sent to RESTART_READY that a transfer holds are retried
    instead (returned: id -> the state each went to)."""
    values = {getattr(db.Job, name): inputs.mapping(rows[0][0] if len(rows) == 1 else "update",
                                              name, fields[name])
              for name in ("tags", "parameters") if name in fields}
    patch = inputs.mapping("update", "state_data", fields["state_data"]) \
        if "state_data" in fields else None
    owned = sorted(set(patch or ()) & set(SITE_KEYS))
    if owned:
        raise ValidationError(f"state_data key {owned[0]!r} is written by the site (use "
                              "`balsam transfer retry` to send a failed job back)")
    target = None
    if "state" in fields:
        target = transitions.check_state_name(fields["state"], "state")
    ids = [job_id for job_id, _ in rows]
    guarded(lambda: job_db.write_fields(ids, values, patch))
    retried: dict[int, str] = {}
    if target == RESTART_READY:
        failed = [job_id for job_id, state in rows if state == FAILED]
        retried = guarded(lambda: controls.retry_failed_jobs(failed)) if failed else {}
    read_in: dict[str, list[int]] = {}  # one compare-and-set per state the jobs were in
    for job_id, read_state in rows:
        if target is not None and read_state != target and job_id not in retried:
            read_in.setdefault(read_state, []).append(job_id)
    data = None if event_data is None else {k: v for k, v in event_data.items()
                                            if v is not None}
    for read_state, job_ids in read_in.items():
        guarded(lambda s=read_state, i=job_ids: job_db.set_jobs_state(
            i, s, target, data=data or None))  # type: ignore[arg-type]
    return retried


def update(query: QuerySet[Any], fields: dict[str, Any]) -> UpdateResult:
    """qs.update(**fields): every job of the query, the same change."""
    for name in fields:
        if name in FIXED:
            raise ValidationError(f"update: {name} cannot be changed once a job exists")
        if name not in WRITABLE:
            raise ValidationError(f"update: Job has no writable field {name!r} "
                                  f"(writable: {', '.join(WRITABLE)})")
    event_data = fields.get("state_data") if "state" in fields else None

    def body() -> tuple[list[tuple[int, str]], dict[int, str]]:  # again whole on a deadlock
        rows = guarded(lambda: list(job_db.locked(query._query(db.Job.id, db.Job.state))
                                    .tuples()))  # locked in id order, then read
        return rows, (write(rows, fields, event_data) if rows else {})

    rows, retried = in_retried_transaction(body)
    ids = [job_id for job_id, _ in rows]
    return UpdateResult(list(QuerySet(query.model, where=(db.Job.id.in_(value_list(ids)),))),
                        retried)


def bulk_update(jobs: list[Model]) -> UpdateResult:
    """Job.objects.bulk_update: each job's own changes, one transaction. Jobs with the
    same changes, read in the same state, are written together."""
    groups: dict[str, tuple[dict[str, Any], dict[str, Any] | None, list[Model]]] = {}
    change_of: dict[int, str] = {}  # job id -> its change: one job given twice must agree
    for job in jobs:
        fields, event_data = job._patch()
        if fields:
            key = json.dumps([job._loaded["state"], fields, event_data], sort_keys=True,
                             default=str)
            if change_of.setdefault(job.id, key) != key:  # type: ignore[arg-type]
                raise ValidationError(f"bulk_update: job {job.id} is given twice with "
                                      "different changes; nothing was written")
            groups.setdefault(key, (fields, event_data, []))[2].append(job)
    changed = [job for _, _, same in groups.values() for job in same]
    retried: dict[int, str] = {}

    def body() -> None:  # run again whole on a deadlock
        retried.clear()
        ids = [job.id for job in changed]
        found = dict(guarded(lambda: list(job_db.locked(db.Job.select(  # in id order
            db.Job.id, db.Job.created_at).where(db.Job.id.in_(value_list(ids)))).tuples())))
        gone = sorted({job.id for job in changed if found.get(job.id) != job.created_at})
        if gone:
            raise type(changed[0]).DoesNotExist(
                f"bulk_update: job(s) {', '.join(map(str, gone))} no longer exist; "
                "nothing was written")
        for fields, event_data, same in groups.values():
            rows = [(job.id, job._loaded["state"]) for job in same]
            retried.update(write(rows, fields, event_data))

    if changed:
        in_retried_transaction(body)
        type(changed[0]).objects.bulk_refresh(changed)
    return UpdateResult(changed, retried)
