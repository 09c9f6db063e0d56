"""Job creation is all or nothing, folders included, whatever kills it and whoever races it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path, PurePosixPath

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balsam_mp import api
from balsam_mp.api.jobs import _undo
from balsam_mp.api.paths import Folders, overlap
from balsam_mp.errors import ValidationError
from tests.conftest import wait_for

CREATE = """
import sys
from balsam_mp import api
api.use_site(sys.argv[1])
prefix, count = sys.argv[2], int(sys.argv[3])
api.Job.objects.bulk_create([{"app": "MySim", "workdir": f"{prefix}/{n}",
                              "transfers": {"input_file": f"laptop:/in/{n}"}}
                             for n in range(count)])
"""


def folders_of(data: Path, prefix: str) -> set[str]:
    try:
        return {f"{prefix}/{name}" for name in os.listdir(data / prefix)}
    except FileNotFoundError:
        return set()


def test_kill_9_mid_bulk_create_leaves_no_job_without_its_folder(site):
    """Kill a creating process at several points: while it makes folders, once all are
    made (it is committing), and let one finish; every committed job has its folder."""
    data, count = site.data_path, 4000
    orphans = 0
    for round_, made in enumerate((1, count // 3, 2 * count // 3, count, count)):
        prefix = f"r{round_}"
        child = subprocess.Popen([sys.executable, "-c", CREATE, str(site.site_path), prefix,
                                  str(count)], stderr=subprocess.PIPE)
        def reached(prefix=prefix, made=made, child=child) -> bool:
            return len(folders_of(data, prefix)) >= made or child.poll() is not None

        wait_for(reached, timeout=60, interval=0.001, what=f"{made} folders")
        child.send_signal(signal.SIGKILL)
        child.wait()
        jobs = {j.workdir for j in api.Job.objects.filter(workdir__gte=f"{prefix}/",
                                                            workdir__lt=f"{prefix}0")}
        assert len(jobs) in (0, count)  # one transaction
        assert jobs <= folders_of(data, prefix)  # no job without its folder
        orphans += not jobs and bool(folders_of(data, prefix))
    assert orphans >= 3  # the kills did land mid-way
    # a killed creation can simply be run again: the folders it left are taken as they are
    rerun = subprocess.run([sys.executable, "-c", CREATE, str(site.site_path), "r1",
                            str(count)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert api.Job.objects.filter(workdir__gte="r1/", workdir__lt="r10").count() == count


def test_a_folder_that_fails_mid_batch_removes_the_ones_made_before(site):
    data = site.data_path
    (data / "plain").write_text("a file where a folder should go")
    (data / "kept").mkdir()
    jobs = [{"app": "MySim", "workdir": w, "transfers": {"input_file": "laptop:/a"}}
            for w in ("new/a/1", "new/b/2", "kept", "plain/x", "new/c/3")]
    try:
        api.Job.objects.bulk_create(jobs)
        raise AssertionError("created")
    except ValidationError as exc:
        assert "job 3 ('plain/x')" in str(exc) and "Not a directory" in str(exc)
    assert sorted(p.name for p in data.iterdir()) == ["kept", "plain"]  # new/ is gone
    assert api.Job.objects.count() == 0


def test_undo_keeps_a_folder_another_process_committed_a_job_on(site):
    data = site.data_path
    mine = Folders()
    mine.make("job", f"{data}/shared/w")
    mine.make("job", f"{data}/alone")
    # another creator found shared/w made by us, and committed its job first
    api.Job.objects.create(app="MySim", workdir="shared/w",
                           transfers={"input_file": "laptop:/a"})
    _undo(mine, data)
    assert (data / "shared" / "w").is_dir() and not (data / "alone").exists()


def test_a_found_folder_removed_meanwhile_is_made_again_before_commit(site):
    data = site.data_path
    (data / "pre").mkdir()
    folders = Folders()
    folders.make("job", f"{data}/pre")
    assert folders.made == [] and folders.found == [f"{data}/pre"]
    (data / "pre").rmdir()  # another creator undoing its work
    folders.recheck_found()
    assert (data / "pre").is_dir()


paths = st.lists(st.sampled_from("ab"), min_size=1, max_size=4).map(
    lambda parts: PurePosixPath(*parts))


@given(st.dictionaries(st.sampled_from("stuvwxyz"), paths, max_size=6))
def test_overlap_finds_a_clash_exactly_when_there_is_one(named):
    def inside(a: PurePosixPath, b: PurePosixPath) -> bool:
        return b.parts[:len(a.parts)] == a.parts

    clash = any(inside(a, b) or inside(b, a)
                for x, a in named.items() for y, b in named.items() if x < y)
    found = overlap(named)
    assert (found is not None) == clash
    if found:
        a, b = (named[n] for n in found)
        assert inside(a, b) or inside(b, a)


def test_a_workdir_2000_levels_deep_is_made(site):
    deep = "/".join(["a"] * 2000)
    try:
        job = api.Job.objects.create(app="MySim", workdir=deep,
                                     transfers={"input_file": "laptop:/x"})
        assert (site.data_path / deep).is_dir() and job.workdir.as_posix() == deep
    finally:  # pytest's own clean-up (shutil.rmtree) recurses once per level: too deep
        subprocess.run(["rm", "-rf", str(site.data_path / "a")], check=True)


workdirs = st.lists(st.sampled_from(["a", "b", "/", ".", "..", "\0", "é", "\udcff", "n" * 130]),
                    max_size=12).map("".join)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(workdir=workdirs)
def test_any_workdir_is_created_inside_data_or_refused_leaving_nothing(site, workdir):
    data = site.data_path
    before = sorted(str(p) for p in data.rglob("*"))
    count = api.Job.objects.count()
    try:
        job = api.Job.objects.create(app="MySim", workdir=workdir,
                                     transfers={"input_file": "laptop:/x"})
    except ValidationError:
        assert sorted(str(p) for p in data.rglob("*")) == before
        assert api.Job.objects.count() == count
        return
    folder = (data / job.workdir).resolve()
    assert folder.is_dir() and data.resolve() in folder.parents
    assert api.Job.objects.count() == count + 1
