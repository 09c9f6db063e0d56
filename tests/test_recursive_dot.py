"""Recursive `local_path: "."` as in Balsam, with real copies by a running site (local
backend): a directory staged in lands as the workdir's contents; a stage-out sends the
whole workdir."""

from __future__ import annotations

from pathlib import Path

from balsam_mp.api import App, Job, TransferItem
from tests.conftest import wait_for


def state_of(job_id: int, state: str):
    return lambda: Job.objects.get(id=job_id).state == state


def test_recursive_dot_in_and_out(running_site, tmp_path):
    site = running_site
    (site.apps_path / "tree.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Tree(ApplicationDefinition):\n"
        "    transfers = {\n"
        "        'inputs': {'direction': 'in', 'local_path': '.', 'recursive': True,\n"
        "                   'required': True},\n"
        "        'outputs': {'direction': 'out', 'local_path': '.', 'recursive': True},\n"
        "    }\n")
    App.sync()
    dataset = tmp_path / "dataset"
    (dataset / "sub").mkdir(parents=True)
    (dataset / "a.dat").write_text("a")
    (dataset / "sub" / "b.dat").write_text("b")
    job = Job(workdir="tree/1", app="Tree",
              transfers={"inputs": {"location_alias": "laptop", "path": dataset},
                         "outputs": f"laptop:{tmp_path}/results/1"})
    job.save()
    assert {i.local_path for i in TransferItem.objects.filter(job_id=job.id)} == {Path(".")}

    wait_for(state_of(job.id, "STAGED_IN"), timeout=30, what="stage-in")
    workdir = site.data_path / job.workdir
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*")) == [
        "a.dat", "sub", "sub/b.dat"]  # the contents, not workdir/dataset/...

    (workdir / "result.txt").write_text("r")
    job.refresh_from_db()
    job.state = "RUN_DONE"
    job.save()
    job.state = "POSTPROCESSED"
    job.save()
    wait_for(state_of(job.id, "JOB_FINISHED"), timeout=30, what="stage-out")
    results = tmp_path / "results" / "1"
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*")) == [
        "a.dat", "result.txt", "sub", "sub/b.dat"]
    assert (results / "sub" / "b.dat").read_text() == "b"
