"""The poller's side of the database: what a task's result does to its items and jobs.

Each function is one BEGIN IMMEDIATE transaction: the task, its items and their jobs
change together or not at all.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from dataclasses import dataclass

from balsam_mp import itemmoves, states, transitions
from balsam_mp.db.bulk import insert_rows, run, states_in
from balsam_mp.db.jobs import advance_jobs, hold_stage_out, lock_jobs
from balsam_mp.db.models import Job, LogEvent, TransferItem, TransferTask, iso, utcnow
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Item, Task

# Codes a retry cannot fix: the service already retried, or the answer will not change.
# An endpoint administrator's cancel (CANCELED_BY_ADMIN) is a person's decision, made for
# the whole task: its items fail at once, with the administrator's message, and are not
# sent again behind the administrator's back (`balsam transfer retry` sends them).
PERMANENT_CODES = frozenset({"FILE_NOT_FOUND", "PERMISSION_DENIED", "BAD_REQUEST",
                             "CANCELED_BY_USER", "CANCELED_BY_ADMIN", "NAME_TOO_LONG",
                             "INVALID_PATH", "NOT_A_DIRECTORY", "IS_A_DIRECTORY",
                             "FILE_EXISTS"})
# Whole-task failures that no one file causes (a cancel, time, the endpoint, the disk):
# their items are retried as they were. Any other whole-task failure of a batch splits it.
TASK_WIDE_CODES = frozenset({"CANCELED", "CANCELED_BY_USER", "CANCELED_BY_ADMIN", "EXPIRED",
                             "LOST", "INACTIVE_TIMEOUT", "ENDPOINT_ERROR", "QUOTA_EXCEEDED"})


def safe_text(text: str | None) -> str | None:
    """Text fit for the database: a file name that is not UTF-8 (decoded by Python with
    lone surrogates, which SQLite refuses) shows its raw bytes escaped, e.g. 'bad\\xff'."""
    if text is None or text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the name really has
    except UnicodeEncodeError:  # a lone surrogate from elsewhere (e.g. JSON '\\ud800')
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Progress:
    """What the poller learned about one task (the backend's TaskStatus, trimmed).
    Its texts, like a Failure's, are made safe for the database on the way in."""

    status: str
    nice_status: str | None
    files_transferred: int
    bytes_transferred: int
    bytes_per_second: float
    fatal_code: str | None = None
    fatal_error: str | None = None
    fault: str | None = None  # the fault an ACTIVE task keeps retrying, if any

    def __post_init__(self) -> None:
        for name in ("nice_status", "fatal_code", "fatal_error", "fault"):
            object.__setattr__(self, name, safe_text(getattr(self, name)))


@dataclass(frozen=True)
class Failure:
    item_id: int
    code: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", safe_text(self.code))
        object.__setattr__(self, "reason", safe_text(self.reason))


@dataclass(frozen=True)
class Finished:
    """What closing a task did to its items."""

    done: int = 0
    failed: int = 0
    halves: tuple[int, ...] = ()  # sizes of the halves a failed batch was split into
    split_round: int = 0  # the round those halves belong to (1 = the first split)
    skipped: tuple[int, ...] = ()  # jobs to advance later: another session held them
    direction: str = "in"


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
    skip_locked: jobs another session holds are not waited for: Finished.skipped."""
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
        resend_stale(task_id, now, actor)
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
                return split_batch(task_id, rows, f"{code}: {reason}", now, actor)
            if len(rows) == 1 and rows[0][1] and code not in TASK_WIDE_CODES:
                # the culprit, alone after its batch was split: it stays alone
                reason += f" (isolated after {rows[0][1]} split round(s))"
                solo.add(rows[0][0])
            failures = [Failure(item_id, code, reason) for item_id, _ in rows]
        fail_items(failures, policy, now, solo, actor)  # detaches them: the update below skips them
        done = run(_ITEMS_DONE.format(done_from=done_from), params).fetchall()
        skipped: list[int] | None = [] if skip_locked else None
        if done:
            advance_jobs(list(dict.fromkeys(job_id for job_id, _ in done)), done[0][1],
                         skipped)
    return Finished(len(done), len(failures), skipped=tuple(skipped or ()),
                    direction=done[0][1] if done else "in")


def resend_stale(task_id: int, now: dt.datetime, actor: str) -> None:
    """Items of an ending task that carry an older run's result go out again (pending).
    Runs inside the caller's transaction."""
    pending_from, params = states_in("from", itemmoves.sources("item", actor, Item.PENDING))
    rows = run(_RESEND.format(pending_from=pending_from), {
        **params, "task": task_id, "pending": Item.PENDING, "now": iso(now), "yes": True,
        "no": False}).fetchall()
    insert_rows(LogEvent, [
        {"job": job_id, "transfer_item": item_id, "to_state": Item.PENDING, "timestamp": now,
         "message": "its job ran again while it was in flight: the new result goes out"}
        for item_id, job_id in rows])


def split_batch(task_id: int, rows: list[tuple[int, int]], reason: str,
                now: dt.datetime, actor: str = itemmoves.POLLER) -> Finished:
    """Each half of a failed batch goes back to pending as a batch of its own (its items
    share a batch_key, which the claim keeps together and apart from other items), at
    once and without spending a retry: within log2(batch) rounds the good items are
    through and the culprit stands alone. Each half gets a fresh submission id from the
    normal claim. Runs inside the caller's transaction."""
    middle = (len(rows) + 1) // 2
    split_round = max(r for _, r in rows) + 1
    halves = (rows[:middle], rows[middle:])
    message = f"split round {split_round}: its batch failed as a whole ({reason})"
    for half, name in zip(halves, "ab", strict=True):
        ids = [item_id for item_id, _ in half]
        TransferItem.update(state=Item.PENDING, transfer_task=None, task_id=None,
                            batch_key=f"{task_id}{name}", split_round=split_round,
                            not_before=None, error=message, updated_at=now).where(
            TransferItem.id.in_(ids),
            TransferItem.state.in_(itemmoves.sources("item", actor, Item.PENDING))).execute()
        insert_rows(LogEvent, [
            {"job": job_id, "transfer_item": item_id, "to_state": Item.PENDING,
             "message": message, "timestamp": now} for item_id, job_id in
            TransferItem.select(TransferItem.id, TransferItem.job).where(
                TransferItem.id.in_(ids)).tuples()])
    return Finished(halves=(len(halves[0]), len(halves[1])), split_round=split_round)


def fail_items(failures: Iterable[Failure], policy: TransferSettings,
               now: dt.datetime | None = None, solo: set[int] = frozenset(),
               actor: str = itemmoves.POLLER) -> None:
    """Retry each failed item with backoff, or, when retries are spent or pointless,
    mark it `error` and fail its job with the reason. Items in `solo` (a batch's
    culprit) are retried, now or by `transfer retry`, in a batch of their own.
    Runs inside the caller's transaction."""
    now = now or utcnow()
    failures = list(failures)
    if not failures:
        return
    items = {i.id: i for i in TransferItem.select().where(
        TransferItem.id.in_([f.item_id for f in failures]))}
    failed_jobs: dict[int, list[dict]] = {}
    for failure in failures:
        item = items[failure.item_id]
        reason = f"{failure.code}: {failure.reason}" if failure.reason != failure.code \
            else failure.code
        retry = failure.code not in PERMANENT_CODES and item.attempts < policy.max_retries
        update = {"error": reason, "attempts": item.attempts + 1, "updated_at": now,
                  "transfer_task": None, "task_id": None,
                  "batch_key": f"solo{item.id}" if item.id in solo else None}
        if retry:
            delay = min(policy.retry_backoff_max, policy.retry_backoff * 2 ** item.attempts)
            update.update(state=Item.PENDING,
                          not_before=now + dt.timedelta(seconds=delay * random.uniform(0.5, 1.5)))
        else:
            update.update(state=Item.ERROR)
        moved = TransferItem.update(update).where(
            TransferItem.id == item.id,
            TransferItem.state.in_(itemmoves.sources("item", actor, update["state"]))).execute()
        if not moved:
            continue  # another actor moved it meanwhile (e.g. a cancel ended it)
        if not retry:
            failed_jobs.setdefault(item.job_id, []).append(
                {"item": item.id, "slot": item.slot, "direction": item.direction,
                 "remote": f"{item.location_alias}:{item.remote_path}",
                 "local_path": item.local_path, "reason": reason})
        LogEvent.create(job=item.job_id, transfer_item=item.id, from_state=item.state,
                        to_state=update["state"], message=reason, timestamp=now)
    for job_id, files in sorted(failed_jobs.items()):  # fail_job locks each: in id order
        fail_job(job_id, files, now)


def fail_job(job_id: int, files: list[dict], now: dt.datetime) -> None:
    """FAILED, naming every failed file and why; remembers the state it left."""
    lock_jobs([job_id])  # read, merge, write back: no other writer in between
    job = Job.get_by_id(job_id)
    data = dict(job.state_data or {})
    data["failed_files"] = data.get("failed_files", []) + files
    if job.state == states.FAILED:
        Job.update(state_data=data, updated_at=now).where(Job.id == job_id).execute()
        return
    if not transitions.allowed(job.state, states.FAILED, transitions.SITE):
        return  # JOB_FINISHED is final: a late failure never moves a job backwards
    data["failed_from"] = job.state
    changed = Job.update(state=states.FAILED, state_data=data, updated_at=now).where(
        Job.id == job_id, Job.state == job.state).execute()
    if changed:
        hold_stage_out([job_id])
        LogEvent.create(job=job_id, from_state=job.state, to_state=states.FAILED,
                        message="; ".join(f"{f['remote']}: {f['reason']}" for f in files),
                        timestamp=now)


def describe(progress: Progress) -> str | None:
    if progress.fatal_code is None:
        return None
    return f"{progress.fatal_code}: {progress.fatal_error or ''}".rstrip(": ")
