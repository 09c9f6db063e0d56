"""A poisoned batch hurts only its own job: a task that fails or stalls as a whole is
split in halves, each its own task, until the culprit stands alone."""

from __future__ import annotations

import json
import math
import os
import signal
import threading

from balsam_mp import api, states
from balsam_mp.db.models import utcnow
from balsam_mp.transfer.local import read_json, runner_alive
from tests.conftest import wait_for
from tests.localsite import LocalSite


def rounds_bound(batch: int) -> int:
    return math.ceil(math.log2(batch))


def test_a_destination_fault_globus_retries_is_isolated(sitekit):
    """The emulator keeps a destination error the Globus way (the task stays ACTIVE, the
    fault repeats in nice_status and the event list); after fault_timeout the site
    cancels the task and splits it, round after round, until the culprit is alone."""
    kit = sitekit(transfers="  max_retries: 0\n  fault_timeout: 1\n")
    kit.emulator.knobs(fault_retry=0.2)
    jobs = kit.make_jobs(20, stage_out=False)
    poisoned = api.Job.objects.get(id=jobs[7])
    (kit.site / "data" / poisoned.workdir / "input.dat" / "x").mkdir(parents=True)
    kit.start()
    good = [j for j in jobs if j != poisoned.id]
    kit.wait_jobs(good, states.STAGED_IN, timeout=120)
    kit.wait_jobs([poisoned.id], states.FAILED, timeout=60)
    failed = api.Job.objects.get(id=poisoned.id).state_data["failed_files"]
    assert [f["remote"] for f in failed] == ["remote:/in/job7.dat"]
    assert "STALLED: IS_A_DIRECTORY" in failed[0]["reason"]
    assert f"/data/{poisoned.workdir}/input.dat" in failed[0]["reason"]  # its own file
    assert "isolated after" in failed[0]["reason"]
    item = api.TransferItem.objects.get(job_id=poisoned.id)
    assert 1 <= item.split_round <= rounds_bound(20)
    listed = json.loads(kit.balsam("transfer", "ls", "--job", str(poisoned.id),
                                   "--format", "json").stdout)
    assert listed[0]["split_round"] == item.split_round
    assert all(i.error is None and i.attempts == 0 for i in
               api.TransferItem.objects.filter(job_id__in=good))
    accepted = kit.accepted()  # every half had a fresh submission id: exactly once
    assert len({s["submission_id"] for s in accepted}) == len(accepted)
    assert len(accepted) == 1 + 2 * item.split_round
    first = kit.emulator.tasks()[accepted[0]["task_id"]]
    assert first["encrypt_data"] is True and first["faults"] >= 2
    faults = [e for e in first["events"] if e["code"] == "IS_A_DIRECTORY"]
    assert len(faults) >= 2 and all(e["is_error"] for e in faults)
    log = (kit.site / "logs" / "poller.log").read_text()
    assert "split round 1, its 20 items retried as halves of 10 and 10" in log


class Killer:
    """Kills, as an out-of-memory killer would, every runner whose task holds a file.
    `kills` counts the tasks whose runner it killed: a runner SIGKILLed but not yet
    ended (a loaded machine schedules it late) is killed again, not counted again."""

    def __init__(self, site: LocalSite, remote_path: str) -> None:
        self.tasks, self.path = site.site / "local_tasks", remote_path
        self.stop, self.killed = threading.Event(), set()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    @property
    def kills(self) -> int:
        return len(self.killed)

    def loop(self) -> None:
        while not self.stop.wait(0.02):
            for task in self.tasks.glob("*") if self.tasks.exists() else ():
                spec, runner = read_json(task / "spec.json"), read_json(task / "runner.json")
                if spec and runner and any(f["src"] == self.path for f in spec["files"]) \
                        and runner_alive(task):
                    os.kill(runner["pid"], signal.SIGKILL)
                    self.killed.add(task.name)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_a_batch_whose_runner_dies_on_one_file_is_isolated(local_site):
    site = local_site(transfers="  max_retries: 0\n")
    jobs = site.make_jobs(16)
    fifo = site.root / "in" / "job5.dat"
    fifo.unlink()
    os.mkfifo(fifo)  # the runner blocks on it, and is killed there
    killer = Killer(site, "/in/job5.dat")
    try:
        site.balsam("site", "start")
        good = jobs[:5] + jobs[6:]
        site.wait_jobs(good, states.STAGED_IN, timeout=30)
        site.wait_jobs([jobs[5]], states.FAILED, timeout=60)
        failed = api.Job.objects.get(id=jobs[5]).state_data["failed_files"]
        assert [f["remote"] for f in failed] == ["laptop:/in/job5.dat"]
        assert "RUNNER_LOST" in failed[0]["reason"]
        item = api.TransferItem.objects.get(job_id=jobs[5])
        assert 1 <= item.split_round <= rounds_bound(16)
        assert killer.kills == item.split_round + 1
        # retried by hand, the culprit goes out alone: new jobs are not batched with it
        more = site.make_jobs(6, prefix="more")
        site.balsam("transfer", "retry", "--failed")
        site.wait_jobs(more, states.STAGED_IN, timeout=60)
        wait_for(lambda: killer.kills == item.split_round + 2, what="the retry's kill")
        site.wait_jobs([jobs[5]], states.FAILED, timeout=60)
        assert all(i.split_round == 0 and i.state == "done" for i in
                   api.TransferItem.objects.filter(job_id__in=more))
        assert api.TransferTask.objects.order_by("-id").filter(state="failed").first() \
            .item_count == 1
    finally:
        killer.close()


def test_a_batch_refused_for_one_bad_path_is_split(sitekit):
    """An old row (or another client) carries a path no file system holds: the service
    refuses the whole request as bad; the site splits it until the refusal is alone."""
    kit = sitekit(transfers="  max_retries: 0\n")
    jobs = kit.make_jobs(12, stage_out=False)
    too_long = "/in/" + "x/" * 2100 + "f.dat"
    api.TransferItem.objects.model.update(remote_path=too_long).where(
        api.TransferItem.objects.model.job == jobs[3]).execute()
    kit.start()
    kit.wait_jobs(jobs[:3] + jobs[4:], states.STAGED_IN, timeout=60)
    kit.wait_jobs([jobs[3]], states.FAILED, timeout=30)
    failed = api.Job.objects.get(id=jobs[3]).state_data["failed_files"]
    assert failed[0]["remote"] == f"remote:{too_long}"
    assert "BAD_REQUEST" in failed[0]["reason"] and "invalid path" in failed[0]["reason"]
    assert 1 <= api.TransferItem.objects.get(job_id=jobs[3]).split_round <= rounds_bound(12)
    assert "split round 1, its 12 items retried as halves of 6 and 6" in (
        kit.site / "logs" / "submitter.log").read_text()


def test_a_stalled_task_cancelled_before_its_split_is_still_split(sitekit):
    """The poller cancels a stalled task, then dies before it records the split: the
    next poller finds the task CANCELED after a long fault and splits it all the same."""
    # the first poller never gives up (however long `site stop` takes); the next one
    # finds the fault older than fault_timeout
    kit = sitekit(transfers="  max_retries: 0\n  fault_timeout: 600\n")
    kit.emulator.knobs(fault_retry=0.2)
    jobs = kit.make_jobs(4, stage_out=False)
    poisoned = api.Job.objects.get(id=jobs[1])
    (kit.site / "data" / poisoned.workdir / "input.dat" / "x").mkdir(parents=True)
    kit.start()
    task = wait_for(lambda: api.TransferTask.objects.filter(fault_since__ne=None).first(),
                    what="the fault to be recorded")
    kit.balsam("site", "stop")
    assert "split round" not in (kit.site / "logs" / "poller.log").read_text()
    settings = kit.site / "settings.yml"
    settings.write_text(settings.read_text().replace("fault_timeout: 600", "fault_timeout: 3"))
    kit.emulator.fail_task(task.task_id, "CANCELED", "canceled by the user")
    wait_for(lambda: (utcnow() - task.fault_since).total_seconds() > 3.5, timeout=10)
    kit.start()
    kit.wait_jobs(jobs[:1] + jobs[2:], states.STAGED_IN, timeout=60)
    kit.wait_jobs([jobs[1]], states.FAILED, timeout=30)
    assert all(i.attempts == 0 for i in api.TransferItem.objects.filter(job_id__ne=jobs[1]))
    assert api.TransferItem.objects.get(job_id=jobs[1]).split_round == 2
