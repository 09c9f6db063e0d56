"""Job state changes: each one a compare-and-set that writes a log_event row.

Jobs are chosen by a condition (e.g. "the jobs of task 7") rather than by id lists, so
one statement moves every job of a batch. Callers run these inside a writing
transaction (`db.atomic()`, which is BEGIN IMMEDIATE).
"""

from __future__ import annotations

from typing import Any

import peewee

from balsam_mp import states
from balsam_mp.db.bulk import insert_rows
from balsam_mp.db.models import Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import StateConflict
from balsam_mp.states import Item


def set_job_state(job_id: int, from_state: str, to_state: str, message: str = "") -> None:
    """Move one job from `from_state` to `to_state`, or raise StateConflict."""
    if not move_jobs(Job.id == job_id, from_state, to_state, message):
        raise StateConflict(f"job {job_id}: expected state {from_state}, cannot move to {to_state}")
    if to_state == states.POSTPROCESSED:
        release_stage_out(Job.id == job_id)


def move_jobs(which: peewee.Expression, from_state: str, to_state: str, message: str = "",
              state_data: dict[str, Any] | None = None) -> list[int]:
    """Compare-and-set the jobs matching `which` that are in `from_state`; returns their ids."""
    moved = [job_id for (job_id,) in
             Job.select(Job.id).where(which, Job.state == from_state).tuples()]
    if not moved:
        return []
    now = utcnow()
    update: dict[Any, Any] = {Job.state: to_state, Job.updated_at: now}
    if state_data is not None:
        update[Job.state_data] = state_data
    count = Job.update(update).where(which, Job.state == from_state).execute()
    if count != len(moved):  # impossible inside BEGIN IMMEDIATE; fail loudly
        raise StateConflict(f"jobs changed under a write lock ({count}/{len(moved)})")
    insert_rows(LogEvent, [{"job": job_id, "from_state": from_state, "to_state": to_state,
                            "message": message, "timestamp": now} for job_id in moved])
    return moved


def release_stage_out(which: peewee.Expression) -> None:
    """Jobs just POSTPROCESSED: their stage-out items become pending; jobs with none finish."""
    TransferItem.update(state=Item.PENDING, updated_at=utcnow()).where(
        TransferItem.job.in_(Job.select(Job.id).where(which)),
        TransferItem.direction == "out",
        TransferItem.state == Item.AWAITING_JOB,
    ).execute()
    advance_jobs(which)


def advance_jobs(which: peewee.Expression) -> None:
    """Among the jobs matching `which`, move those whose transfers are all done:
    READY -> STAGED_IN, and POSTPROCESSED -> STAGED_OUT -> JOB_FINISHED."""
    move_jobs(which & _all_done("in"), states.READY, states.STAGED_IN,
              "all stage-in files arrived")
    if move_jobs(which & _all_done("out"), states.POSTPROCESSED, states.STAGED_OUT,
                 "all stage-out files left"):
        move_jobs(which, states.STAGED_OUT, states.JOB_FINISHED)


def _all_done(direction: str) -> peewee.Expression:
    not_done = TransferItem.select(TransferItem.id).where(
        TransferItem.job == Job.id, TransferItem.direction == direction,
        TransferItem.state != Item.DONE)
    return ~peewee.fn.EXISTS(not_done)
