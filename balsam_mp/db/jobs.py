"""Job state changes: each one a compare-and-set that writes a log_event row.

Callers run these inside a writing transaction (`db.atomic()`, which is BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import peewee

from balsam_mp import states
from balsam_mp.db.models import Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import StateConflict
from balsam_mp.states import Item


def set_job_state(
    job_id: int, from_state: str, to_state: str, message: str = "",
    state_data: dict[str, Any] | None = None,
) -> None:
    """Move one job from `from_state` to `to_state`, or raise StateConflict."""
    moved = move_jobs([job_id], from_state, to_state, message, state_data)
    if not moved:
        raise StateConflict(f"job {job_id}: expected state {from_state}, cannot move to {to_state}")
    if to_state == states.POSTPROCESSED:
        release_stage_out(moved)


def move_jobs(
    job_ids: Iterable[int], from_state: str, to_state: str, message: str = "",
    state_data: dict[str, Any] | None = None,
) -> list[int]:
    """Compare-and-set many jobs at once; returns the ids that did move."""
    job_ids = list(job_ids)
    if not job_ids:
        return []
    now = utcnow()
    moved: list[int] = []
    for chunk in _chunks(job_ids):
        candidates = [
            j.id for j in Job.select(Job.id).where(Job.id.in_(chunk), Job.state == from_state)
        ]
        if not candidates:
            continue
        update: dict[Any, Any] = {Job.state: to_state, Job.updated_at: now}
        if state_data is not None:
            update[Job.state_data] = state_data
        count = (
            Job.update(update)
            .where(Job.id.in_(candidates), Job.state == from_state)
            .execute()
        )
        if count != len(candidates):  # impossible inside BEGIN IMMEDIATE; fail loudly
            raise StateConflict(f"jobs changed under a write lock ({count}/{len(candidates)})")
        moved.extend(candidates)
    LogEvent.insert_many(
        [(jid, from_state, to_state, message, now) for jid in moved],
        fields=[LogEvent.job, LogEvent.from_state, LogEvent.to_state, LogEvent.message,
                LogEvent.timestamp],
    ).execute()
    return moved


def release_stage_out(job_ids: list[int]) -> None:
    """Jobs just POSTPROCESSED: their stage-out items become pending; jobs with none finish."""
    now = utcnow()
    for chunk in _chunks(job_ids):
        TransferItem.update(state=Item.PENDING, updated_at=now).where(
            TransferItem.job.in_(chunk),
            TransferItem.direction == "out",
            TransferItem.state == Item.AWAITING_JOB,
        ).execute()
    advance_jobs(job_ids)


def advance_jobs(job_ids: Iterable[int]) -> None:
    """Move jobs whose transfers are all done: READY -> STAGED_IN, and
    POSTPROCESSED -> STAGED_OUT -> JOB_FINISHED."""
    job_ids = list(set(job_ids))
    staged_in = _jobs_with_all_done(job_ids, states.READY, "in")
    move_jobs(staged_in, states.READY, states.STAGED_IN, "all stage-in files arrived")
    staged_out = _jobs_with_all_done(job_ids, states.POSTPROCESSED, "out")
    moved = move_jobs(staged_out, states.POSTPROCESSED, states.STAGED_OUT,
                      "all stage-out files left")
    move_jobs(moved, states.STAGED_OUT, states.JOB_FINISHED)


def _jobs_with_all_done(job_ids: list[int], job_state: str, direction: str) -> list[int]:
    ready: list[int] = []
    for chunk in _chunks(job_ids):
        not_done = (
            TransferItem.select(TransferItem.id)
            .where(
                TransferItem.job == Job.id,
                TransferItem.direction == direction,
                TransferItem.state != Item.DONE,
            )
        )
        query = Job.select(Job.id).where(
            Job.id.in_(chunk), Job.state == job_state, ~peewee.fn.EXISTS(not_done)
        )
        ready.extend(j.id for j in query)
    return ready


def _chunks(ids: list[int], size: int = 500) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
