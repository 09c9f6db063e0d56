"""The database side of a user's `transfer cancel` (site/controls.py drives it).

A cancel is recorded on its task first (`cancel_requested`): from then on, whatever ends
the task (the service's cancel, a killed local runner, a lost task), its unfinished items
end `error "cancelled"` and are not sent again by themselves (outcomes.finish_task). A
task still `submitting` is claimed by the cancel, which sends it again with its stored
submission id to learn which task the service made, if any.
"""

from __future__ import annotations

import datetime as dt

from balsam_mp import itemmoves
from balsam_mp.db import claims
from balsam_mp.db.claims import Claim
from balsam_mp.db.models import TransferTask, utcnow
from balsam_mp.db.outcomes import finish_task
from balsam_mp.db.results import Finished, Progress
from balsam_mp.errors import NotFound
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Task


def _db():
    return TransferTask._meta.database


def find_tasks(ids: list[str]) -> list[TransferTask]:
    """Tasks by local id or remote task id; unknown ids are an error."""
    found, unknown = [], []
    for text in ids:
        query = TransferTask.task_id == text
        if text.isascii() and text.isdigit() and len(text) < 19:  # fits a 64-bit row id
            query = query | (TransferTask.id == int(text))
        task = TransferTask.select().where(query).first()
        (found.append(task) if task else unknown.append(text))
    if unknown:
        shown = (u if u.isprintable() and u.strip() == u and u else repr(u) for u in unknown)
        raise NotFound(f"no transfer task with id {', '.join(shown)}")
    return found


def request_cancel(task_id: int) -> TransferTask | None:
    """Record the user's cancel on a task in flight; the task as it is now (None if it
    has ended meanwhile)."""
    with _db().atomic():
        TransferTask.update(cancel_requested=utcnow()).where(
            TransferTask.id == task_id, TransferTask.state.in_(Task.IN_FLIGHT),
            TransferTask.cancel_requested.is_null()).execute()
        task = TransferTask.get_by_id(task_id)
    return task if task.state in Task.IN_FLIGHT else None


def take_over(task_id: int, owner: str, lease: float) -> Claim | None:
    """Claim a task still `submitting` for the cancel, whoever holds it: a submitter
    sending it at this moment sends the same submission id, so the service makes one
    task at most, and the submitter's record of it yields to ours."""
    now = utcnow()
    with _db().atomic():
        changed = TransferTask.update(
            owner=owner, lease_expires=now + dt.timedelta(seconds=lease), updated_at=now,
        ).where(TransferTask.id == task_id, TransferTask.state == Task.SUBMITTING).execute()
    return claims.claim_of(task_id) if changed else None


def release(task_id: int, owner: str) -> None:
    """Give a claim back (the service could not be reached): its lease ends now, so
    the submitter sends it at once, and the poller cancels the task it makes."""
    TransferTask.update(lease_expires=utcnow()).where(
        TransferTask.id == task_id, TransferTask.owner == owner,
        TransferTask.state == Task.SUBMITTING).execute()


def refused(task_id: int, code: str, reason: str, policy: TransferSettings) -> Finished:
    """The service refused the batch for good when the cancel sent it: no task exists,
    so its items end cancelled at once."""
    progress = Progress("FAILED", None, 0, 0, 0.0, code, reason)
    return finish_task(task_id, progress, [], policy, itemmoves.CANCEL)
