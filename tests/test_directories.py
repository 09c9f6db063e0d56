"""Folders as Globus treats them, the same on both backends (the emulator and local).

Documented by Globus (`globus transfer` reference; globus-sdk's TransferData): a
source folder's contents go inside the destination folder, which is made with its
missing parents; empty folders are made too. Not documented, so as `cp` does: a
folder named by an item that is not recursive is refused (IS_A_DIRECTORY, that item
only), and a recursive item naming a file copies the file.
"""

from __future__ import annotations

import os

import globus_sdk

from balsam_mp.transfer.base import FileSpec
from tests.conftest import REMOTE_EP, SITE_EP, wait_for
from tests.test_backends import rig  # noqa: F401 (the fixture: globus and local)
from tests.test_emulator import client


def tree(root) -> set[str]:
    """Every file and folder under root, relative, folders ending with '/'."""
    found = set()
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        found.update(os.path.normpath(os.path.join(relative, d)) + "/" for d in dirs)
        found.update(os.path.normpath(os.path.join(relative, f)) for f in files)
    return found


def test_a_recursive_item_makes_its_empty_folders(rig):  # noqa: F811
    rig.remote("src/empty").mkdir(parents=True)
    rig.remote("src/deep/er/est").mkdir(parents=True)
    rig.remote("src/deep/f.dat").write_text("f")
    rig.remote("only_empty").mkdir()
    dest = rig.site_root / "data/j"
    task_id = rig.submit("in", [FileSpec("/src", str(dest / "tree"), recursive=True),
                                FileSpec("/only_empty", str(dest / "nothing"), recursive=True)])
    assert rig.finish(task_id).status == "SUCCEEDED"
    assert rig.backend.failures(task_id, "in") == []
    assert tree(dest) == {"tree/", "tree/empty/", "tree/deep/", "tree/deep/er/",
                          "tree/deep/er/est/", "tree/deep/f.dat", "nothing/"}


def test_a_folder_named_without_recursive_fails_only_its_item(rig):  # noqa: F811
    rig.remote("folder/x.dat").write_text("x")
    rig.remote("file.dat").write_text("y")
    dest = rig.site_root / "data/k"
    task_id = rig.submit("in", [FileSpec("/folder", str(dest / "folder")),
                                FileSpec("/file.dat", str(dest / "file.dat"), recursive=True)])
    assert rig.finish(task_id).status == "SUCCEEDED"
    [failure] = rig.backend.failures(task_id, "in")
    assert (failure.src, failure.code) == ("/folder", "IS_A_DIRECTORY")
    assert tree(dest) == {"file.dat"}  # a recursive item naming a file: copied, as cp -r


def test_a_file_in_the_way_of_an_empty_folder(rig):  # noqa: F811
    """Globus retries a destination fault until the deadline (the site gives up after
    fault_timeout); the local backend fails that item at once: both never overwrite."""
    rig.remote("src/empty").mkdir(parents=True)
    dest = rig.site_root / "data/m/tree"
    dest.mkdir(parents=True)
    (dest / "empty").write_text("a file, where the folder goes")
    task_id = rig.submit("in", [FileSpec("/src", str(dest), recursive=True)])
    if rig.emulator is None:
        assert rig.finish(task_id).status == "SUCCEEDED"
        [failure] = rig.backend.failures(task_id, "in")
        assert failure.code == "FILE_EXISTS"
    else:
        wait_for(lambda: rig.backend.poll([task_id])[task_id].fault == "FILE_EXISTS",
                 what="the fault")
        rig.backend.cancel(task_id)
    assert (dest / "empty").read_text() == "a file, where the folder goes"


def test_globus_detects_the_type_without_recursive_and_counts_folders(emulator,
                                                                     endpoint_dirs):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    (remote / "t/a/b").mkdir(parents=True)
    (remote / "t/a/f.dat").write_text("f")
    (remote / "g.dat").write_text("g")
    tc = client(emulator)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP)
    data.add_item("/t", "/x/t")  # recursive absent: Globus detects a folder
    data.add_item("/g.dat", "/x/g.dat")
    task_id = tc.submit_transfer(data)["task_id"]
    wait_for(lambda: tc.get_task(task_id)["status"] == "SUCCEEDED", what="the task")
    task = tc.get_task(task_id)
    assert (task["files"], task["directories"]) == (2, 3)
    assert tree(site / "x") == {"t/", "t/a/", "t/a/b/", "t/a/f.dat", "g.dat"}


def test_filter_rules_and_preserve_timestamp_are_applied(emulator, endpoint_dirs):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    for name in ("keep.txt", "skip.tmp", "cache/inner.txt", "sub/keep.tmp", "sub/a.txt"):
        (remote / "t" / name).parent.mkdir(parents=True, exist_ok=True)
        (remote / "t" / name).write_text(name)
    os.utime(remote / "t/keep.txt", (1_000_000_000, 1_000_000_000))
    tc = client(emulator)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP, preserve_timestamp=True)
    data.add_filter_rule("keep.tmp", method="include", type="file")  # the first match wins
    data.add_filter_rule("*.tmp", type="file")
    data.add_filter_rule("cache", type="dir")  # and all it holds
    data.add_item("/t", "/x", recursive=True)
    task_id = tc.submit_transfer(data)["task_id"]
    wait_for(lambda: tc.get_task(task_id)["status"] == "SUCCEEDED", what="the task")
    assert tree(site / "x") == {"keep.txt", "sub/", "sub/keep.tmp", "sub/a.txt"}
    assert (site / "x/keep.txt").stat().st_mtime == 1_000_000_000
