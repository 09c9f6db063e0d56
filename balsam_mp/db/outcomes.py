"""The poller's side of the database: what a task's result does to its items and jobs.

Each function is one BEGIN IMMEDIATE transaction: the task, its items and their jobs
change together or not at all.
"""

from __future__ import annotations

import datetime as dt

from balsam_mp import itemmoves
from balsam_mp.db.bulk import insert_rows, run, states_in
from balsam_mp.db.failing import TASK_WIDE_CODES, fail_items, split_batch
from balsam_mp.db.jobs import JobsHeld, advance_jobs
from balsam_mp.db.models import LogEvent, TransferItem, TransferTask, iso, utcnow
from balsam_mp.db.results import Failure, Finished, Progress, describe
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Item, Task


def _db():
    return TransferTask._meta.database


def _task_fields(progress: Progress, now: dt.datetime) -> dict:
    return {TransferTask.remote_status: progress.status,
            TransferTask.nice_status: progress.nice_status,
            TransferTask.files_transferred: progress.files_transferred,
            TransferTask.bytes_transferred: progress.bytes_transferred,
            TransferTask.bytes_per_second: progress.bytes_per_second,
            TransferTask.updated_at: now}


def record_progress(task_id: int, progress: Progress) -> str | None:
    """An unfinished task: counters, and ACTIVE <-> INACTIVE for it and its items.

    Nothing is written when nothing changed: the row keeps its age, which tells the poller
    to back off. Returns the new local state when it changed (so the caller can report it)."""
    now = utcnow()
    new_state = Task.INACTIVE if progress.status == "INACTIVE" else Task.ACTIVE
    old = TransferTask.get_by_id(task_id)
    reported = (old.remote_status, old.nice_status, old.files_transferred,
                old.bytes_transferred, old.bytes_per_second)
    new_fault = progress.fault is not None and (
        old.fault_since is None or old.nice_status != progress.nice_status)
    if old.state == new_state and not new_fault and reported == (
            progress.status, progress.nice_status, progress.files_transferred,
            progress.bytes_transferred, progress.bytes_per_second):
        return None
    with _db().atomic():
        fields = _task_fields(progress, now)
        fields[TransferTask.state] = new_state
        if new_fault:
            fields[TransferTask.fault_since] = now  # the fault_timeout counts from here
        elif progress.fault is None:
            fields[TransferTask.fault_since] = None
        if old.started_at is None and progress.nice_status != "Queued":
            fields[TransferTask.started_at] = now  # it has a slot at the service
        if new_state == Task.INACTIVE and old.state != Task.INACTIVE:
            fields[TransferTask.inactive_since] = now
        elif new_state == Task.ACTIVE:
            fields[TransferTask.inactive_since] = None
        changed = TransferTask.update(fields).where(TransferTask.id == task_id,
                                                    TransferTask.state == old.state).execute()
        if changed and old.state != new_state:
            item_from = Item.ACTIVE if new_state == Task.INACTIVE else Item.INACTIVE
            item_to = Item.INACTIVE if new_state == Task.INACTIVE else Item.ACTIVE
            TransferItem.update(state=item_to, updated_at=now).where(
                TransferItem.transfer_task == task_id, TransferItem.state == item_from).execute()
            return new_state
    return None


_CLOSE_TASK = """
    UPDATE transfer_task SET state = :final, remote_status = :status, nice_status = :nice,
        files_transferred = :files, bytes_transferred = :bytes, bytes_per_second = :rate,
        fatal_error = :fatal, owner = NULL, lease_expires = NULL, updated_at = :now
    WHERE id = :task AND state {task_from}
    RETURNING cancel_requested"""
_ITEMS_DONE = """
    UPDATE transfer_item SET state = :done, error = NULL, updated_at = :now
    WHERE transfer_task_id = :task AND state {done_from}
    RETURNING job_id, direction"""
# a stage-out whose job ran again while it was in flight carries the older result: it
# goes out again, whatever its task did (a fresh item: no attempt spent)
_RESEND = """
    UPDATE transfer_item SET state = :pending, transfer_task_id = NULL, task_id = NULL,
        resend = :no, attempts = 0, not_before = NULL, error = NULL, batch_key = NULL,
        updated_at = :now
    WHERE transfer_task_id = :task AND resend = :yes AND state {pending_from}
    RETURNING id, job_id"""
CANCELLED = "cancelled"


def finish_task(task_id: int, progress: Progress, failures: list[Failure],
                policy: TransferSettings, actor: str = itemmoves.POLLER,
                skip_locked: bool = False) -> Finished:
    """A finished task: its items become done or failed, their jobs advance or fail.

    A batch that failed as a whole, not for a task-wide reason, is split in halves
    instead: each half goes back to pending as its own batch (see `split_batch`). A task
    a user asked to cancel that failed, however (its runner killed, the service's
    cancel), fails its items for good as "cancelled"; one that succeeded keeps its files.
    skip_locked (the poller): jobs another session holds are not waited for. Those
    moving on are Finished.skipped; if failing an item needs one, nothing is written
    (Finished.deferred) and the next poll records the end."""
    try:
        return _finish_task(task_id, progress, failures, policy, actor, skip_locked)
    except JobsHeld:
        return Finished(deferred=True)


def _finish_task(task_id: int, progress: Progress, failures: list[Failure],
                 policy: TransferSettings, actor: str, skip_locked: bool) -> Finished:
    now = utcnow()
    final = Task.SUCCEEDED if progress.status == "SUCCEEDED" else Task.FAILED
    task_from, task_params = states_in("task_from", itemmoves.sources("task", actor, final))
    done_from, done_params = states_in("done_from", itemmoves.sources("item", actor, Item.DONE))
    params = {"task": task_id, "final": final, "status": progress.status,
              "nice": progress.nice_status, "files": progress.files_transferred,
              "bytes": progress.bytes_transferred, "rate": progress.bytes_per_second,
              "fatal": describe(progress), "now": iso(now), "done": Item.DONE,
              **task_params, **done_params}
    with _db().atomic():
        closed = run(_CLOSE_TASK.format(task_from=task_from), params).fetchall()
        if not closed:
            return Finished()  # another poller got here first: nothing to do twice
        resent = resend_stale(task_id, now, actor)
        solo: set[int] = set()
        if final == Task.FAILED:
            code = progress.fatal_code or "FAILED"
            reason = progress.fatal_error or code  # fail_items puts the code in front
            if closed[0][0] is not None:  # the user's cancel, whatever ended it
                code, reason = "CANCELED_BY_USER", CANCELLED
            rows = list(TransferItem.select(TransferItem.id, TransferItem.split_round).where(
                TransferItem.transfer_task == task_id,
                TransferItem.state.in_(Item.IN_FLIGHT)).order_by(TransferItem.id).tuples())
            if len(rows) > 1 and code not in TASK_WIDE_CODES:
                return split_batch(task_id, rows, f"{code}: {reason}", now, actor,
                                   wait=not skip_locked)
            if len(rows) == 1 and rows[0][1] and code not in TASK_WIDE_CODES:
                # the culprit, alone after its batch was split: it stays alone
                reason += f" (isolated after {rows[0][1]} split round(s))"
                solo.add(rows[0][0])
            failures = [Failure(item_id, code, reason) for item_id, _ in rows]
        # detaches them: the update below skips them
        fail_items(failures, policy, now, solo, actor, wait=not skip_locked)
        done = run(_ITEMS_DONE.format(done_from=done_from), params).fetchall()
        skipped: list[int] | None = [] if skip_locked else None
        if done:
            advance_jobs(list(dict.fromkeys(job_id for job_id, _ in done)), done[0][1],
                         skipped)
    return Finished(len(done), len(failures), skipped=tuple(skipped or ()),
                    direction=done[0][1] if done else "in", resent=resent)


def resend_stale(task_id: int, now: dt.datetime, actor: str) -> int:
    """Items of an ending task that carry an older run's result go out again (pending).
    Runs inside the caller's transaction; returns how many."""
    pending_from, params = states_in("from", itemmoves.sources("item", actor, Item.PENDING))
    rows = run(_RESEND.format(pending_from=pending_from), {
        **params, "task": task_id, "pending": Item.PENDING, "now": iso(now), "yes": True,
        "no": False}).fetchall()
    insert_rows(LogEvent, [
        {"job": job_id, "transfer_item": item_id, "to_state": Item.PENDING, "timestamp": now,
         "message": "its job ran again while it was in flight: the new result goes out"}
        for item_id, job_id in rows])
    return len(rows)


