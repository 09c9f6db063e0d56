"""Job state changes: each one a compare-and-set that writes a log_event row.

Each function moves a whole batch of jobs in a few statements (ids travel as one JSON
parameter, read by json_each, or jsonb_array_elements_text on PostgreSQL). Callers run
these inside a writing transaction (`db.atomic()`, which is BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from balsam_mp import itemmoves, states, transitions
from balsam_mp.db.bulk import dialect, insert_rows, run, value_list
from balsam_mp.db.models import Job, LogEvent, TransferItem, iso, utcnow
from balsam_mp.errors import NotFound, StateConflict, ValidationError
from balsam_mp.states import Item


def set_job_state(job_id: int, from_state: str, to_state: str, message: str = "",
                  data: dict[str, Any] | None = None) -> None:
    """A user's move of one job, checked against the transition table: a compare-and-set
    from `from_state` with its log row. Entering POSTPROCESSED releases the stage-out
    items; entering READY picks up stage-in items that are already done.

    Raises ValidationError (a move the table refuses, or site work not done yet),
    StateConflict (the job is not in `from_state`), NotFound (no such job)."""
    set_jobs_state([job_id], from_state, to_state, message, data)


def set_jobs_state(job_ids: list[int], from_state: str, to_state: str,
                   message: str = "", data: dict[str, Any] | None = None) -> None:
    """set_job_state for jobs all read in `from_state`, as one compare-and-set. Raises on
    the first job refused (by id), naming it: the caller's transaction then rolls back
    the others. `data`: the state_data given with the change, kept on its events."""
    if not job_ids:
        return
    transitions.check(job_ids[0], from_state, to_state, transitions.USER)
    needs = transitions.NEEDS_DONE.get(to_state)
    guard = "" if to_state == states.FAILED else _NO_FAILED_ITEMS
    moved = move_jobs(job_ids, from_state, to_state, message or "set by the user",
                      all_done=needs, extra=guard, actor=transitions.USER, data=data)
    if len(moved) < len(job_ids):
        _explain_refusal(min(set(job_ids) - set(moved)), from_state, to_state, needs)
    if to_state == states.POSTPROCESSED:
        release_stage_out(job_ids)
    elif to_state == states.FAILED:
        hold_unsent(job_ids)
    elif to_state == states.READY:
        release_stage_in(job_ids)
        advance_jobs(job_ids, "in")


def _explain_refusal(job_id: int, from_state: str, to_state: str, needs: str | None) -> None:
    found = Job.select(Job.state).where(Job.id == job_id).scalar()
    if found is None:
        raise NotFound(f"job {job_id} does not exist")
    if found != from_state:
        raise StateConflict(f"job {job_id}: expected state {from_state}, found {found} "
                            f"(it moved meanwhile; cannot move it to {to_state})")
    items = list(TransferItem.select(TransferItem.id, TransferItem.direction,
                                     TransferItem.state).where(TransferItem.job == job_id)
                 .tuples())
    failed = [str(i) for i, _, state in items if state == Item.ERROR]
    if failed and to_state != states.FAILED:
        raise ValidationError(
            f"job {job_id}: transfer item(s) {', '.join(failed)} failed; retry them with "
            f"`balsam transfer retry {' '.join(failed)}` (or move the job to FAILED)")
    if needs is None:
        raise StateConflict(f"job {job_id}: could not move from {from_state} to {to_state}")
    waiting = sorted({state for _, direction, state in items
                      if direction == needs and state != Item.DONE})
    raise ValidationError(
        f"job {job_id}: cannot enter {to_state} while its stage-{needs} items are not done "
        f"({', '.join(waiting)}); the site moves it when they are")


# The compare-and-set, and its log rows, as two statements whatever the number of jobs.
_MOVE = """
    UPDATE job SET state = :to_state, updated_at = :now
    WHERE id IN ({ids}) AND state = :from_state {condition}
    RETURNING id"""
_ALL_ITEMS_DONE = """
    AND NOT EXISTS (SELECT 1 FROM transfer_item AS item WHERE item.job_id = job.id
                    AND item.direction = :direction AND item.state != :done)"""
_NO_FAILED_ITEMS = """
    AND NOT EXISTS (SELECT 1 FROM transfer_item AS item WHERE item.job_id = job.id
                    AND item.state = 'error')"""
_LOG_MOVES = """
    INSERT INTO log_event (job_id, from_state, to_state, message, data, timestamp)
    SELECT value, :from_state, :to_state, :message, :data, :now FROM ({ids}) AS moved"""


def move_jobs(job_ids: list[int], from_state: str, to_state: str, message: str = "",
              *, all_done: str | None = None, extra: str = "",
              actor: str = transitions.SITE, skipped: list[int] | None = None,
              data: dict[str, Any] | None = None) -> list[int]:
    """Compare-and-set: those of `job_ids` that are in `from_state` move; returns them.

    all_done: a direction; only jobs whose items in that direction are all done move.
    extra: one more SQL condition on the job row. skipped: a list to which the jobs
    another session holds locked are added, instead of waiting for them (the site's own
    moves: a pass moves what it can, and tries the rest again later). data: the
    events' data (a user's state_data)."""
    if not job_ids:
        return []
    if not transitions.allowed(from_state, to_state, actor):
        raise ValidationError(f"{actor} may not move jobs from {from_state} to {to_state}")
    params = {"ids": json.dumps(job_ids), "from_state": from_state, "to_state": to_state,
              "now": iso(utcnow()), "message": message, "direction": all_done,
              "done": Item.DONE,
              "data": None if data is None else json.dumps(data, sort_keys=True)}
    condition = (_ALL_ITEMS_DONE if all_done else "") + extra
    ids = dialect().ID_LIST.format(param=":ids")
    if all_done and skipped is not None and dialect().LOCK_FREE_JOBS:
        locked = {job_id for (job_id,) in run(dialect().LOCK_FREE_JOBS.format(ids=ids), {
            "ids": json.dumps(sorted(job_ids))}).fetchall()}
        skipped.extend(j for j in job_ids if j not in locked)
        job_ids = [j for j in job_ids if j in locked]
        if not job_ids:
            return []
        params["ids"] = json.dumps(job_ids)
    else:  # in id order, as every writer: an UPDATE alone takes them in the plan's order
        lock_jobs(job_ids)
    moved = [job_id for (job_id,) in
             run(_MOVE.format(condition=condition, ids=ids), params).fetchall()]
    if moved:
        run(_LOG_MOVES.format(ids=ids), {**params, "ids": json.dumps(moved)})
    return moved


def release_stage_out(job_ids: list[int], new_run: bool = True) -> None:
    """Jobs just POSTPROCESSED: their stage-out items become pending; jobs with none finish.

    new_run: the job ran (again), so every stage-out item sends this run's files: one
    already done goes out again, one still in flight (an earlier run's result) is sent
    again when its task ends (`resend`). Without it (a retry): only items held back."""
    now = utcnow()
    ids = value_list(job_ids)
    sources = itemmoves.sources("item", itemmoves.JOB_MOVE, Item.PENDING)
    if not new_run:
        sources = tuple(s for s in sources if s == Item.AWAITING_JOB)
    again = [] if not new_run else list(TransferItem.select(
        TransferItem.id, TransferItem.job).where(
        TransferItem.job.in_(ids), TransferItem.direction == "out",
        TransferItem.state == Item.DONE).tuples())
    TransferItem.update(state=Item.PENDING, attempts=0, not_before=None, error=None,
                        updated_at=now).where(
        TransferItem.job.in_(ids), TransferItem.direction == "out",
        TransferItem.state.in_(sources)).execute()
    if new_run:
        TransferItem.update(resend=True, updated_at=now).where(
            TransferItem.job.in_(ids), TransferItem.direction == "out",
            TransferItem.state.in_(Item.IN_FLIGHT)).execute()
    insert_rows(LogEvent, [{"job": job_id, "transfer_item": item_id, "from_state": Item.DONE,
                            "to_state": Item.PENDING, "timestamp": now,
                            "message": "its job ran again: this run's result goes out"}
                           for item_id, job_id in again])
    advance_jobs(job_ids, "out")


def hold_unsent(job_ids: list[int]) -> None:
    """Jobs just FAILED send nothing more. Their stage-in items not yet sent wait for
    the job to be READY again (a retry, or a restart whose stage-in was not done).
    Their stage-out items not yet sent wait for the job's next POSTPROCESSED (what a
    failed run left is not its result). Items in flight finish, as what they are: a
    stage-out in flight is a result sent before the failure (not one to send again)."""
    now, ids = utcnow(), value_list(job_ids)
    TransferItem.update(state=Item.AWAITING_JOB, updated_at=now).where(
        TransferItem.job.in_(ids),
        TransferItem.state.in_(itemmoves.sources("item", itemmoves.JOB_MOVE,
                                                 Item.AWAITING_JOB))).execute()
    TransferItem.update(resend=False, updated_at=now).where(
        TransferItem.job.in_(ids), TransferItem.direction == "out",
        TransferItem.resend == True).execute()  # noqa: E712 (SQL, not Python)


def release_stage_in(job_ids: list[int]) -> None:
    """Jobs READY again: their stage-in items held while they were FAILED go out, with
    their retries afresh (a restart stages in again, as `transfer retry` does)."""
    TransferItem.update(state=Item.PENDING, attempts=0, not_before=None, error=None,
                        updated_at=utcnow()).where(
        TransferItem.job.in_(value_list(job_ids)), TransferItem.direction == "in",
        TransferItem.state == Item.AWAITING_JOB).execute()


def advance_jobs(job_ids: list[int], direction: str,
                 skipped: list[int] | None = None) -> None:
    """Of `job_ids`, move those whose `direction` transfers are all done:
    READY -> STAGED_IN (in), or POSTPROCESSED -> STAGED_OUT -> JOB_FINISHED (out).
    skipped: see move_jobs (the site's passes; a user's move waits its turn)."""
    if direction == "in":
        move_jobs(job_ids, states.READY, states.STAGED_IN, "all stage-in files arrived",
                  all_done="in", skipped=skipped)
    else:
        staged_out = move_jobs(job_ids, states.POSTPROCESSED, states.STAGED_OUT,
                               "all stage-out files left", all_done="out", skipped=skipped)
        move_jobs(staged_out, states.STAGED_OUT, states.JOB_FINISHED)


_DUE_TO_ADVANCE = """
    SELECT id FROM job WHERE state = :state AND NOT EXISTS (
        SELECT 1 FROM transfer_item AS item WHERE item.job_id = job.id
        AND item.direction = :direction AND item.state != :done)"""


def advance_stragglers(direction: str, job_ids: list[int] | None = None) -> list[int]:
    """Advance jobs a pass left behind (locked by another session then): `job_ids`, or,
    with None, every job whose items of `direction` are all done and that still waits
    (the poller's first pass). Runs its own transaction; returns those skipped again."""
    skipped: list[int] = []
    with Job._meta.database.atomic():
        if job_ids is None:
            state = states.READY if direction == "in" else states.POSTPROCESSED
            job_ids = [job_id for (job_id,) in run(_DUE_TO_ADVANCE, {
                "state": state, "direction": direction, "done": Item.DONE}).fetchall()]
        advance_jobs(job_ids, direction, skipped)
    return skipped


def locked(query: Any) -> Any:
    """A select of jobs that also locks them, in id order (PostgreSQL): the user's bulk
    writes read their jobs so, then two writers of the same jobs take turns, whatever
    their filters (no deadlock), and the second reads what the first wrote (no
    compare-and-set lost to the other). SQLite's write lock already covers it."""
    return query.order_by(Job.id).for_update(of=Job) if dialect().LOCK_JOBS else query


class JobsHeld(Exception):
    """Jobs another database session holds: a worker's pass leaves this work to its next
    pass (its transaction rolled back) rather than wait on a stranger's lock."""


def lock_jobs(job_ids: list[int], wait: bool = True) -> None:
    """Lock job rows (in id order) before reading them to write them back: on PostgreSQL
    writers run side by side, and a read-merge-write would lose the other's write. On
    SQLite the transaction's write lock already covers it. wait=False (the poller's
    pass): JobsHeld at once if another session holds one of them."""
    if not job_ids or not dialect().LOCK_JOBS:
        return
    ids = dialect().ID_LIST.format(param=":ids")
    params = {"ids": json.dumps(sorted(set(job_ids)))}
    if wait:
        run(dialect().LOCK_JOBS.format(ids=ids), params)
    elif len(run(dialect().LOCK_FREE_JOBS.format(ids=ids), params).fetchall()) < \
            len(set(job_ids)):
        raise JobsHeld("a job is held by another database session")


def write_fields(job_ids: list[int], values: dict[str, Any],
                 state_data: dict[str, Any] | None = None) -> None:
    """A user's writes of plain fields (tags, parameters). `state_data` is merged key by
    key into what is stored (None removes a key), so keys the site wrote meanwhile
    (failed_files, failed_from) survive. Runs in the caller's transaction."""
    now = utcnow()
    lock_jobs(job_ids)  # an UPDATE alone locks its rows in the plan's order: a deadlock
    if values:
        Job.update({**values, Job.updated_at: now}).where(Job.id.in_(value_list(job_ids))).execute()
    if state_data:
        for job_id, stored in Job.select(Job.id, Job.state_data).where(
                Job.id.in_(value_list(job_ids))).tuples():
            merged = {**(stored or {}), **state_data}
            merged = {k: v for k, v in merged.items() if v is not None}
            Job.update(state_data=merged, updated_at=now).where(Job.id == job_id).execute()


def delete_jobs(job_ids: list[int],
                still_matching: Callable[[list[int]], list[int]] | None = None) -> int:
    """Delete jobs with their items and log rows (foreign keys cascade). Refused when an
    item is in a transfer task in flight: the task would land files for a job that no
    longer exists. `still_matching`: the user's filter, asked again once the jobs are
    locked (on PostgreSQL a worker may have moved one between the filter's read and
    now; SQLite's write lock already rules that out). Runs in the caller's transaction;
    returns how many were deleted."""
    lock_jobs(job_ids)  # in id order, as every writer
    if dialect().LOCK_JOBS and still_matching is not None and job_ids:
        job_ids = still_matching(job_ids)
    if not job_ids:
        return 0
    if dialect().LOCK_ITEMS_OF_JOBS:  # a claim taking them now commits first, or skips them
        run(dialect().LOCK_ITEMS_OF_JOBS.format(ids=dialect().ID_LIST.format(param=":ids")),
            {"ids": json.dumps(sorted(job_ids))})
    busy = list(TransferItem.select(TransferItem.job, TransferItem.transfer_task).where(
        TransferItem.job.in_(value_list(job_ids)),
        TransferItem.state.in_(Item.IN_FLIGHT)).tuples())
    if busy:
        job_id = busy[0][0]
        tasks = sorted({str(task) for job, task in busy if job == job_id and task})
        raise ValidationError(
            f"job {job_id}: transfer item(s) in flight in task {', '.join(tasks)}; cancel it "
            f"first (`balsam transfer cancel {' '.join(tasks)}`) or wait for it to finish")
    return Job.delete().where(Job.id.in_(value_list(job_ids))).execute()
