"""When transfers go wrong, driven through the emulator's faults with the site running."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple

import pytest

from balsam_mp import api, states
from balsam_mp.db.filesystem import check_database_location, filesystem_of
from balsam_mp.db.models import LogEvent
from balsam_mp.errors import BalsamError
from balsam_mp.testing.globus_emulator import EmulatorProcess
from tests.conftest import REMOTE_EP, wait_for
from tests.sitekit import CLIENT, PACED


def first_task(kit) -> str:
    return wait_for(lambda: kit.accepted(), what="a first submission")[0]["task_id"]


def test_an_outage_never_fails_items_and_the_site_resumes(sitekit):
    kit = sitekit()
    kit.emulator.fault("submit_transfer", status=503, count=1_000_000)
    kit.emulator.fault("submission_id", drop=True, probability=0.5)
    jobs = kit.make_jobs(20, stage_out=False)
    kit.start()
    pids = kit.pids()
    wait_for(lambda: kit.emulator.stats()["injected"].get("submit_transfer", 0) >= 8,
             timeout=60, what="the submitter to keep trying through the outage")
    assert api.TransferItem.objects.filter(state="error").count() == 0
    assert api.Job.objects.filter(state="FAILED").count() == 0
    assert kit.pids() == pids  # no worker crashed
    kit.emulator.clear_faults()
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert len(kit.accepted()) == 1  # the batch kept its submission id through it all


def test_a_failed_task_is_retried(sitekit):
    kit = sitekit(emulator_args=("--max-active", "0"))  # queued: it cannot end before
    jobs = kit.make_jobs(10, stage_out=False)
    kit.start()
    kit.emulator.fail_task(first_task(kit), "ENDPOINT_ERROR", "storage offline")
    kit.emulator.knobs(max_active=3)  # the retry runs
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert len(kit.accepted()) == 2
    assert {i.attempts for i in api.TransferItem.objects.all()} == {1}
    reasons = {e.message for e in LogEvent.select().where(LogEvent.transfer_item.is_null(False))}
    assert reasons == {"ENDPOINT_ERROR: storage offline"}  # one prefix, not two


def test_permission_denied_fails_at_once_and_retry_brings_it_back(sitekit):
    kit = sitekit(transfers="  max_retries: 3\n")
    kit.emulator.deny(REMOTE_EP)  # every submit refused: permission denied, no retries
    jobs = kit.make_jobs(3, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.FAILED)
    failed = api.Job.objects.get(id=jobs[0]).state_data["failed_files"][0]
    assert failed["remote"] == "remote:/in/job0.dat" and "EndpointPermissionDenied" in \
        failed["reason"]
    assert api.TransferItem.objects.get(job_id=jobs[0]).attempts == 1
    assert len(kit.emulator.submissions()) == 0
    unknown = kit.balsam("transfer", "retry", "999999", check=False)
    assert unknown.returncode == 1 and "no transfer item with id 999999" in unknown.stderr
    kit.emulator.deny(REMOTE_EP, False)
    kit.balsam("transfer", "retry", "--failed")
    kit.wait_jobs(jobs, states.STAGED_IN)
    listed = json.loads(kit.balsam("transfer", "ls", "--job", str(jobs[0]), "--format",
                                   "json").stdout)
    assert [(i["state"], i["error"]) for i in listed] == [("done", None)]


def test_expired_tasks_are_retried_then_fail(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "5"),
                  transfers="  task_deadline: 1\n  max_retries: 1\n")
    jobs = kit.make_jobs(2, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.FAILED)
    assert "EXPIRED" in api.Job.objects.get(id=jobs[0]).state_data["failed_files"][0]["reason"]
    assert len(kit.accepted()) == 2


def test_inactive_task_is_reported_and_resumes(sitekit):
    kit = sitekit(emulator_args=("--max-active", "0"))  # queued: it cannot end before
    jobs = kit.make_jobs(4, stage_out=False)
    kit.start()
    task_id = first_task(kit)
    kit.emulator.set_inactive(task_id)
    kit.emulator.knobs(max_active=3)  # INACTIVE, it does not start all the same
    status = wait_for(lambda: (s := kit.balsam("site", "status").stdout) and
                      "ACTION REQUIRED" in s and s, what="status to report the INACTIVE task")
    assert "balsam site globus-login" in status and task_id in status
    assert api.TransferItem.objects.filter(state="inactive").count() == 4
    kit.emulator.set_inactive(task_id, False)
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert len(kit.accepted()) == 1


def test_a_task_inactive_too_long_is_cancelled_and_retried(sitekit):
    kit = sitekit(emulator_args=("--max-active", "0"),  # queued: it cannot end before
                  transfers="  inactive_timeout: 1\n")
    jobs = kit.make_jobs(4, stage_out=False)
    kit.start()
    task_id = first_task(kit)
    kit.emulator.set_inactive(task_id)
    kit.emulator.knobs(max_active=3)  # INACTIVE, it does not start; the retry does
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert kit.emulator.tasks()[task_id]["fatal_error"]["code"] == "CANCELED"
    assert len(kit.accepted()) == 2


def test_cancel_by_the_user(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "30"))
    jobs = kit.make_jobs(3, stage_out=False)
    kit.start()
    task_id = first_task(kit)
    wait_for(lambda: api.TransferItem.objects.filter(state="active").count() == 3)
    out = kit.balsam("transfer", "cancel", task_id).stdout
    # the cancel's own poll records the end, or the site's poller saw it first (the line
    # then says so): cancelled either way, its items checked below
    assert any(said in out for said in ("cancelled; 3 item(s) marked error",
                                        "cancelled; the site recorded its end first")), out
    kit.wait_jobs(jobs, states.FAILED)
    assert {i.error for i in api.TransferItem.objects.all()} == {"CANCELED_BY_USER: cancelled"}
    assert kit.emulator.tasks()[task_id]["fatal_error"]["code"] == "CANCELED"
    again = kit.balsam("transfer", "cancel", "no-such-task", check=False)
    assert again.returncode == 1 and "no transfer task with id no-such-task" in again.stderr


def test_deleted_workdir_before_stage_out_fails_only_that_job(sitekit):
    kit = sitekit()
    jobs = kit.make_jobs(4)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN)
    victim = api.Job.objects.get(id=jobs[1])
    kit.run_apps(jobs[:1] + jobs[2:])
    shutil.rmtree(kit.site / "data" / victim.workdir)
    api.Job.objects.set_state(victim.id, states.STAGED_IN, states.POSTPROCESSED)
    kit.wait_jobs(jobs[:1] + jobs[2:], states.JOB_FINISHED)
    kit.wait_jobs([victim.id], states.FAILED)
    reason = api.Job.objects.get(id=victim.id).state_data["failed_files"][0]
    assert reason["direction"] == "out" and "FILE_NOT_FOUND" in reason["reason"]


def test_a_full_disk_is_retried_and_loses_nothing(sitekit):
    kit = sitekit(transfers="  max_retries: 10\n")
    kit.emulator.knobs(disk_full=True)
    jobs = kit.make_jobs(5, stage_out=False)
    kit.start()
    wait_for(lambda: api.TransferItem.objects.filter(attempts__gte=1).count() == 5,
             what="the first attempt to fail on the full disk")
    assert "No space left on device" in api.TransferItem.objects.first().error
    kit.emulator.knobs(disk_full=False)
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert not list((kit.site / "data").rglob(".*partial*"))


def test_the_globus_rate_limit_is_respected(sitekit):
    kit = sitekit(emulator_args=("--rate-limit", "20"),
                  transfers="  transfer_batch_size: 5\n" + PACED)
    jobs = kit.make_jobs(60, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN, timeout=120)
    assert kit.emulator.stats()["injected"].get("rate_limited", 0) == 0


Partition = namedtuple("Partition", "mountpoint fstype")


def test_database_on_a_network_file_system_is_refused(tmp_path):
    mounts = [Partition("/", "ext4"), Partition("/home", "nfs4"),
              Partition("/lus/eagle", "lustre")]
    assert filesystem_of(tmp_path, mounts) == "ext4"
    assert filesystem_of("/home/me/site", mounts) == "nfs4"
    with pytest.raises(BalsamError, match="lustre file system.*database_path"):
        check_database_location(tmp_path.__class__("/lus/eagle/me/site.db"),
                                tmp_path / "settings.yml", mounts)
    check_database_location(tmp_path / "site.db", tmp_path / "settings.yml", mounts)


def test_database_path_moves_the_database(sitekit, tmp_path):
    kit = sitekit()
    text = (kit.site / "settings.yml").read_text()
    elsewhere = tmp_path / "local-disk" / "site.db"
    elsewhere.parent.mkdir()
    api.close()  # the last connection out checkpoints the WAL into site.db
    shutil.move(kit.site / "site.db", elsewhere)
    (kit.site / "settings.yml").write_text(f"database_path: {elsewhere}\n" + text)
    api.use_site(kit.site)
    jobs = kit.make_jobs(3, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert not (kit.site / "site.db").exists()


def test_missing_consent_is_reported_with_its_fix(sitekit, tmp_path):
    kit = sitekit()
    kit.emulator.require_consent(REMOTE_EP)
    identity = kit.emulator.cli_login(tmp_path / "home")  # without the data_access consent
    env = {k: v for k, v in kit.env.items() if not k.startswith("GLOBUS_CLIENT")}
    jobs = kit.make_jobs(2, stage_out=False)
    kit.start(env=env)
    command = f"balsam site globus-login -e {REMOTE_EP}"
    wait_for(lambda: command in kit.balsam("site", "status").stdout,
             what="status to name the consent command")
    log = kit.site / "logs" / "submitter.log"  # written after the event status reads
    wait_for(lambda: f"run `{command}`" in log.read_text(), what="the submitter to log it")
    assert api.Job.objects.filter(state="FAILED").count() == 0
    kit.emulator.grant_consent(REMOTE_EP, identity)  # the user consents
    kit.wait_jobs(jobs, states.STAGED_IN)


TWO_INPUTS = '''
from balsam_mp.api import ApplicationDefinition

class Pair(ApplicationDefinition):
    transfers = {"a": {"direction": "in", "local_path": "a.dat", "required": True},
                 "b": {"direction": "in", "local_path": "b.dat", "required": True}}
'''


def test_a_failed_file_leaves_the_jobs_other_transfers_to_finish(sitekit):
    kit = sitekit(transfers="  transfer_batch_size: 1\n")
    (kit.site / "apps" / "pair.py").write_text(TWO_INPUTS)
    api.App.sync()
    (kit.remote / "good.dat").write_text("good")
    job = api.Job.objects.create(app="Pair", workdir="pair", transfers={
        "a": "remote:/good.dat", "b": "remote:/missing.dat"})
    kit.start()
    kit.wait_jobs([job.id], states.FAILED)
    wait_for(lambda: api.TransferItem.objects.get(job_id=job.id, slot="a").state == "done",
             what="the good file to finish although its job failed")
    assert (kit.site / "data" / "pair" / "a.dat").read_text() == "good"
    failed = api.Job.objects.get(id=job.id).state_data["failed_files"]
    assert [f["remote"] for f in failed] == ["remote:/missing.dat"]


def test_a_service_restart_refuses_connections_then_loses_the_task(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "30"), transfers="  task_deadline: 3\n")
    jobs = kit.make_jobs(3, stage_out=False)
    kit.start()
    first_task(kit)
    wait_for(lambda: kit.emulator.counts().get("task_list"), what="a first poll")
    port = kit.emulator.base_url.rstrip("/").rsplit(":", 1)[1]
    kit.emulator.stop()  # connections refused from here on
    wait_for(lambda: "cannot reach Globus" in (kit.site / "logs" / "poller.log").read_text(),
             what="the poller to notice the outage")
    assert kit.pids()["poller"]  # still running, backing off
    from tests.conftest import REMOTE_EP as REMOTE
    from tests.conftest import SITE_EP as SITE

    kit.emulator = EmulatorProcess({SITE: kit.site, REMOTE: kit.remote}, "--port", port,
                                   "--client", ":".join(CLIENT))  # a new service: no tasks
    kit.wait_jobs(jobs, states.STAGED_IN, timeout=60)
    assert "lost by the service" in (kit.site / "logs" / "poller.log").read_text()
    assert api.Job.objects.filter(state="FAILED").count() == 0
