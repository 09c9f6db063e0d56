"""`balsam job modify` and `balsam job rm`, run as the real command on a real site."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from balsam_mp.api import Job, TransferItem
from tests.sitemoves import claim, finish, stage


def balsam(site, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BALSAM_SITE_PATH=str(site.site_path))
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def jobs(count: int) -> list[int]:
    return [j.id for j in Job.objects.bulk_create([
        Job(workdir=f"e/{n}", app="MySim", transfers={
            "input_file": f"laptop:/in/{n}", "result": f"laptop:/out/{n}"})
        for n in range(count)])]


def states(ids: list[int]) -> list[str]:
    return [Job.objects.get(id=i).state for i in ids]


def test_modify_moves_jobs_through_the_api_rules(site):
    ids = jobs(3)
    stage("in")
    done = balsam(site, "job", "modify", str(ids[0]), str(ids[1]), "--state", "POSTPROCESSED")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"job {ids[0]}: POSTPROCESSED",
                                        f"job {ids[1]}: POSTPROCESSED"]
    assert states(ids) == ["POSTPROCESSED", "POSTPROCESSED", "STAGED_IN"]
    assert TransferItem.objects.filter(job_id=ids[0], direction="out").get().state == "pending"
    assert Job.objects.get(id=ids[0]).events.filter(to_state="POSTPROCESSED").count() == 1


@pytest.mark.parametrize("args, message", [
    (("{0}", "--state", "BOGUS"), "'BOGUS' is not a job state"),
    (("{0}", "--state", "STAGED_OUT"), "cannot move from STAGED_IN to STAGED_OUT"),
    (("{0}", "{1}", "--state", "READY"), "cannot move from STAGED_IN to READY"),
    (("{0}", "999", "--state", "FAILED"), "no job with id 999"),
    (("x1", "--state", "FAILED"), "job id 'x1' is not an id"),
])
def test_modify_refusals_are_one_line_and_change_nothing(site, args, message):
    ids = jobs(2)
    stage("in")
    result = balsam(site, "job", "modify", *(a.format(*ids) for a in args))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert states(ids) == ["STAGED_IN", "STAGED_IN"]


def test_rm_deletes_jobs_and_refuses_jobs_in_flight(site):
    ids = jobs(3)
    task = claim("in", limit=1)  # the first job's input is in flight
    refused = balsam(site, "job", "rm", "-y", str(ids[0]), str(ids[1]))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert f"cancel it first (`balsam transfer cancel {task.task_id}`)" in refused.stderr
    assert Job.objects.count() == 3  # all or none
    removed = balsam(site, "job", "rm", "-y", str(ids[1]), str(ids[2]))
    assert removed.returncode == 0 and removed.stdout.strip() == "deleted 2 job(s)"
    assert [j.id for j in Job.objects.all()] == [ids[0]]
    assert TransferItem.objects.filter(job_id=[ids[1], ids[2]]).count() == 0
    assert (site.data_path / "e/1").is_dir()  # the files stay
    missing = balsam(site, "job", "rm", "-y", "77")
    assert missing.returncode == 1 and "no job with id 77" in missing.stderr
    finish(task.task_id)
    assert balsam(site, "job", "rm", "-y", str(ids[0])).returncode == 0
    assert Job.objects.count() == 0
