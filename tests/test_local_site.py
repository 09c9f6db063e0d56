"""A site on the local backend alone: no good job ever fails (no false RUNNER_LOST)."""

from __future__ import annotations

import datetime as dt
import uuid

from balsam_mp import api, states
from balsam_mp.transfer.base import FileSpec, TaskOptions
from balsam_mp.transfer.local import LocalBackend


def test_hundreds_of_tiny_tasks_and_no_good_job_fails(local_site):
    # one task per job, no retries: a single task wrongly declared lost fails its job
    site = local_site(transfers="  max_retries: 0\n  transfer_batch_size: 1\n"
                                "  max_concurrent_transfers: 20\n")
    jobs = site.make_jobs(300)
    site.balsam("site", "start")
    site.wait_jobs(jobs, states.STAGED_IN, timeout=240)
    assert api.Job.objects.filter(state=states.FAILED).count() == 0
    assert api.TransferTask.objects.filter(state="succeeded").count() == 300
    for n in (0, 150, 299):
        workdir = site.site / "data" / "job" / str(n)
        assert (workdir / "input.dat").read_text() == f"input of job{n}"


def test_polling_while_runners_finish_never_reports_a_task_lost(tmp_path):
    """The race behind false RUNNER_LOST: a runner writes result.json and exits between
    the poll's read of the result and its look at the process. Polled without pause."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.dat").write_text("tiny")
    backend = LocalBackend(tmp_path / "tasks", tmp_path / "data")
    (tmp_path / "data").mkdir()
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    options = TaskOptions("race", deadline, sync_level=None)
    verdicts: dict[str, str] = {}
    for batch in range(10):
        ids = [backend.submit("in", str(root), [FileSpec(
            "/f.dat", str(tmp_path / "data" / f"{batch}-{n}"))], str(uuid.uuid4()), options)
            for n in range(30)]
        unfinished = set(ids)
        while unfinished:
            for task_id, status in backend.poll(sorted(unfinished)).items():
                if status.finished:
                    verdicts[task_id] = status.fatal_code or status.status
                    unfinished.discard(task_id)
    assert set(verdicts.values()) == {"SUCCEEDED"}
