"""The local backend: every error of one file fails only its item (odd names, a missing
or unreadable file, a folder or a file in the way, a copy killed mid-file leaves no partial
file), and only a root that is gone fails the whole task; the emulator skips an unreadable
file the same way."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balsam_mp.transfer.base import FileSpec, TaskOptions
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import read_json, runner_alive
from tests.conftest import REMOTE_EP, SITE_EP, wait_for
from tests.localbackend import Local, make
from tests.test_backends import globus_client


@pytest.fixture
def local(tmp_path) -> Local:
    return Local.confined(tmp_path)


def test_every_error_of_one_file_fails_only_that_file(local):
    make(local.root / "good.dat", "good")
    make(local.root / "other.dat", "other")
    make(local.data / "blocker", "a regular file where a folder should be")
    make(local.data / "in_the_way/inside.dat")  # a folder where the file should go
    long_name = "n" * 300
    items = {
        "/good.dat": (str(local.data / "g/good.dat"), None),
        "/other.dat": (str(local.data / "blocker/x.dat"), ("NOT_A_DIRECTORY", "FILE_EXISTS")),
        f"/{long_name}": (str(local.data / "long.dat"), ("NAME_TOO_LONG",)),
        "/missing.dat": (str(local.data / "m.dat"), ("FILE_NOT_FOUND",)),
        "/good.dat\0x": (str(local.data / "nul.dat"), ("INVALID_PATH",)),
        "/": (str(local.data / "in_the_way"), ("IS_A_DIRECTORY",)),
    }
    items["/other.dat "] = (str(local.data / "in_the_way"), ("IS_A_DIRECTORY",))
    make(local.root / "other.dat ", "x")
    status, failures = local.run("in", [FileSpec(src, dest) for src, (dest, _) in items.items()])
    assert status.status == "SUCCEEDED" and status.files_transferred == 1
    assert (local.data / "g/good.dat").read_text() == "good"
    for src, (dest, codes) in items.items():
        if codes is None:
            assert src not in failures
            continue
        assert failures[src].code in codes, (src, failures[src])
        named = dest.removeprefix(str(local.data)) if codes == ("NOT_A_DIRECTORY",
                                                                "FILE_EXISTS") else ""
        assert named in failures[src].details
    assert "/good.dat\\0x" in failures["/good.dat\0x"].details


def test_a_root_that_is_gone_fails_the_task(local):
    make(local.root / "a.dat")
    local.root.rename(local.root.with_name("unmounted"))
    status, _ = local.run("in", [FileSpec("/a.dat", str(local.data / "a.dat"))])
    assert (status.status, status.fatal_code) == ("FAILED", "ENDPOINT_ERROR")
    assert str(local.root) in status.fatal_error


def _kill_mid_file(local: Local, sid: str) -> Path:
    """Start a copy from a FIFO, feed it 1.5 MB (one chunk lands in the partial file),
    then SIGKILL the runner. Returns the partial file left behind."""
    os.mkfifo(local.root / "big.dat")
    killed = threading.Event()

    def feed() -> None:  # stays open after 1.5 MB: the copy blocks in its second chunk
        with open(local.root / "big.dat", "wb") as writer:
            writer.write(b"x" * 1_500_000)
            killed.wait(30)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    local.backend.submit("in", str(local.root), [
        FileSpec("/big.dat", str(local.data / "j/big.dat"))], sid, TaskOptions(
        "t", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), sync_level=None,
        verify_checksum=False))
    partial = wait_for(lambda: [p for p in (local.data / "j").glob(".partial-*")
                                if p.stat().st_size > 0] if (local.data / "j").exists()
                       else None, what="a partial file with data")[0]
    os.kill(read_json(local.tasks / sid / "runner.json")["pid"], signal.SIGKILL)
    wait_for(lambda: not runner_alive(local.tasks / sid), what="the runner to die")
    killed.set()
    feeder.join(timeout=5)
    return partial


def test_a_killed_copy_leaves_no_partial_file_when_declared_lost(local):
    sid = str(uuid.uuid4())
    partial = _kill_mid_file(local, sid)
    status = local.backend.poll([sid])[sid]
    assert (status.status, status.fatal_code) == ("FAILED", "RUNNER_LOST")
    assert not partial.exists() and not list(local.data.rglob(".*partial*"))


def test_a_killed_copy_leaves_no_partial_file_when_resumed(local):
    sid = str(uuid.uuid4())
    partial = _kill_mid_file(local, sid)
    (local.root / "big.dat").unlink()
    make(local.root / "big.dat", "now a plain file")
    status, failures = local.run("in", [FileSpec("/big.dat", str(local.data / "j/big.dat"))],
                                 sid)  # the same submission id: the same task, resumed
    assert (status.status, failures) == ("SUCCEEDED", {})
    assert (local.data / "j/big.dat").read_text() == "now a plain file"
    assert not partial.exists() and not list(local.data.rglob(".*partial*"))


KNOWN_CODES = {"FILE_NOT_FOUND", "PERMISSION_DENIED", "NOT_A_DIRECTORY", "IS_A_DIRECTORY",
               "FILE_EXISTS", "NAME_TOO_LONG", "INVALID_PATH"}
odd_name = st.one_of(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(["..", "../..", "/../x", "a\0b", "n" * 256, "x/" * 2100, " ", "\n",
                     "~", "-rf", ".partial-x", "in/..", "//", "\\"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(sources=st.lists(odd_name, min_size=1, max_size=4),
       dests=st.lists(odd_name, min_size=1, max_size=4))
@pytest.mark.parametrize("direction", ["in", "out"])
def test_odd_names_fail_only_their_own_items(local, direction, sources, dests):
    """Whatever the names, the task ends SUCCEEDED: the good file lands, every odd item
    fails alone with a known code, and nothing appears outside the two roots."""
    inbound = direction == "in"
    src_side, dest_side = (local.root, local.data) if inbound else (local.data, local.root)

    def named(side: Path, name: str) -> str:  # remote paths are '/...', site paths absolute
        return f"/{name}" if side == local.root else f"{local.data}/{name}"

    make(src_side / "good.dat", "good")
    before = sorted(local.outside.rglob("*"))
    files = [FileSpec(named(src_side, "good.dat"), named(dest_side, "good/good.dat"))]
    files += [FileSpec(named(src_side, name), named(dest_side, f"odd/{n}.dat"))
              for n, name in enumerate(sources)]
    files += [FileSpec(named(src_side, "good.dat"), named(dest_side, f"odd/{name}"))
              for name in dests]
    status, failures = local.run(direction, files)
    assert status.status == "SUCCEEDED", status
    assert (dest_side / "good/good.dat").read_text() == "good"
    assert {f.code for f in local.backend.failures(status.task_id, direction)} <= KNOWN_CODES
    assert sorted(local.outside.rglob("*")) == before
    assert not [p for p in dest_side.rglob("*")
                if re.fullmatch(r"\.partial-.{8}-[0-9a-f]{16}", p.name)]


def _tree_with_a_socket(folder: Path) -> socket.socket:
    """A folder with a good file and a unix socket, which no one can open() to read."""
    make(folder / "tree/ok.dat", "ok")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "tree/sock"))
    return server


def test_an_unreadable_file_in_a_tree_fails_only_its_item_locally(local):
    with _tree_with_a_socket(local.root):
        make(local.root / "good.dat", "good")
        status, failures = local.run("in", [
            FileSpec("/tree", str(local.data / "t"), recursive=True),
            FileSpec("/good.dat", str(local.data / "good.dat"))])
    assert status.status == "SUCCEEDED" and list(failures) == ["/tree"]
    assert failures["/tree"].code == "FILE_ERROR" and "/tree/sock" in failures["/tree"].details
    assert (local.data / "good.dat").read_text() == "good"


def test_an_unreadable_file_in_a_tree_is_skipped_by_the_emulator(emulator, endpoint_dirs):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(site), "/")
    with _tree_with_a_socket(remote):
        make(remote / "good.dat", "good")
        task_id = backend.submit("in", REMOTE_EP, [
            FileSpec("/tree", str(site / "t"), recursive=True),
            FileSpec("/good.dat", str(site / "good.dat"))], backend.get_submission_id(),
            TaskOptions("t", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)))
        status = wait_for(lambda: (s := backend.poll([task_id])[task_id]).finished and s)
    assert status.status == "SUCCEEDED"
    assert [(f.src, f.code) for f in backend.failures(task_id, "in")] == [("/tree", "FILE_ERROR")]
    assert (site / "good.dat").read_text() == "good"
