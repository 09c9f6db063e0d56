"""What a user does to transfers by hand: retry failed items (a cancel: db/cancels.py)."""

from __future__ import annotations

from balsam_mp import itemmoves, states
from balsam_mp.db.bulk import value_list
from balsam_mp.db.jobs import (
    advance_jobs,
    lock_jobs,
    release_stage_in,
    release_stage_out,
    set_jobs_state,
)
from balsam_mp.db.models import Job, LogEvent, TransferItem, utcnow
from balsam_mp.errors import NotFound, ValidationError
from balsam_mp.states import Item


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
                    "error; only failed items can be retried" + _held_hint(
                        [rows[i] for i in not_failed]))
            query = query.where(TransferItem.id.in_(item_ids))
        items = list(query)
        now = utcnow()
        for item in items:
            # a stage-out goes when its job is POSTPROCESSED: at once if it is there
            # again after the retry (released below), else at its next run's end
            to_state = Item.PENDING if item.direction == "in" else Item.AWAITING_JOB
            TransferItem.update(state=to_state, attempts=0, not_before=None, error=None,
                                updated_at=now).where(
                TransferItem.id == item.id,
                TransferItem.state.in_(itemmoves.sources("item", itemmoves.RETRY,
                                                         to_state))).execute()
            LogEvent.create(job=item.job_id, transfer_item=item.id, from_state=Item.ERROR,
                            to_state=to_state, message="retried by the user", timestamp=now)
        for job_id in sorted({item.job_id for item in items}):  # locked in id order
            _revive(job_id, now)
    return [item.id for item in items]


def _held_hint(items: list[TransferItem]) -> str:
    """Why an item waits for its FAILED job, and how to let it go (restart the job)."""
    held = [i for i in items if i.state == Item.AWAITING_JOB and i.direction == "in"]
    failed = sorted({job_id for (job_id,) in Job.select(Job.id).where(
        Job.id.in_([i.job_id for i in held]), Job.state == states.FAILED).tuples()})
    if not failed:
        return ""
    ids = " ".join(map(str, failed))
    return (f"; held for FAILED job {', '.join(map(str, failed))}: a job's inputs wait "
            f"until it is READY again (`balsam job modify {ids} -s RESTART_READY`)")


def _revive(job_id: int, now) -> None:
    """A job whose failed items were retried goes back where its items hold it: READY
    while a stage-in is not done, else POSTPROCESSED (its stage-out goes again). A job
    not FAILED keeps its state; either way, held stage-outs of a POSTPROCESSED job go,
    and a job whose items are all done moves on."""
    lock_jobs([job_id])  # a poller failing another of its items waits, or is waited for
    job = Job.get_by_id(job_id)
    if job.state == states.FAILED and not TransferItem.select().where(
            TransferItem.job == job_id, TransferItem.state == Item.ERROR).exists():
        inputs_due = TransferItem.select().where(
            TransferItem.job == job_id, TransferItem.direction == "in",
            TransferItem.state != Item.DONE).exists()
        back_to = states.READY if inputs_due else states.POSTPROCESSED
        data = _archive_failures(job.state_data)
        data.pop("failed_from", None)
        changed = Job.update(state=back_to, state_data=data, updated_at=now).where(
            Job.id == job_id, Job.state == states.FAILED).execute()
        if changed:
            LogEvent.create(job=job_id, from_state=states.FAILED, to_state=back_to,
                            message="transfers retried by the user", timestamp=now)
            job.state = back_to
    if job.state == states.POSTPROCESSED:
        release_stage_out([job_id], new_run=False)  # advances it if nothing is left to send
    elif job.state == states.READY:
        release_stage_in([job_id])
        advance_jobs([job_id], "in")


def retry_failed_jobs(job_ids: list[int]) -> dict[int, str]:
    """FAILED jobs a user sends to RESTART_READY (Balsam's "run the failed jobs
    again") whose files are not all in: a job that failed on a transfer has its failed
    items retried (back to READY, then STAGED_IN when they arrive; POSTPROCESSED for a
    failed stage-out), a job whose stage-in never finished goes back to READY. Runs in
    the caller's transaction; returns job id -> the state each went to (the others are
    left for the caller's move to RESTART_READY)."""
    lock_jobs(job_ids)
    ids = value_list(job_ids)
    _hold_rejected_results(job_ids)
    failed_items = dict(TransferItem.select(TransferItem.id, TransferItem.job).join(Job)
                        .where(TransferItem.job.in_(ids), TransferItem.state == Item.ERROR,
                               Job.state == states.FAILED).tuples())  # item -> job
    held = {job_id for (job_id,) in TransferItem.select(TransferItem.job).join(Job).where(
        TransferItem.job.in_(ids), TransferItem.direction == "in",
        TransferItem.state != Item.DONE, Job.state == states.FAILED).tuples()}
    if failed_items:
        held |= set(failed_items.values())
        retry_items(list(failed_items))
    still = sorted(job_id for (job_id,) in Job.select(Job.id).where(
        Job.id.in_(value_list(sorted(held))), Job.state == states.FAILED).tuples())
    set_jobs_state(still, states.FAILED, states.READY,
                   "sent to RESTART_READY: its stage-in is not done; staged in again")
    return dict(Job.select(Job.id, Job.state).where(
        Job.id.in_(value_list(sorted(held)))).tuples())


def _hold_rejected_results(job_ids: list[int]) -> None:
    """Of FAILED jobs the user failed (the site's failure records `failed_from`), the
    stage-outs that then failed for good carry the run the user rejected: a restart
    runs the job again, so they wait for its next POSTPROCESSED instead of resending
    that run's result. Runs in the caller's transaction, the jobs locked."""
    rejected = {job_id: data for job_id, data in Job.select(Job.id, Job.state_data).where(
        Job.id.in_(value_list(job_ids)), Job.state == states.FAILED).tuples()
        if "failed_from" not in (data or {})}
    if not rejected:
        return
    now = utcnow()
    items = list(TransferItem.select(TransferItem.id, TransferItem.job).where(
        TransferItem.job.in_(value_list(list(rejected))), TransferItem.direction == "out",
        TransferItem.state == Item.ERROR).tuples())
    TransferItem.update(state=Item.AWAITING_JOB, attempts=0, not_before=None, error=None,
                        updated_at=now).where(
        TransferItem.id.in_(value_list([item_id for item_id, _ in items])),
        TransferItem.state.in_(itemmoves.sources("item", itemmoves.RETRY,
                                                 Item.AWAITING_JOB))).execute()
    for job_id in sorted({job_id for _, job_id in items}):
        Job.update(state_data=_archive_failures(rejected[job_id]), updated_at=now).where(
            Job.id == job_id).execute()
    for item_id, job_id in items:
        LogEvent.create(job=job_id, transfer_item=item_id, from_state=Item.ERROR,
                        to_state=Item.AWAITING_JOB, timestamp=now,
                        message="its job was failed by the user and restarted: the next "
                                "run's result goes out")


def _archive_failures(state_data: dict | None) -> dict:
    """A job's state_data for its next try: the files it failed on become
    `previous_failures`."""
    data = dict(state_data or {})
    data["previous_failures"] = data.get("previous_failures", []) + data.pop("failed_files", [])
    return data
