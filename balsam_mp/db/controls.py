"""What a user does to transfers by hand: retry failed items, cancel a task."""

from __future__ import annotations

from balsam_mp import states, transitions
from balsam_mp.db.jobs import lock_jobs
from balsam_mp.db.models import Job, LogEvent, TransferItem, TransferTask, utcnow
from balsam_mp.db.outcomes import Failure, fail_items
from balsam_mp.errors import NotFound, ValidationError
from balsam_mp.settings import TransferSettings
from balsam_mp.states import Item, Task


def retry_items(item_ids: list[int] | None) -> list[int]:
    """Put `error` items (all of them if None) back to pending, and move their FAILED
    jobs back to the state they left. All or nothing: an unknown or non-error id
    changes nothing."""
    db = TransferItem._meta.database
    with db.atomic():
        query = TransferItem.select().where(TransferItem.state == Item.ERROR)
        if item_ids is not None:
            rows = {i.id: i for i in TransferItem.select().where(TransferItem.id.in_(item_ids))}
            unknown = sorted(set(item_ids) - set(rows))
            if unknown:
                raise NotFound(f"no transfer item with id {', '.join(map(str, unknown))}")
            not_failed = sorted(i for i, row in rows.items() if row.state != Item.ERROR)
            if not_failed:
                raise ValidationError(
                    f"transfer item(s) {', '.join(map(str, not_failed))} are not in state "
                    "error; only failed items can be retried")
            query = query.where(TransferItem.id.in_(item_ids))
        items = list(query)
        now = utcnow()
        for item in items:
            # a stage-out item of a job that never reached POSTPROCESSED waits for it again
            TransferItem.update(state=Item.PENDING, attempts=0, not_before=None, error=None,
                                updated_at=now).where(TransferItem.id == item.id,
                                                      TransferItem.state == Item.ERROR).execute()
            LogEvent.create(job=item.job_id, transfer_item=item.id, from_state=Item.ERROR,
                            to_state=Item.PENDING, message="retried by the user", timestamp=now)
        for job_id in {item.job_id for item in items}:
            _revive(job_id, now)
    return [item.id for item in items]


def _revive(job_id: int, now) -> None:
    lock_jobs([job_id])  # a poller failing another of its items waits, or is waited for
    job = Job.get_by_id(job_id)
    if job.state != states.FAILED:
        return
    still_failed = TransferItem.select().where(TransferItem.job == job_id,
                                               TransferItem.state == Item.ERROR).exists()
    if still_failed:
        return
    data = dict(job.state_data or {})
    back_to = data.pop("failed_from", states.READY)
    if not transitions.allowed(states.FAILED, back_to, transitions.SITE):
        back_to = states.READY  # not a state to return to: stage the job in again
    data["previous_failures"] = data.get("previous_failures", []) + data.pop("failed_files", [])
    Job.update(state=back_to, state_data=data, updated_at=now).where(
        Job.id == job_id, Job.state == states.FAILED).execute()
    LogEvent.create(job=job_id, from_state=states.FAILED, to_state=back_to,
                    message="transfers retried by the user", timestamp=now)


def find_tasks(ids: list[str]) -> list[TransferTask]:
    """Tasks by local id or remote task id; unknown ids are an error."""
    found, unknown = [], []
    for text in ids:
        query = TransferTask.task_id == text
        if text.isdigit():
            query = query | (TransferTask.id == int(text))
        task = TransferTask.select().where(query).first()
        (found.append(task) if task else unknown.append(text))
    if unknown:
        raise NotFound(f"no transfer task with id {', '.join(unknown)}")
    return found


def cancel_task_items(task_id: int, policy: TransferSettings) -> int:
    """A cancelled task: it fails, and its items end `error` with reason `cancelled`."""
    db = TransferTask._meta.database
    now = utcnow()
    with db.atomic():
        changed = TransferTask.update(state=Task.FAILED, fatal_error="cancelled by the user",
                                      owner=None, updated_at=now).where(
            TransferTask.id == task_id, TransferTask.state.in_(Task.IN_FLIGHT)).execute()
        if not changed:
            return 0
        items = [i for (i,) in TransferItem.select(TransferItem.id).where(
            TransferItem.transfer_task == task_id,
            TransferItem.state.in_(Item.IN_FLIGHT)).tuples()]
        fail_items([Failure(i, "CANCELED_BY_USER", "cancelled") for i in items], policy, now)
    return len(items)
