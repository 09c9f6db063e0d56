"""`balsam transfer cancel`: the cancel reaches the service, and is final.

For each task: the cancel is recorded on it (db/cancels.py); a task still `submitting`
(its answer may have been lost) is sent again with its stored submission id, so the
service names the task it made; the service is asked to cancel it; then the task is
polled until the service says it has ended. A task that had already finished keeps its
outcome (done items stay done, their jobs advance); one the service cancelled ends its
unfinished items `error "cancelled"`. If the service has not ended it within
CANCEL_WAIT, the site's poller finishes the job when it does, with the same rule.
"""

from __future__ import annotations

import time

from balsam_mp import itemmoves
from balsam_mp.db import cancels, claims, outcomes
from balsam_mp.db.models import TransferTask
from balsam_mp.db.results import Finished
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site import results, sending
from balsam_mp.site.backends import build_locations, follow_task
from balsam_mp.states import Task
from balsam_mp.transfer.base import PermanentError, TaskStatus, TransferBackend

CANCEL_WAIT = 15.0  # seconds to wait for the service to end a cancelled task
POLL_EVERY = 0.2


def cancel(settings: Settings, ids: list[str]) -> tuple[list[str], int]:
    """Cancel tasks by local or remote id: one line per task saying what became of it,
    and how many could not be cancelled now (the service out of reach: the cancel stays
    recorded, and the site's poller sends it again)."""
    tasks = cancels.find_tasks(ids)
    locations = build_locations(settings)
    report, failed = [], 0
    for found in tasks:
        task = cancels.request_cancel(found.id)
        if task is None:
            state = TransferTask.get_by_id(found.id).state
            report.append(f"task {found.id} is already {state}; nothing to cancel")
            continue
        try:
            backend = follow_task(settings, locations, task.location_alias, task.protocol)
            report.append(_cancel_one(settings, backend, task))
        except BalsamError as exc:  # the others are still cancelled
            failed += 1
            report.append(f"task {task.id} ({task.task_id or 'being submitted'}): cancel "
                          f"recorded but not confirmed: {exc}")
    return report, failed


def _cancel_one(settings: Settings, backend: TransferBackend, task: TransferTask) -> str:
    policy = settings.transfers
    if task.state == Task.SUBMITTING:
        owner = claims.owner_id()
        claim = cancels.take_over(task.id, owner, policy.claim_lease)
        if claim is not None:
            try:
                remote_id = sending.send(settings, backend, task.remote_address, claim)
            except PermanentError as exc:  # refused now: a lost first answer may hide a task
                finished = cancels.refused(task.id, exc.code, str(exc), policy)
                return (f"task {task.id}: the service refused the batch when it was sent "
                        f"again ({exc}); {finished.failed} item(s) marked error "
                        "\"cancelled\". If its first send made a task (its answer was lost), "
                        "that task could not be found: check `globus task list`")
            except Exception:
                cancels.release(task.id, owner)
                raise
            claims.mark_submitted([(claim, remote_id)], owner)
        task = TransferTask.get_by_id(task.id)
        if task.state == Task.SUBMITTING:  # our claim was taken back meanwhile
            return (f"task {task.id}: cancel recorded; it is being submitted, and the "
                    "site cancels it once it has its id")
    if task.state not in Task.POLLED:
        return f"task {task.id} ({task.task_id}) ended meanwhile: {task.state}"
    backend.cancel(task.task_id)
    status = _wait_until_ended(backend, task.task_id)
    if status is None:
        return (f"task {task.id} ({task.task_id}): cancel requested; the service has not "
                "ended it yet (the site's poller ends its items as cancelled when it does)")
    finished = outcomes.finish_task(task.id, results.progress_of(status),
                                    results.file_failures(backend, task, status), policy,
                                    itemmoves.CANCEL)
    if finished == Finished():  # the poller recorded its end first, by the same rules
        if status.status == "SUCCEEDED":
            return (f"task {task.id} ({task.task_id}) had already finished; the site "
                    "recorded it first (see `balsam transfer ls`)")
        return (f"task {task.id} ({task.task_id}) cancelled; the site recorded its end "
                "first: its unfinished items end error \"cancelled\", but a stage-out "
                "carrying an earlier run's result goes out again with the new one (see "
                "`balsam transfer ls`)")
    again = (f", {finished.resent} sent again (an earlier run's result: the job's new "
             "one goes out)") if finished.resent else ""
    if status.status == "SUCCEEDED":
        return (f"task {task.id} ({task.task_id}) had already finished: {finished.done} "
                f"item(s) done, {finished.failed} failed{again}")
    return (f"task {task.id} ({task.task_id}) cancelled; {finished.failed} item(s) marked "
            f"error, {finished.done} done{again}")


def _wait_until_ended(backend: TransferBackend, remote_id: str) -> TaskStatus | None:
    deadline = time.monotonic() + CANCEL_WAIT
    while True:
        status = backend.poll([remote_id]).get(remote_id)
        if status is not None and status.finished:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_EVERY)  # the service's own pace: nothing local to wait on
