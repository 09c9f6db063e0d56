"""One location's trouble stays its own (issue 20): a task keeps the backend it was sent
with, whatever settings.yml says later."""

from __future__ import annotations

import os

import pytest

from balsam_mp.api import Job
from tests.conftest import REMOTE_EP, wait_for
from tests.test_interventions_e2e import job_spec, task_of


@pytest.mark.parametrize("change", ["switched", "removed"])
def test_a_task_keeps_the_backend_it_was_sent_with(sitekit, tmp_path, change):
    """Case 3: alias `laptop` is switched from local:// to globus:// (or removed, with
    it every local:// alias) while its local copy runs. The copy finishes and is polled
    where it runs, so the job stages in."""
    root = tmp_path / "laptop"
    (root / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    laptop: local://{root}\n"
                            "  verify_checksum: false\n")  # a FIFO is read once
    os.mkfifo(root / "in" / "slow.dat")
    kit.start()
    [job] = Job.objects.bulk_create([job_spec("slow", "laptop:/in/slow.dat")])
    task = task_of(job.id)
    wait_for(lambda: Job.objects.get(id=job.id).state == "READY" and
             task.__class__.objects.get(id=task.id).state == "active",
             what="the local copy to run")
    settings = kit.site / "settings.yml"
    settings.write_text(settings.read_text().replace(
        f"    laptop: local://{root}\n",
        f"    laptop: globus://{REMOTE_EP}\n" if change == "switched" else ""))
    kit.balsam("site", "sync")
    with open(root / "in" / "slow.dat", "w") as writer:  # the copy reads and finishes
        writer.write("slow input")
    kit.wait_jobs([job.id], "STAGED_IN", timeout=30)
    assert (kit.site / "data/slow/input.dat").read_text() == "slow input"
