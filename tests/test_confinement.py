"""The local backend keeps every path inside its roots, symlinks included (both
directions, files and folders, both roots); the emulator refuses a symlink out of a source
tree too."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from balsam_mp.transfer.base import FileSpec, TaskOptions
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import LocalBackend
from tests.conftest import REMOTE_EP, SITE_EP, wait_for
from tests.localbackend import Local, make
from tests.test_backends import globus_client


@pytest.fixture
def local(tmp_path) -> Local:
    return Local.confined(tmp_path)


def no_file_from(folder: Path, where: Path) -> bool:
    return not any(p.name == "secret.dat" for p in where.rglob("*"))


@pytest.mark.parametrize("link", ["file", "dir"])
def test_stage_in_source_tree_with_a_symlink_leading_out(local, link):
    make(local.root / "tree/ok.dat")
    target = local.outside / ("secret.dat" if link == "file" else "dir")
    os.symlink(target, local.root / "tree" / "evil")
    make(local.root / "good.dat", "good")
    status, failures = local.run("in", [
        FileSpec("/tree", str(local.data / "j1/tree"), recursive=True),
        FileSpec("/good.dat", str(local.data / "j2/good.dat"))])
    assert status.status == "SUCCEEDED"
    assert failures["/tree"].code == "PERMISSION_DENIED"
    assert "/tree/evil" in failures["/tree"].details and "leads outside" in \
        failures["/tree"].details
    assert (local.data / "j2/good.dat").read_text() == "good"
    assert no_file_from(local.outside, local.data)  # nothing of the tree was copied


@pytest.mark.parametrize("link", ["file", "dir"])
def test_stage_out_destination_with_a_symlink_leading_out(local, link):
    make(local.data / "j1/out/sub/x.dat", "x")
    make(local.data / "j1/out/y.dat", "y")
    if link == "dir":  # a folder the recursive destination passes through
        (local.root / "results/j1").mkdir(parents=True)
        os.symlink(local.outside / "dir", local.root / "results/j1/sub")
        dest, shown = "/results/j1", "/results/j1/sub/x.dat"
    else:  # the destination file itself
        (local.root / "results").mkdir()
        os.symlink(local.outside / "secret.dat", local.root / "results/x.dat")
        dest, shown = "/results/x.dat", "/results/x.dat"
    source = local.data / ("j1/out" if link == "dir" else "j1/out/sub/x.dat")
    status, failures = local.run("out", [FileSpec(str(source), dest, recursive=link == "dir")])
    assert status.status == "SUCCEEDED"
    assert failures[dest].code == "PERMISSION_DENIED" and shown in failures[dest].details
    assert sorted(p.name for p in local.outside.rglob("*")) == ["dir", "secret.dat",
                                                                "secret.dat"]
    assert (local.outside / "secret.dat").read_text() == "secret"


@pytest.mark.parametrize("link", ["file", "dir"])
def test_the_site_side_stays_inside_site_data(local, link):
    """Stage-out cannot read, and stage-in cannot write, through a symlink out of data/."""
    make(local.root / "in.dat", "in")
    if link == "file":
        os.symlink(local.outside / "secret.dat", local.data / "leak.dat")
        out = [FileSpec(str(local.data / "leak.dat"), "/leak.dat")]
        into = [FileSpec("/in.dat", str(local.data / "leak.dat"))]
    else:
        os.symlink(local.outside / "dir", local.data / "j1")
        out = [FileSpec(str(local.data / "j1"), "/j1", recursive=True)]
        into = [FileSpec("/in.dat", str(local.data / "j1/new.dat"))]
    status, failures = local.run("out", out)
    assert [f.code for f in failures.values()] == ["PERMISSION_DENIED"]
    assert not list(local.root.rglob("secret.dat"))
    status, failures = local.run("in", into)
    assert [f.code for f in failures.values()] == ["PERMISSION_DENIED"]
    assert "leads outside" in next(iter(failures.values())).details
    assert sorted(p.name for p in local.outside.rglob("*")) == ["dir", "secret.dat",
                                                                "secret.dat"]


def test_a_data_folder_that_is_itself_a_symlink_is_fine(tmp_path):
    scratch, site = tmp_path / "scratch", tmp_path / "site"
    scratch.mkdir(), site.mkdir()
    os.symlink(scratch, site / "data")
    (tmp_path / "root").mkdir()
    make(tmp_path / "root/a.dat", "a")
    local = Local(LocalBackend(tmp_path / "tasks", site / "data"), tmp_path / "root",
                  site / "data", tmp_path / "outside", tmp_path / "tasks")
    status, failures = local.run("in", [FileSpec("/a.dat", str(site / "data/j/a.dat"))])
    assert (status.status, failures) == ("SUCCEEDED", {})
    assert (scratch / "j/a.dat").read_text() == "a"
    status, failures = local.run("out", [FileSpec(str(site / "data/j/a.dat"), "/back.dat")])
    assert (status.status, failures) == ("SUCCEEDED", {})


@pytest.mark.parametrize("link", ["file", "dir"])
def test_the_emulator_refuses_a_symlink_out_of_a_source_tree(emulator, endpoint_dirs, tmp_path,
                                                              link):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    make(tmp_path / "outside/dir/secret.dat", "secret")
    make(remote / "tree/ok.dat")
    os.symlink(tmp_path / "outside" / ("dir/secret.dat" if link == "file" else "dir"),
               remote / "tree/evil")
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(site), "/")
    task_id = backend.submit("in", REMOTE_EP, [FileSpec("/tree", str(site / "t"), True)],
                             backend.get_submission_id(), TaskOptions(
                                 "t", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)))
    wait_for(lambda: backend.poll([task_id])[task_id].finished)
    [failure] = backend.failures(task_id, "in")
    assert failure.code == "PERMISSION_DENIED" and failure.details.startswith("/tree/evil")
    assert str(tmp_path) not in failure.details  # the endpoint's folder stays private
    assert not list(site.rglob("secret.dat"))
