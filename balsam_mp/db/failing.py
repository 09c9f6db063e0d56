"""Failed items: retried with backoff, split in halves, held for a job's next run, or
failed for good with their job. Each function runs inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable

from balsam_mp import itemmoves, states, transitions
from balsam_mp.db.bulk import insert_rows
from balsam_mp.db.jobs import hold_unsent, lock_jobs
from balsam_mp.db.models import Job, LogEvent, TransferItem, utcnow
from balsam_mp.db.results import Failure, Finished
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Item

# Codes a retry cannot fix: the service already retried, or the answer will not change.
# An endpoint administrator's cancel (CANCELED_BY_ADMIN) is a person's decision, made for
# the whole task: its items fail at once, with the administrator's message, and are not
# sent again behind the administrator's back (`balsam transfer retry` sends them).
PERMANENT_CODES = frozenset({"FILE_NOT_FOUND", "PERMISSION_DENIED", "BAD_REQUEST",
                             "CANCELED_BY_USER", "CANCELED_BY_ADMIN", "NAME_TOO_LONG",
                             "INVALID_PATH", "NOT_A_DIRECTORY", "IS_A_DIRECTORY",
                             "FILE_EXISTS"})
# A job in one of these states runs again (or waits to): a stage-out of it that fails
# carries an earlier run's result, and never fails the job's new run.
RUNS_AGAIN = frozenset({states.READY, states.STAGED_IN, states.PREPROCESSED, states.RUNNING,
                        states.RUN_DONE, states.RUN_ERROR, states.RUN_TIMEOUT,
                        states.RESTART_READY})
# Why an item of a FAILED job is not retried now (hold_unsent: it sends nothing new).
HELD = "its job is FAILED: retried when the job is READY or POSTPROCESSED again"
# Whole-task failures that no one file causes (a cancel, time, the endpoint, the disk):
# their items are retried as they were. Any other whole-task failure of a batch splits it.
TASK_WIDE_CODES = frozenset({"CANCELED", "CANCELED_BY_USER", "CANCELED_BY_ADMIN", "EXPIRED",
                             "LOST", "INACTIVE_TIMEOUT", "ENDPOINT_ERROR", "QUOTA_EXCEEDED"})


def split_batch(task_id: int, rows: list[tuple[int, int]], reason: str,
                now: dt.datetime, actor: str = itemmoves.POLLER, wait: bool = True) -> Finished:
    """Each half of a failed batch goes back to pending as a batch of its own (its items
    share a batch_key, which the claim keeps together and apart from other items), at
    once and without spending a retry: within log2(batch) rounds the good items are
    through and the culprit stands alone. Each half gets a fresh submission id from the
    normal claim. Runs inside the caller's transaction."""
    rows = _park_earlier_runs(rows, reason, now, actor, wait)
    if not rows:
        return Finished()
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


def _park_earlier_runs(rows: list[tuple[int, int]], reason: str, now: dt.datetime,
                       actor: str, wait: bool) -> list[tuple[int, int]]:
    """Of a failed batch's (item id, split round) rows, the stage-outs whose job runs
    again carry an earlier run's result: they wait for the job's next POSTPROCESSED
    instead of going round again; the items of a FAILED job wait for it to be READY
    (or POSTPROCESSED) again. Returns the other rows."""
    ids = [r[0] for r in rows]
    lock_jobs(sorted({job_id for (job_id,) in TransferItem.select(TransferItem.job).where(
        TransferItem.id.in_(ids)).tuples()}), wait)  # their states hold till we commit
    found = list(TransferItem.select(TransferItem.id, TransferItem.direction, Job.state)
                 .join(Job).where(TransferItem.id.in_(ids)).tuples())
    earlier = [item_id for item_id, direction, state in found
               if direction == "out" and state in RUNS_AGAIN]
    failed = [item_id for item_id, _, state in found if state == states.FAILED]
    for parked, why in ((earlier, "an earlier run's result; not retried"), (failed, HELD)):
        if parked:
            TransferItem.update(state=Item.AWAITING_JOB, transfer_task=None, task_id=None,
                                error=f"{reason} ({why})", updated_at=now).where(
                TransferItem.id.in_(parked),
                TransferItem.state.in_(itemmoves.sources("item", actor, Item.AWAITING_JOB))
            ).execute()
    return [row for row in rows if row[0] not in earlier and row[0] not in failed]


def fail_items(failures: Iterable[Failure], policy: TransferSettings,
               now: dt.datetime | None = None, solo: set[int] = frozenset(),
               actor: str = itemmoves.POLLER, wait: bool = True) -> None:
    """Retry each failed item with backoff, or, when retries are spent or pointless,
    mark it `error` and fail its job with the reason. Items in `solo` (a batch's
    culprit) are retried, now or by `transfer retry`, in a batch of their own.
    Runs inside the caller's transaction; wait: see lock_jobs."""
    now = now or utcnow()
    failures = list(failures)
    if not failures:
        return
    items = {i.id: i for i in TransferItem.select().where(
        TransferItem.id.in_([f.item_id for f in failures]))}
    lock_jobs(sorted({i.job_id for i in items.values()}), wait)  # states hold till we commit
    job_states = dict(Job.select(Job.id, Job.state).where(
        Job.id.in_(list({i.job_id for i in items.values()}))).tuples())
    failed_jobs: dict[int, list[dict]] = {}
    # one jitter for the call (a task's failures): its items come due together and go out
    # again as one batch, not split by whichever submitter pass falls between their times
    spread = random.uniform(0.5, 1.5)
    for failure in failures:
        item = items[failure.item_id]
        reason = f"{failure.code}: {failure.reason}" if failure.reason != failure.code \
            else failure.code
        retry = failure.code not in PERMANENT_CODES and item.attempts < policy.max_retries
        update = {"error": reason, "attempts": item.attempts + 1, "updated_at": now,
                  "transfer_task": None, "task_id": None,
                  "batch_key": f"solo{item.id}" if item.id in solo else None}
        earlier_run = item.direction == "out" and job_states.get(item.job_id) in RUNS_AGAIN
        if earlier_run:  # its job runs again: this run's result goes at its POSTPROCESSED
            retry = False
            update.update(state=Item.AWAITING_JOB, attempts=0,
                          error=f"{reason} (an earlier run's result; not retried)")
        elif retry and job_states.get(item.job_id) == states.FAILED:
            update.update(state=Item.AWAITING_JOB, error=f"{reason} ({HELD})")
        elif retry:
            delay = min(policy.retry_backoff_max, policy.retry_backoff * 2 ** item.attempts)
            update.update(state=Item.PENDING,
                          not_before=now + dt.timedelta(seconds=delay * spread))
        else:
            update.update(state=Item.ERROR)
        moved = TransferItem.update(update).where(
            TransferItem.id == item.id,
            TransferItem.state.in_(itemmoves.sources("item", actor, update["state"]))).execute()
        if not moved:
            continue  # another actor moved it meanwhile (e.g. a cancel ended it)
        if update["state"] == Item.ERROR:
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
        hold_unsent([job_id])
        LogEvent.create(job=job_id, from_state=job.state, to_state=states.FAILED,
                        message="; ".join(f"{f['remote']}: {f['reason']}" for f in files),
                        timestamp=now)
