"""Job state changes: each one a compare-and-set that writes a log_event row.

Each function moves a whole batch of jobs in a few statements (ids travel as one JSON
parameter). Callers run these inside a writing transaction (`db.atomic()`, which is
BEGIN IMMEDIATE).
"""

from __future__ import annotations

from balsam_mp import states
from balsam_mp.db.bulk import insert_rows, value_list
from balsam_mp.db.models import Job, LogEvent, TransferItem, iso, utcnow
from balsam_mp.errors import StateConflict
from balsam_mp.states import Item


def set_job_state(job_id: int, from_state: str, to_state: str, message: str = "") -> None:
    """Move one job from `from_state` to `to_state`, or raise StateConflict."""
    if not move_jobs([job_id], from_state, to_state, message):
        raise StateConflict(f"job {job_id}: expected state {from_state}, cannot move to {to_state}")
    if to_state == states.POSTPROCESSED:
        release_stage_out([job_id])


def move_jobs(job_ids: list[int], from_state: str, to_state: str,
              message: str = "") -> list[int]:
    """Compare-and-set: those of `job_ids` that are in `from_state` move; returns them."""
    if not job_ids:
        return []
    now = utcnow()
    moved = [job_id for (job_id,) in Job.update(state=to_state, updated_at=now).where(
        Job.id.in_(value_list(job_ids)), Job.state == from_state).returning(Job.id).tuples()]
    stamp = iso(now)  # formatted once for the whole batch
    insert_rows(LogEvent, [{"job": job_id, "from_state": from_state, "to_state": to_state,
                            "message": message, "timestamp": stamp} for job_id in moved])
    return moved


def release_stage_out(job_ids: list[int]) -> None:
    """Jobs just POSTPROCESSED: their stage-out items become pending; jobs with none finish."""
    TransferItem.update(state=Item.PENDING, updated_at=utcnow()).where(
        TransferItem.job.in_(value_list(job_ids)),
        TransferItem.direction == "out",
        TransferItem.state == Item.AWAITING_JOB,
    ).execute()
    advance_jobs(job_ids, "out")


def advance_jobs(job_ids: list[int], direction: str) -> None:
    """Of `job_ids`, move those whose `direction` transfers are all done:
    READY -> STAGED_IN (in), or POSTPROCESSED -> STAGED_OUT -> JOB_FINISHED (out)."""
    done = _all_done(job_ids, direction)
    if direction == "in":
        move_jobs(done, states.READY, states.STAGED_IN, "all stage-in files arrived")
    else:
        staged_out = move_jobs(done, states.POSTPROCESSED, states.STAGED_OUT,
                               "all stage-out files left")
        move_jobs(staged_out, states.STAGED_OUT, states.JOB_FINISHED)


def _all_done(job_ids: list[int], direction: str) -> list[int]:
    if not job_ids:
        return []
    waiting = {job_id for (job_id,) in TransferItem.select(TransferItem.job).where(
        TransferItem.job.in_(value_list(job_ids)), TransferItem.direction == direction,
        TransferItem.state != Item.DONE).distinct().tuples()}
    return [job_id for job_id in job_ids if job_id not in waiting]
