"""A user steps in while a real site runs: `balsam transfer cancel` reaches the service
(the Globus emulator over HTTP, or the local backend's runner) and is final, a reused
workdir gets its new job's input, and a rerun's result is what the remote side keeps."""

from __future__ import annotations

import os

import pytest

from balsam_mp import api, db
from balsam_mp.api import Job, TransferItem
from tests.conftest import wait_for, write_when_read


def task_of(job_id: int, direction: str = "in") -> api.TransferTask:
    """The task row carrying a job's item (its items name it while in flight)."""
    [item] = TransferItem.objects.filter(job_id=job_id, direction=direction)
    wait_for(lambda: TransferItem.objects.get(id=item.id).state in ("submitting", "active"),
             what="the item to be claimed")
    db_item = db.TransferItem.get_by_id(item.id)
    return api.TransferTask.objects.get(id=db_item.transfer_task_id)


def job_spec(workdir: str, remote: str, out: str | None = None) -> dict:
    transfers = {"input_file": remote, **({"result": out} if out else {})}
    return {"app": "MySim", "workdir": workdir, "transfers": transfers}


def test_a_cancel_of_a_task_whose_submit_answer_was_lost_reaches_globus(sitekit):
    """Case 1: the submit reached Globus but every answer was lost, so the site's task is
    still `submitting`. The cancel sends it again with its submission id, learns the
    task Globus made, and cancels it there: nothing lands after a new job has staged in
    on the same workdir."""
    kit = sitekit()
    kit.emulator.knobs(startup_delay=30.0)  # the old task would copy long after
    kit.emulator.fault("submit_transfer", after=True, count=1_000_000)
    (kit.remote / "in").mkdir()
    (kit.remote / "in" / "old.dat").write_text("OLD")
    kit.start()
    [job] = Job.objects.bulk_create([job_spec("w", "remote:/in/old.dat")])
    wait_for(lambda: kit.emulator.tasks(), what="Globus to have made the task")
    task = task_of(job.id)
    assert task.state == "submitting"
    kit.balsam("site", "stop")
    kit.emulator.clear_faults()
    out = kit.balsam("transfer", "cancel", str(task.id)).stdout
    assert "cancelled" in out and "1 item(s) marked error" in out, out
    [remote] = kit.emulator.tasks().values()
    assert remote["status"] == "FAILED"  # Globus says so: the cancel reached it
    [item] = TransferItem.objects.filter(job_id=job.id)
    assert item.state == "error" and "cancelled" in item.error
    # the user starts over on the same workdir
    kit.balsam("job", "rm", "-y", str(job.id))
    (kit.remote / "in" / "new.dat").write_text("NEW")
    kit.emulator.knobs(startup_delay=0.0)
    kit.start()
    [again] = Job.objects.bulk_create([job_spec("w", "remote:/in/new.dat")])
    kit.wait_jobs([again.id], "STAGED_IN")
    assert (kit.site / "data/w/input.dat").read_text() == "NEW"
    assert all(t["status"] != "ACTIVE" for t in kit.emulator.tasks().values())


def test_a_cancel_of_a_task_that_finished_while_the_site_was_stopped_keeps_it(sitekit):
    """Case 4b: Globus answers the cancel with TaskComplete: the items are done and
    the job stages in; nothing is failed."""
    kit = sitekit()
    kit.emulator.knobs(max_active=0)  # Globus queues it: it cannot end while the site runs
    kit.start()
    [job] = kit.make_jobs(1, stage_out=False)
    task = task_of(job)
    wait_for(lambda: api.TransferTask.objects.get(id=task.id).state == "active",
             what="the task to be submitted")
    kit.balsam("site", "stop")
    kit.emulator.knobs(max_active=3)
    wait_for(lambda: all(t["status"] == "SUCCEEDED" for t in kit.emulator.tasks().values()),
             what="Globus to finish the task")
    out = kit.balsam("transfer", "cancel", str(task.id)).stdout
    assert "had already finished: 1 item(s) done" in out, out
    assert Job.objects.get(id=job).state == "STAGED_IN"
    assert (kit.site / "data/job/0/input.dat").read_text() == "input of job0"


def test_a_cancel_of_a_stuck_local_copy_is_final(local_site):
    """Case 4a: the runner blocks on a FIFO; the cancel kills it. Whatever the poller
    saw first (a lost runner), the item ends cancelled and is never sent again."""
    local = local_site()
    os.mkfifo(local.root / "in" / "stuck.dat")
    local.balsam("site", "start")
    [stuck] = Job.objects.bulk_create([job_spec("stuck", "laptop:/in/stuck.dat")])
    task = task_of(stuck.id)
    wait_for(lambda: api.TransferTask.objects.get(id=task.id).state == "active",
             what="the copy to start")
    out = local.balsam("transfer", "cancel", str(task.id)).stdout
    assert "cancelled" in out, out
    wait_for(lambda: Job.objects.get(id=stuck.id).state == "FAILED", what="the job to fail")
    # a later job stages in: the cancelled item did not go round again meanwhile
    [later] = local.make_jobs(1, prefix="later")
    local.wait_jobs([later], "STAGED_IN")
    [item] = TransferItem.objects.filter(job_id=stuck.id)
    assert item.state == "error" and "cancelled" in item.error and item.attempts == 1
    assert api.TransferTask.objects.filter(id=task.id).count() == 1
    assert db.TransferTask.select().count() == 2  # the cancelled one, the later one


@pytest.mark.parametrize("backend", ["local", "globus"])
def test_a_reused_workdir_gets_the_new_jobs_same_size_input(backend, local_site, sitekit):
    """Case 3a: after `job rm`, a new job on the same workdir whose input has the same
    size as the old one's: with sync_level checksum (the default) it is copied."""
    if backend == "local":
        kit, alias, root = local_site(), "laptop", None
        root = kit.root
    else:
        kit, alias = sitekit(), "remote"
        root = kit.remote
    (root / "in").mkdir(exist_ok=True)
    (root / "in" / "a.dat").write_text("AAAA")
    (root / "in" / "b.dat").write_text("BBBB")
    kit.balsam("site", "start")
    [first] = Job.objects.bulk_create([job_spec("w", f"{alias}:/in/a.dat")])
    kit.wait_jobs([first.id], "STAGED_IN")
    kit.balsam("job", "rm", "-y", str(first.id))
    [second] = Job.objects.bulk_create([job_spec("w", f"{alias}:/in/b.dat")])
    kit.wait_jobs([second.id], "STAGED_IN")
    assert (kit.site / "data/w/input.dat").read_text() == "BBBB"


def test_a_rerun_sends_its_own_same_size_result(local_site):
    """Cases 2 and 3b: run 1's result is in flight (its copy reads a FIFO) when the user
    FAILs the job; it lands. The rerun writes a result of the same size and is
    POSTPROCESSED: the job finishes only once run 2's file is on the remote side."""
    local = local_site(transfers="  verify_checksum: false\n")  # a FIFO is read once
    local.balsam("site", "start")
    [job] = local.make_jobs(1, stage_out=True)
    local.wait_jobs([job], "STAGED_IN")
    output = local.site / "data/job/0/output.dat"
    remote = local.root / "out/job0.dat"
    os.mkfifo(output)
    Job.objects.set_state(job, "STAGED_IN", "POSTPROCESSED")
    task = task_of(job, "out")
    wait_for(lambda: api.TransferTask.objects.get(id=task.id).state == "active",
             what="run 1's result to be in flight")
    Job.objects.set_state(job, "POSTPROCESSED", "FAILED")
    write_when_read(output, "run 1")  # the copy reads run 1's result now
    wait_for(lambda: remote.exists() and remote.read_text() == "run 1",
             what="run 1's result to land")
    wait_for(lambda: TransferItem.objects.get(job_id=job, direction="out").state == "done",
             what="its item to be done")
    assert Job.objects.get(id=job).state == "FAILED"
    output.unlink()
    output.write_text("run 2")  # the same size as run 1's
    for before, after in (("FAILED", "RESTART_READY"), ("RESTART_READY", "RUNNING"),
                          ("RUNNING", "RUN_DONE"), ("RUN_DONE", "POSTPROCESSED")):
        Job.objects.set_state(job, before, after)
    local.wait_jobs([job], "JOB_FINISHED")
    assert remote.read_text() == "run 2"


@pytest.mark.parametrize("task_id", ["99999999999999999999999", "9223372036854775808", "²",
                                     "\uff11", ""])
def test_a_cancel_of_an_id_that_names_no_task_is_one_line(local_site, task_id):
    """Huge numbers, digits that are not ASCII (a full-width 1 is not task 1), empty."""
    local = local_site()
    result = local.balsam("transfer", "cancel", "--", task_id, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    shown = task_id or "''"
    assert result.stderr.strip().splitlines() == [
        f"Error: no transfer task with id {shown}"], result.stderr


def test_a_site_made_with_the_old_sync_level_is_told_to_change_it(local_site):
    """Case 3 on an existing site: its settings.yml still says what the old template
    wrote (`sync_level: size`); status says what it keeps and how to change it. A value
    the user wrote is theirs: no word then."""
    from balsam_mp.site import upgrades

    local = local_site()
    settings = local.site / "settings.yml"
    settings.write_text(settings.read_text().replace("transfers:\n", f"transfers:\n  "
                                                     f"{upgrades.OLD_SYNC_LEVEL}\n", 1))
    status = local.balsam("site", "status").stdout
    assert "old template's `sync_level: size`" in status and "checksum" in status, status
    settings.write_text(settings.read_text().replace(upgrades.OLD_SYNC_LEVEL,
                                                     "sync_level: size"))
    assert "sync_level" not in local.balsam("site", "status").stdout
