"""Files a hostile (or just unlucky) user leaves for the local backend: names that are not
UTF-8, names of 255 bytes, trees 1,900 folders deep, and a cancel while a copy is stuck."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st

from balsam_mp.api import App, Job, TransferItem
from balsam_mp.db.results import safe_text
from balsam_mp.transfer.base import FileSpec, TaskOptions
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import (
    CANCEL_PATIENCE,
    COMMIT_LOCK,
    LocalBackend,
    read_json,
    runner_alive,
    write_json,
)
from tests.conftest import REMOTE_EP, SITE_EP, wait_for, write_when_read
from tests.localbackend import Local, make
from tests.test_backends import globus_client

BAD = os.fsdecode(b"bad\xff.txt")  # a latin-1 name: not UTF-8
BAD_DIR = os.fsdecode(b"dir\xe9")
OPTIONS = {"label": "t", "sync_level": None, "verify_checksum": False}


@pytest.fixture
def local(tmp_path) -> Local:
    for name in ("root", "site/data"):
        (tmp_path / name).mkdir(parents=True)
    return Local(LocalBackend(tmp_path / "tasks", tmp_path / "site/data"), tmp_path / "root",
                 tmp_path / "site/data", tmp_path / "outside", tmp_path / "tasks")


def options(**changes) -> TaskOptions:
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    return TaskOptions(**{**OPTIONS, "deadline": deadline, **changes})


def partials(folder: Path) -> list[Path]:
    return list(folder.rglob(".partial-*"))


@pytest.mark.parametrize("direction", ["in", "out"])
def test_a_name_that_is_not_utf8_is_copied_as_it_is(local, direction):
    """As Globus does (its API only escapes such names for display): the bytes arrive."""
    src_side, dest_side = (local.root, local.data) if direction == "in" else \
        (local.data, local.root)
    make(src_side / "tree/ok.txt", "ok")
    make(src_side / "tree" / BAD, "latin-1")
    make(src_side / "tree" / BAD_DIR / BAD, "inside")  # a folder of such a name, too
    src = "/tree" if direction == "in" else str(local.data / "tree")
    dest = str(local.data / "j") if direction == "in" else "/j"
    status, failures = local.run(direction, [FileSpec(src, dest, recursive=True)])
    assert (status.status, failures) == ("SUCCEEDED", {})
    assert sorted(os.listdir(os.fsencode(dest_side / "j"))) == [b"bad\xff.txt", b"dir\xe9",
                                                                b"ok.txt"]
    assert (dest_side / "j" / BAD).read_text() == "latin-1"
    assert (dest_side / "j" / BAD_DIR / BAD).read_text() == "inside"


def test_an_error_naming_a_non_utf8_file_fails_its_job_alone(running_site, tmp_path):
    """The error text carries the raw name: it reaches the database escaped, the poller
    goes on, and the innocent job next to it stages in."""
    site = running_site
    (site.apps_path / "tree.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Tree(ApplicationDefinition):\n"
        "    transfers = {'tree': {'direction': 'in', 'local_path': '.', 'recursive': True,\n"
        "                          'required': True}}\n")
    App.sync()
    make(tmp_path / "tree/ok.txt", "ok")
    os.symlink(tmp_path / "gone", tmp_path / "tree" / BAD)  # dangling: FILE_NOT_FOUND
    make(tmp_path / "plain.dat", "plain")
    bad = Job(workdir="bad", app="Tree", transfers={"tree": f"laptop:{tmp_path}/tree"})
    bad.save()
    good = Job(workdir="good", app="MySim",
               transfers={"input_file": f"laptop:{tmp_path}/plain.dat"})
    good.save()
    wait_for(lambda: Job.objects.get(id=good.id).state == "STAGED_IN", timeout=30,
             what="the innocent job to stage in")
    wait_for(lambda: Job.objects.get(id=bad.id).state == "FAILED", timeout=30,
             what="the job with the bad name to fail")
    [item] = TransferItem.objects.filter(job_id=bad.id)
    assert item.error.startswith("FILE_NOT_FOUND") and "/tree/bad\\xff.txt" in item.error
    assert (site.data_path / "good/input.dat").read_text() == "plain"


def test_a_cancelled_copy_stuck_on_a_fifo_never_lands(local):
    """The repro of a silent overwrite: cancel while the runner sits in a blocking read,
    then a new job puts its own input at the same path. The stuck runner is ended
    (CANCEL_PATIENCE after its SIGTERM) with its partial file, so nothing lands later."""
    os.mkfifo(local.root / "fifo.dat")
    sid, dest = str(uuid.uuid4()), local.data / "w/1/input.dat"
    local.backend.submit("in", str(local.root), [FileSpec("/fifo.dat", str(dest))], sid,
                         options())
    wait_for(lambda: (local.tasks / sid / "partial").exists() and runner_alive(
        local.tasks / sid), what="the runner to block on the FIFO")
    local.backend.cancel(sid)
    assert not runner_alive(local.tasks / sid)
    assert read_json(local.tasks / sid / "result.json")["fatal_code"] == "CANCELED"
    assert not partials(local.data)
    make(dest, "NEW")  # the next job's input, staged after the cancel
    with pytest.raises(OSError):  # ENXIO: no one reads the FIFO any more
        os.open(local.root / "fifo.dat", os.O_WRONLY | os.O_NONBLOCK)
    assert dest.read_text() == "NEW"


def test_the_runner_checks_the_cancel_flag_right_before_its_rename(local):
    """The guarantee that holds even when no signal ends the runner (a hung mount keeps
    SIGKILL from taking effect): the flag, set under the commit lock, stops the rename."""
    os.mkfifo(local.root / "fifo.dat")
    sid, dest = str(uuid.uuid4()), local.data / "w/1/input.dat"
    local.backend.submit("in", str(local.root), [FileSpec("/fifo.dat", str(dest))], sid,
                         options())
    wait_for(lambda: (local.tasks / sid / "partial").exists() and runner_alive(
        local.tasks / sid), what="the runner to block on the FIFO")
    (local.tasks / sid / "cancel").touch()  # the flag alone: no SIGTERM, no SIGKILL
    write_when_read(local.root / "fifo.dat", "OLD-STALE-DATA")  # the runner reads on
    wait_for(lambda: not runner_alive(local.tasks / sid), what="the runner to end")
    assert read_json(local.tasks / sid / "result.json")["fatal_code"] == "CANCELED"
    assert not dest.exists() and not partials(local.data)


@pytest.mark.parametrize("landed_first", [1, 20, 40])
def test_nothing_lands_after_cancel_returns(local, landed_first):
    """A cancel that comes mid-copy (files of 1 MB, checksummed: most of the time is in
    flight): the file in flight is not renamed into place. The last source is a FIFO no
    one writes: however late the cancel comes, the copy has not ended."""
    for n in range(60):
        make(local.root / f"many/f{n:03}.dat", "x" * 1_000_000)
    os.mkfifo(local.root / "many/last.fifo")  # copied after the f*.dat (names in order)
    sid, dest = str(uuid.uuid4()), local.data / "j"
    local.backend.submit("in", str(local.root), [FileSpec("/many", str(dest), True)], sid,
                         options(verify_checksum=True))
    wait_for(lambda: dest.is_dir() and len(os.listdir(dest)) >= landed_first, timeout=60,
             interval=0.001, what=f"{landed_first} files to land")
    local.backend.cancel(sid)
    landed = {name for name in os.listdir(dest) if not name.startswith(".partial-")}
    wait_for(lambda: not runner_alive(local.tasks / sid), what="the runner to end")
    assert read_json(local.tasks / sid / "result.json")["fatal_code"] == "CANCELED"
    assert set(os.listdir(dest)) == landed and "last.fifo" not in landed


def test_cancel_ends_a_runner_frozen_mid_rename(local):
    """A runner stopped (SIGSTOP, a hung disk) while it holds the commit lock: cancel
    waits CANCEL_PATIENCE, kills it, and returns; nothing is left to rename later."""
    sid = str(uuid.uuid4())
    (local.tasks / sid).mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (  # stands in for the runner
        "import fcntl, sys, time\n"
        "lock = open(sys.argv[1], 'a'); fcntl.flock(lock, fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(600)"), str(local.tasks / sid / COMMIT_LOCK)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        write_json(local.tasks / sid / "runner.json", {
            "pid": holder.pid, "create_time": psutil.Process(holder.pid).create_time()})
        holder.send_signal(signal.SIGSTOP)
        cancel = threading.Thread(target=local.backend.cancel, args=(sid,), daemon=True)
        cancel.start()
        cancel.join(CANCEL_PATIENCE * 3)
        assert not cancel.is_alive(), "cancel hangs on a frozen runner"
        assert not runner_alive(local.tasks / sid)  # killed (and reaped by the wait)
        assert read_json(local.tasks / sid / "result.json")["fatal_code"] == "CANCELED"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("recursive", [False, True])
def test_a_name_of_255_bytes_is_copied(local, recursive):
    """The partial file's name has a fixed length: it never passes NAME_MAX itself."""
    name = "x" * 240 + "é" * 7 + "y"  # 255 bytes
    make(local.root / "t" / name, "long")
    files = [FileSpec("/t", str(local.data / "j"), True)] if recursive else \
        [FileSpec(f"/t/{name}", str(local.data / "j" / name))]
    status, failures = local.run("in", files)
    assert (status.status, failures) == ("SUCCEEDED", {})
    assert (local.data / "j" / name).read_text() == "long" and not partials(local.data)


DEPTH = 1900  # "d/" * 1900: a path of 3,800 bytes, legal (PATH_MAX is 4,096)


def _deep_tree(top: Path) -> Path:
    """top/d/d/.../d/f, made without recursion; returns the bottom folder."""
    os.mkdir(top)
    folder = top
    for _ in range(DEPTH):
        folder = folder / "d"
        os.mkdir(folder)
    (folder / "f").write_text("bottom")
    return folder


@pytest.fixture
def deep():
    """Folders to remove after the test: pytest's own clean-up (shutil.rmtree) recurses
    once per level, too deep for these trees."""
    made: list[Path] = []
    yield made
    subprocess.run(["rm", "-rf", *map(str, made)], check=True)


def found(folder: Path, name: str) -> list[Path]:
    """Every `name` under folder (find(1): pathlib's rglob recurses once per level)."""
    listed = subprocess.run(["find", str(folder), "-name", name], capture_output=True,
                            text=True, check=True).stdout
    return [Path(line) for line in listed.splitlines()]


@pytest.mark.parametrize("direction", ["in", "out"])
def test_a_tree_1900_folders_deep_is_copied_locally(local, deep, direction):
    src_side, dest_side = (local.root, local.data) if direction == "in" else \
        (local.data, local.root)
    deep += [src_side / "deep", dest_side / "x"]
    bottom = _deep_tree(src_side / "deep")
    os.symlink("../../..", bottom / "loop")  # a loop at the bottom: each folder once
    src = "/deep" if direction == "in" else str(local.data / "deep")
    dest = str(local.data / "x") if direction == "in" else "/x"
    status, failures = local.run(direction, [FileSpec(src, dest, recursive=True)])
    assert (status.status, failures) == ("SUCCEEDED", {})
    copied = dest_side / "x" / bottom.relative_to(src_side / "deep") / "f"
    assert copied.read_text() == "bottom"
    assert found(dest_side / "x", "f") == [copied] and not found(dest_side, ".partial-*")


def test_a_tree_1900_folders_deep_is_copied_by_the_emulator(emulator, endpoint_dirs, deep):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    deep += [remote / "deep", site / "x"]
    bottom = _deep_tree(remote / "deep")
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(site), "/")
    task_id = backend.submit("in", REMOTE_EP, [FileSpec("/deep", str(site / "x"), True)],
                             backend.get_submission_id(), options())
    status = wait_for(lambda: (s := backend.poll([task_id])[task_id]).finished and s,
                      timeout=60)
    assert status.status == "SUCCEEDED" and not backend.failures(task_id, "in")
    assert (site / "x" / bottom.relative_to(remote / "deep") / "f").read_text() == "bottom"


def test_a_tree_failing_part_way_keeps_what_it_copied(local):
    """What docs/troubleshooting.md promises: the item fails with its first bad file's code; the
    files before it (in name order) stay, the ones after it are not copied."""
    make(local.root / "tree/a.dat", "a")
    os.symlink("b", local.root / "tree/b")  # a symlink loop: ELOOP on open
    make(local.root / "tree/c.dat", "c")
    status, failures = local.run("in", [FileSpec("/tree", str(local.data / "j"), True)])
    assert status.status == "SUCCEEDED"
    assert (failures["/tree"].code, failures["/tree"].details.split(":")[0]) == (
        "INVALID_PATH", "/tree/b")
    assert sorted(os.listdir(local.data / "j")) == ["a.dat"]



@given(st.binary(max_size=40))
def test_safe_text_keeps_utf8_and_escapes_the_rest(raw):
    text = safe_text(os.fsdecode(raw))
    text.encode("utf-8")  # SQLite takes it
    assert text == raw.decode("utf-8", "backslashreplace")


any_text = st.lists(st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)),
                    max_size=20).map("".join)  # lone surrogates too (e.g. JSON '\\ud800')


@given(any_text)
def test_safe_text_takes_any_python_string(text):
    safe_text(text).encode("utf-8")
