"""The submitter's side of a refusal: a batch the service refused for good, and items
that cannot be sent. Each function runs its own transaction."""

from __future__ import annotations

from balsam_mp import itemmoves
from balsam_mp.db.claims import Claim
from balsam_mp.db.failing import fail_items, split_batch
from balsam_mp.db.models import TransferItem, TransferTask, utcnow
from balsam_mp.db.outcomes import finish_task
from balsam_mp.db.results import Failure, Finished, Progress, safe_text
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Item, Task


def _db():
    return TransferTask._meta.database


def abandon(claim: Claim, code: str, reason: str, policy: TransferSettings) -> Finished:
    """A batch the service refused for good: the task fails, its items fail or retry.
    A request refused as bad (BAD_REQUEST: one bad path refuses the batch) is split
    in halves instead, like a batch that failed as a whole. A batch a user asked to cancel
    is neither split nor retried: its items end cancelled."""
    now, reason = utcnow(), safe_text(reason)
    if TransferTask.select(TransferTask.cancel_requested).where(
            TransferTask.id == claim.task_id).scalar() is not None:
        return finish_task(claim.task_id, Progress("FAILED", None, 0, 0, 0.0, code, reason),
                           [], policy, itemmoves.CANCEL)
    with _db().atomic():
        changed = TransferTask.update(
            state=Task.FAILED, fatal_error=f"{code}: {reason}", owner=None,
            updated_at=now).where(TransferTask.id == claim.task_id,
                                  TransferTask.state == Task.SUBMITTING).execute()
        rows = list(TransferItem.select(TransferItem.id, TransferItem.split_round).where(
            TransferItem.transfer_task == claim.task_id,
            TransferItem.state == Item.SUBMITTING).order_by(TransferItem.id).tuples())
        if not changed or not rows:
            return Finished()
        if code == "BAD_REQUEST" and len(rows) > 1:
            return split_batch(claim.task_id, rows, f"{code}: {reason}", now,
                               itemmoves.SUBMITTER)
        solo = {rows[0][0]} if code == "BAD_REQUEST" and rows[0][1] else set()
        fail_items([Failure(item_id, code, reason) for item_id, _ in rows], policy, now, solo,
                   itemmoves.SUBMITTER)
        return Finished(failed=len(rows))


def drop_items(claim: Claim, failures: list[Failure], policy: TransferSettings) -> None:
    """Items of a claim that cannot be sent (their folder cannot be made) fail alone; a
    claim left with none fails as a task. `claim.items` loses them."""
    gone = {failure.item_id for failure in failures}
    claim.items = [item for item in claim.items if item[0] not in gone]
    with _db().atomic():
        fail_items(failures, policy, actor=itemmoves.SUBMITTER)
        TransferTask.update(item_count=len(claim.items), updated_at=utcnow()).where(
            TransferTask.id == claim.task_id).execute()
    if not claim.items:
        abandon(claim, failures[0].code, "no item of the batch could be sent", policy)
