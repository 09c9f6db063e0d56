"""Job state changes: each one a compare-and-set that writes a log_event row.

Each function moves a whole batch of jobs in a few statements (ids travel as one JSON
parameter, read by json_each, or jsonb_array_elements_text on PostgreSQL). Callers run
these inside a writing transaction (`db.atomic()`, which is BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import json

from balsam_mp import states
from balsam_mp.db.bulk import dialect, run, value_list
from balsam_mp.db.models import TransferItem, iso, utcnow
from balsam_mp.errors import StateConflict
from balsam_mp.states import Item


def set_job_state(job_id: int, from_state: str, to_state: str, message: str = "") -> None:
    """Move one job from `from_state` to `to_state`, or raise StateConflict."""
    if not move_jobs([job_id], from_state, to_state, message):
        raise StateConflict(f"job {job_id}: expected state {from_state}, cannot move to {to_state}")
    if to_state == states.POSTPROCESSED:
        release_stage_out([job_id])


# The compare-and-set, and its log rows, as two statements whatever the number of jobs.
_MOVE = """
    UPDATE job SET state = :to_state, updated_at = :now
    WHERE id IN ({ids}) AND state = :from_state {condition}
    RETURNING id"""
_ALL_ITEMS_DONE = """
    AND NOT EXISTS (SELECT 1 FROM transfer_item AS item WHERE item.job_id = job.id
                    AND item.direction = :direction AND item.state != :done)"""
_LOG_MOVES = """
    INSERT INTO log_event (job_id, from_state, to_state, message, timestamp)
    SELECT value, :from_state, :to_state, :message, :now FROM ({ids}) AS moved"""


def move_jobs(job_ids: list[int], from_state: str, to_state: str, message: str = "",
              *, all_done: str | None = None) -> list[int]:
    """Compare-and-set: those of `job_ids` that are in `from_state` move; returns them.

    all_done: a direction; only jobs whose items in that direction are all done move."""
    if not job_ids:
        return []
    params = {"ids": json.dumps(job_ids), "from_state": from_state, "to_state": to_state,
              "now": iso(utcnow()), "message": message, "direction": all_done,
              "done": Item.DONE}
    condition = _ALL_ITEMS_DONE if all_done else ""
    ids = dialect().ID_LIST.format(param=":ids")
    if all_done and dialect().LOCK_JOBS:
        run(dialect().LOCK_JOBS.format(ids=ids), params)
    moved = [job_id for (job_id,) in
             run(_MOVE.format(condition=condition, ids=ids), params).fetchall()]
    if moved:
        run(_LOG_MOVES.format(ids=ids), {**params, "ids": json.dumps(moved)})
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
    if direction == "in":
        move_jobs(job_ids, states.READY, states.STAGED_IN, "all stage-in files arrived",
                  all_done="in")
    else:
        staged_out = move_jobs(job_ids, states.POSTPROCESSED, states.STAGED_OUT,
                               "all stage-out files left", all_done="out")
        move_jobs(staged_out, states.STAGED_OUT, states.JOB_FINISHED)
