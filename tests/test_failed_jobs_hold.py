"""A FAILED job sends nothing new: its stage-in items not yet sent wait (`awaiting_job`)
until the job is READY again, through the db-layer functions the workers call. Items
already in flight finish as what they are. End to end: test_interventions_e2e.py."""

from __future__ import annotations

import pytest

from balsam_mp import db
from balsam_mp.api import ApplicationDefinition, Job, TransferItem
from balsam_mp.db import controls
from balsam_mp.states import Item
from tests.sitemoves import claim, finish, make, stage


def inputs(job_id: int) -> list[str]:
    return [i.state for i in TransferItem.objects.filter(job_id=job_id, direction="in")
            .order_by("id")]


@pytest.mark.engines
def test_a_ready_job_the_user_fails_stages_nothing_until_restarted(site):
    [job] = make(1)
    Job.objects.set_state(job.id, "READY", "FAILED")
    assert inputs(job.id) == [Item.AWAITING_JOB]
    assert claim("in") is None  # the submitter finds nothing of it to send
    [restarted] = Job.objects.filter(id=job.id).update(state="RESTART_READY").retried.items()
    assert restarted == (job.id, "READY")  # its stage-in was not done: staged in again
    assert inputs(job.id) == [Item.PENDING]
    finish(claim("in").task_id)
    assert Job.objects.get(id=job.id).state == "STAGED_IN"


@pytest.mark.engines
def test_an_input_in_flight_when_its_job_fails_lands_and_the_job_stays_failed(site):
    [job] = make(1)
    task = claim("in")
    Job.objects.set_state(job.id, "READY", "FAILED")
    assert inputs(job.id) == [Item.ACTIVE]  # in flight: not held
    finish(task.task_id)
    assert inputs(job.id) == [Item.DONE]
    assert Job.objects.get(id=job.id).state == "FAILED"
    Job.objects.set_state(job.id, "FAILED", "RESTART_READY")  # its inputs are all in
    assert Job.objects.get(id=job.id).state == "RESTART_READY"


class TwoInputs(ApplicationDefinition):
    transfers = {slot: {"direction": "in", "local_path": f"{slot}.dat", "required": True}
                 for slot in ("a", "b")}


@pytest.mark.engines
def test_a_job_failed_on_one_input_holds_its_other_until_the_retry(site):
    """Its first input is missing (fails for good) while its second is not yet claimed:
    the second waits. `transfer retry` makes the job READY and sends both."""
    TwoInputs.sync()
    job = Job.objects.create(workdir="two", app_id="TwoInputs",
                             transfers={"a": "laptop:/in/a.dat", "b": "laptop:/in/b.dat"})
    task = claim("in", limit=1)  # a batch of one: the first input only
    [(first, *_)] = task.items
    finish(task.task_id, failed_items=(first,), code="FILE_NOT_FOUND")
    assert Job.objects.get(id=job.id).state == "FAILED"
    assert inputs(job.id) == [Item.ERROR, Item.AWAITING_JOB]
    assert claim("in") is None
    with db.Job._meta.database.atomic():
        controls.retry_items(None)
    assert Job.objects.get(id=job.id).state == "READY"
    assert inputs(job.id) == [Item.PENDING, Item.PENDING]
    finish(claim("in").task_id)
    assert Job.objects.get(id=job.id).state == "STAGED_IN"


@pytest.mark.engines
def test_a_failed_job_with_held_inputs_can_be_deleted(site):
    [job] = make(1)
    Job.objects.set_state(job.id, "READY", "FAILED")
    Job.objects.filter(id=job.id).delete()
    assert TransferItem.objects.filter(job_id=job.id).count() == 0


def fail_result_for_good(job_id: int, by_user: bool) -> None:
    """A staged-in job POSTPROCESSED, its result in flight; the user FAILs it (by_user)
    or not, then the result fails for good at the service."""
    stage("in")
    Job.objects.set_state(job_id, "STAGED_IN", "POSTPROCESSED")
    task = claim("out")
    if by_user:
        Job.objects.set_state(job_id, "POSTPROCESSED", "FAILED")
    [(item_id, *_)] = task.items
    finish(task.task_id, failed_items=(item_id,), code="PERMISSION_DENIED")
    assert Job.objects.get(id=job_id).state == "FAILED"
    assert TransferItem.objects.get(id=item_id).state == Item.ERROR


@pytest.mark.engines
def test_a_restart_of_a_job_the_user_failed_runs_it_again_not_its_rejected_result(site):
    """The user failed the run whose result then failed for good: RESTART_READY runs the
    job again, and only the next run's result goes out."""
    [job] = make(1)
    fail_result_for_good(job.id, by_user=True)
    result = Job.objects.filter(id=job.id).update(state="RESTART_READY")
    assert result.retried == {}  # restarted as asked, nothing resent
    assert Job.objects.get(id=job.id).state == "RESTART_READY"
    [out] = TransferItem.objects.filter(job_id=job.id, direction="out")
    assert out.state == Item.AWAITING_JOB and claim("out") is None
    assert "failed_files" not in Job.objects.get(id=job.id).state_data
    for before, after in (("RESTART_READY", "RUNNING"), ("RUNNING", "RUN_DONE"),
                          ("RUN_DONE", "POSTPROCESSED")):
        Job.objects.set_state(job.id, before, after)
    finish(claim("out").task_id)
    assert Job.objects.get(id=job.id).state == "JOB_FINISHED"


@pytest.mark.engines
def test_a_restart_of_a_job_the_site_failed_on_its_result_sends_that_result_again(site):
    """The run was fine and only its upload failed (the site failed the job): the
    restart retries the upload (POSTPROCESSED), as before."""
    [job] = make(1)
    fail_result_for_good(job.id, by_user=False)
    result = Job.objects.filter(id=job.id).update(state="RESTART_READY")
    assert result.retried == {job.id: "POSTPROCESSED"}
    finish(claim("out").task_id)
    assert Job.objects.get(id=job.id).state == "JOB_FINISHED"
