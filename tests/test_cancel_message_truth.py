"""`balsam transfer cancel` tells what became of the task's items: a stage-out that
carried an earlier run's result (its job ran again while it was in flight) goes out
again with the new run's file; it is not "marked error cancelled"."""

from __future__ import annotations

import os

from balsam_mp import api
from balsam_mp.api import Job, TransferItem
from tests.conftest import fifo_writer, wait_for
from tests.test_interventions_e2e import task_of


def test_a_cancelled_earlier_runs_result_is_said_to_go_out_again(local_site):
    local = local_site(transfers="  verify_checksum: false\n")
    local.balsam("site", "start")
    [job] = local.make_jobs(1, stage_out=True)
    local.wait_jobs([job], "STAGED_IN")
    output = local.site / "data/job/0/output.dat"
    os.mkfifo(output)  # run 1's copy blocks reading it
    Job.objects.set_state(job, "STAGED_IN", "POSTPROCESSED")
    task = task_of(job, "out")
    wait_for(lambda: api.TransferTask.objects.get(id=task.id).state == "active",
             what="run 1's result to be in flight")
    # the copy has the FIFO open before it is replaced (else it would read run 2's file)
    writer = fifo_writer(output)
    for before, after in (("POSTPROCESSED", "FAILED"), ("FAILED", "RESTART_READY"),
                          ("RESTART_READY", "RUNNING"), ("RUNNING", "RUN_DONE")):
        Job.objects.set_state(job, before, after)
    output.unlink()  # run 2 writes its own result (the runner holds the old FIFO open)
    output.write_text("run 2")
    Job.objects.set_state(job, "RUN_DONE", "POSTPROCESSED")  # in flight: sent again
    try:
        out = local.balsam("transfer", "cancel", str(task.id)).stdout
    finally:
        os.close(writer)
    # whichever records the end (this cancel, or the site's poller first), it says so
    assert "1 sent again" in out or "goes out again" in out, out
    local.wait_jobs([job], "JOB_FINISHED")
    assert (local.root / "out/job0.dat").read_text() == "run 2"
    [item] = TransferItem.objects.filter(job_id=job, direction="out")
    assert item.state == "done"
