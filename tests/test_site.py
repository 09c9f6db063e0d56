"""The site service end to end: `balsam site start` as a process, the real globus-sdk,
the emulator as a process, real signals. Those marked `engines` (exactly once among
them) run on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import math
import os
import socket

import pytest

from balsam_mp import api, states
from balsam_mp.site import pidfile
from balsam_mp.site.submitter import CRASH_HOOK
from tests.conftest import REMOTE_EP, wait_for

BATCH = 20


@pytest.mark.engines
def test_stage_in_and_out_batched_and_capped(sitekit):
    kit = sitekit(transfers=f"  transfer_batch_size: {BATCH}\n  max_concurrent_transfers: 3\n")
    jobs = kit.make_jobs(150)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN)
    for job in api.Job.objects.filter(id__in=jobs):
        name = f"job{job.workdir.parts[1]}"
        assert (kit.site / "data" / job.workdir / "input.dat").read_text() == f"input of {name}"
    kit.run_apps(jobs)
    kit.wait_jobs(jobs, states.JOB_FINISHED)
    assert len(list((kit.remote / "out").iterdir())) == 150
    accepted = kit.accepted()
    inbound = [s for s in accepted if " in remote " in s["label"]]
    outbound = [s for s in accepted if " out remote " in s["label"]]
    assert len(inbound) == len(outbound) == math.ceil(150 / BATCH)
    assert sum(len(s["items"]) for s in inbound) == 150
    assert max(s["unfinished_before"] for s in accepted) <= 2  # never more than 3 in flight
    trail = [e.to_state for e in api.Job.objects.get(id=jobs[0]).events.order_by("id")]
    assert trail == ["READY", "STAGED_IN", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
    status = kit.balsam("site", "status", "--format", "json").stdout
    assert '"running": true' in status and '"state": "done"' in status


@pytest.mark.engines
def test_skipped_file_fails_only_its_job(sitekit):
    kit = sitekit()
    jobs = kit.make_jobs(10, stage_out=False, missing={3})
    kit.start()
    good = [j for n, j in enumerate(jobs) if n != 3]
    kit.wait_jobs(good, states.STAGED_IN)
    kit.wait_jobs([jobs[3]], states.FAILED)
    failed = api.Job.objects.get(id=jobs[3])
    assert failed.state_data["failed_files"][0]["remote"] == "remote:/in/job3.dat"
    assert "FILE_NOT_FOUND" in failed.state_data["failed_files"][0]["reason"]
    assert len(kit.accepted()) == 1  # one batch: the bad file did not strand its mates
    assert "last error: remote:/in/job3.dat: FILE_NOT_FOUND" in kit.balsam("site", "status").stdout


@pytest.mark.engines
def test_submitter_killed_between_submit_and_record(sitekit, tmp_path):
    kit = sitekit()
    hook = tmp_path / "crash-once"
    hook.touch()
    jobs = kit.make_jobs(30, stage_out=False)
    kit.start(env=dict(kit.env, **{CRASH_HOOK: str(hook)}))
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert not hook.exists()  # the submitter did die once, after its submit
    records = kit.emulator.submissions()
    assert len(kit.accepted()) == 1 and len(records) == 2
    assert records[1]["duplicate"] and records[1]["task_id"] == records[0]["task_id"]
    tasks = kit.emulator.tasks()
    assert sum(t["files_transferred"] for t in tasks.values()) == 30
    log = (kit.site / "logs" / "supervisor.log").read_text()
    assert "submitter was killed by SIGKILL; restarting" in log


@pytest.mark.engines
def test_poller_and_supervisor_killed_mid_run(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "0.3"),
                  transfers="  transfer_batch_size: 10\n")
    jobs = kit.make_jobs(60, stage_out=False)
    kit.start()
    wait_for(lambda: kit.accepted(), what="a first submission")
    old_poller = kit.kill("poller")
    wait_for(lambda: kit.pids().get("poller") not in (None, old_poller), what="a new poller")
    kit.kill("supervisor")
    wait_for(lambda: not pidfile.read(kit.site).alive(), what="the supervisor to be gone")
    started = kit.start()
    assert "stale pidfile" in started.stdout
    kit.wait_jobs(jobs, states.STAGED_IN)
    accepted = kit.accepted()
    assert len({s["submission_id"] for s in accepted}) == len(accepted) == 6
    assert sum(t["files_transferred"] for t in kit.emulator.tasks().values()) == 60


def test_sync_applies_settings_and_refuses_a_broken_file(sitekit):
    kit = sitekit(transfers=f"  transfer_batch_size: {BATCH}\n")
    kit.start()
    before = kit.pids()
    settings_file = kit.site / "settings.yml"
    good = settings_file.read_text()
    settings_file.write_text(good + "  bogus_key: 1\n")
    refused = kit.balsam("site", "sync", check=False)
    assert refused.returncode == 1 and "transfers.bogus_key: unknown key" in refused.stderr
    assert kit.pids() == before  # the running site was left alone
    settings_file.write_text(good.replace(f"transfer_batch_size: {BATCH}",
                                          "transfer_batch_size: 5"))
    kit.balsam("site", "sync")
    wait_for(lambda: kit.pids().get("submitter") not in (None, before["submitter"]),
             what="new workers")
    jobs = kit.make_jobs(12, stage_out=False)
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert sorted(len(s["items"]) for s in kit.accepted()) == [2, 5, 5]


def test_start_twice_stop_stale_and_not_running(sitekit):
    kit = sitekit()
    kit.start()
    twice = kit.balsam("site", "start", check=False)
    assert twice.returncode == 1 and "already running" in twice.stderr
    saved = (kit.site / "site.pid").read_text()
    (kit.site / "site.pid").unlink()  # as if a second start raced past the pidfile check
    raced = kit.balsam("site", "start", "--foreground", check=False)
    assert raced.returncode == 1
    assert "another supervisor already runs this site" in \
        (kit.site / "logs" / "supervisor.log").read_text()
    (kit.site / "site.pid").write_text(saved)
    assert "stopped" in kit.balsam("site", "stop").stdout
    nothing = kit.balsam("site", "stop", check=False)
    assert nothing.returncode == 1 and "not running" in nothing.stderr
    (kit.site / "site.pid").write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "create_time": 1.0}))
    stale = kit.balsam("site", "stop")  # our own pid, another create time: a reused pid
    assert "stale pidfile" in stale.stdout and not (kit.site / "site.pid").exists()
    (kit.site / "site.pid").write_text('{"host": "other-node", "pid": 1, "create_time": 1.0}')
    elsewhere = kit.balsam("site", "stop", check=False)
    assert elsewhere.returncode == 1 and "runs on host other-node" in elsewhere.stderr
    assert (kit.site / "site.pid").exists()  # not ours to remove


def test_a_worker_that_cannot_boot_halts_the_site(sitekit):
    kit = sitekit()
    env = {k: v for k, v in kit.env.items() if not k.startswith("GLOBUS_CLIENT")}
    env["HOME"] = str(kit.site / "nohome")  # no credentials at all: workers cannot boot
    failed = kit.balsam("site", "start", check=False, env=env)
    assert failed.returncode == 1 and "failed to start" in failed.stderr
    assert pidfile.read(kit.site) is None
    log = (kit.site / "logs" / "supervisor.log").read_text()
    assert "failed at boot" in log


@pytest.mark.engines
def test_a_task_that_does_not_change_is_not_rewritten(sitekit):
    """A long transfer reports the same status poll after poll: its row stays as it was,
    so it ages and the poller backs off to service_period instead of polling at full
    speed (and waking the submitter) for as long as the transfer runs."""
    kit = sitekit(emulator_args=("--startup-delay", "60"))
    kit.make_jobs(3, stage_out=False)
    kit.start()
    # seen running: a task first seen "Queued" (the service not yet at it) is rewritten,
    # rightly, once it runs; running, nothing about it changes for 60 s
    task = wait_for(lambda: api.TransferTask.objects.filter(remote_status="ACTIVE",
                                                            nice_status="OK").first(),
                    what="the task to be seen running")
    polls = kit.emulator.counts()["task_list"]
    wait_for(lambda: kit.emulator.counts()["task_list"] >= polls + 3, what="three more polls")
    again = api.TransferTask.objects.get(id=task.id)
    assert (again.state, again.updated_at) == ("active", task.updated_at)


OTHER = f"    other: globus://{REMOTE_EP}\n"


def other_alias_jobs(kit, count: int) -> tuple[str, list[int]]:
    """Add the alias `other` to the kit's settings and make `count` jobs that use it;
    returns the settings text with `other` in it, and the job ids."""
    settings_file = kit.site / "settings.yml"
    with_other = settings_file.read_text().replace(
        f"    remote: globus://{REMOTE_EP}\n", f"    remote: globus://{REMOTE_EP}\n{OTHER}")
    settings_file.write_text(with_other)
    api.use_site(kit.site)
    (kit.remote / "in").mkdir()
    for n in range(count):
        (kit.remote / "in" / f"o{n}.dat").write_text(f"other {n}")
    return with_other, [job.id for job in api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"other/{n}",
         "transfers": {"input_file": f"other:/in/o{n}.dat"}} for n in range(count)])]


def sync_settings(kit, text: str) -> None:
    """Write settings.yml, `site sync`, and wait for both workers to be new ones."""
    (kit.site / "settings.yml").write_text(text)
    before = kit.pids()
    kit.balsam("site", "sync")
    wait_for(lambda: all(kit.pids().get(w) not in (None, before[w])
                         for w in ("submitter", "poller")), what="new workers")


def test_an_alias_removed_while_in_use(sitekit):
    """Tasks already sent on an alias that settings.yml then drops are followed to their
    end; its items not sent yet wait, and `site status` says why and what to do."""
    kit = sitekit(transfers="  transfer_batch_size: 3\n  max_concurrent_transfers: 1\n",
                  emulator_args=("--max-active", "0"))  # the service accepts, runs nothing
    with_other, jobs = other_alias_jobs(kit, 5)
    kit.start()
    wait_for(lambda: api.TransferItem.objects.filter(state="active").count() == 3,
             what="the first batch in flight")
    sync_settings(kit, with_other.replace(OTHER, ""))
    status = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
    assert status["unknown_aliases"] == {"other": 2}
    assert "'other' (2 items)" in status["action_required"]
    kit.emulator.knobs(max_active=3)
    kit.wait_jobs(jobs[:3], states.STAGED_IN)
    assert [j.state for j in api.Job.objects.filter(id__in=jobs[3:])] == ["READY", "READY"]
    assert api.TransferItem.objects.filter(state="pending").count() == 2


@pytest.mark.engines
def test_a_claim_on_a_removed_alias_keeps_its_submission_id(sitekit):
    """A batch claimed but not yet accepted when its alias is removed may have reached
    the service before a crash: it is neither sent nor failed, and once the alias is back
    it goes out with the submission id it was claimed with."""
    kit = sitekit()
    kit.emulator.fault("submit_transfer", status=503, count=1_000_000)
    with_other, jobs = other_alias_jobs(kit, 3)
    kit.start()
    task = wait_for(lambda: api.TransferTask.objects.filter(state="submitting").first(),
                    what="a claim")
    sync_settings(kit, with_other.replace(OTHER, ""))
    kit.emulator.clear_faults()
    log = kit.site / "logs" / "submitter.log"
    wait_for(lambda: f"task {task.id} waits" in log.read_text(), what="the claim to be held")
    assert kit.accepted() == []
    status = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
    assert status["unknown_aliases"] == {"other": 3}
    sync_settings(kit, with_other)
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert [s["submission_id"] for s in kit.accepted()] == [task.submission_id]


@pytest.mark.engines
def test_new_work_wakes_the_idle_workers_at_once(sitekit):
    """With service_period 30 s, a job created by another process is submitted, staged
    and moved on within seconds: the workers wake on the commit (SQLite: PRAGMA
    data_version; PostgreSQL: LISTEN/NOTIFY), not on their timer."""
    kit = sitekit(transfers="  service_period: 30\n")
    kit.start()
    # a worker that slept out its timer instead would take 30 s: 20 s tells the two apart
    # and leaves a loaded machine room to boot, submit and copy
    first = kit.make_jobs(1, prefix="warm", stage_out=False)  # both workers past boot
    kit.wait_jobs(first, states.STAGED_IN, timeout=20)
    jobs = kit.make_jobs(3, stage_out=False)
    kit.wait_jobs(jobs, states.STAGED_IN, timeout=20)
