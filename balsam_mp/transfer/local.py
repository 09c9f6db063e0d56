"""The local backend: copies on this machine, no account needed (`local://` aliases).

Each task is a folder under `state_dir` named by its submission id (which is also its
task id). The copy runs in a detached process (`local_runner`), so a worker restart
does not kill it; its progress and result are JSON files written atomically, so status
survives any restart. Creating the folder is the exactly-once step: a second submit of
the same id finds it and only restarts a runner that died before it finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import psutil

from balsam_mp.transfer.base import (
    FileFailure,
    FileSpec,
    PermanentError,
    TaskOptions,
    TaskStatus,
    TransferBackend,
)
from balsam_mp.transfer.filecopy import PARTIAL_DIGITS, PARTIAL_PREFIX

START_GRACE = 30.0  # seconds a new task may go without a runner before it counts as lost
# A finished task's folder is kept this long (seconds), as Globus keeps its task history:
# a resubmission of its id, which it answers, comes within a claim lease, not days later.
KEEP_FINISHED = 7 * 86400
PRUNE_EVERY = 3600.0  # seconds between two looks for folders to remove
PARTIAL = "partial"  # in a task folder: the partial file its runner is writing, if any
COMMIT_LOCK = "commit.lock"  # held to rename a copy into place, or to cancel
CANCEL_PATIENCE = 5.0  # seconds a cancel waits for a rename, then for a killed runner to die


def write_json(path: Path, data: object) -> None:
    partial = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def remove_partial(task_dir: Path) -> None:
    """Remove the partial file a runner killed mid-copy left behind (its name is kept in
    the task folder before each copy), so no `.partial-*` outlives its task."""
    try:  # as bytes: a name need not be UTF-8
        partial = Path(os.fsdecode((task_dir / PARTIAL).read_bytes()))
    except OSError:
        return
    # a record cut short by a kill must never name another file
    tag = re.escape(f"{PARTIAL_PREFIX}{task_dir.name[:8]}-")
    if re.fullmatch(f"{tag}[0-9a-f]{{{PARTIAL_DIGITS}}}", partial.name):
        with contextlib.suppress(OSError):  # e.g. a name too long: it was never created
            partial.unlink(missing_ok=True)
    (task_dir / PARTIAL).unlink(missing_ok=True)


@contextlib.contextmanager
def commit_lock(task_dir: Path, patience: float | None = None) -> Iterator[None]:
    """The task's lock around a rename into place and around a cancel: once cancel()
    returns, its runner renames nothing more (a later job may own the workdir by then).
    TimeoutError if it stays held over `patience` seconds (a holder frozen mid-rename)."""
    # 0600: a lock file another user could open is a lock they could take
    with os.fdopen(os.open(task_dir / COMMIT_LOCK, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           0o600), "a") as lock:
        deadline = None if patience is None else time.monotonic() + patience
        while True:  # released when closed, or when its holder dies
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() > deadline:
                    raise TimeoutError(f"{task_dir.name}: commit lock held") from None
                time.sleep(0.01)
        yield


def runner_alive(task_dir: Path) -> bool:
    """True if the task's runner process is still the one that wrote runner.json."""
    runner = read_json(task_dir / "runner.json")
    if runner is None:
        return False
    try:
        process = psutil.Process(runner["pid"])
        return process.create_time() == runner["create_time"] and \
            process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_runner(task_dir: Path, gently: bool = False) -> None:
    """SIGKILL (SIGTERM if gently) the task's runner and wait CANCEL_PATIENCE at most
    for it to be gone."""
    runner = read_json(task_dir / "runner.json")
    if runner is None or not runner_alive(task_dir):
        return
    with contextlib.suppress(psutil.Error):  # TimeoutExpired included
        process = psutil.Process(runner["pid"])
        if gently:
            process.terminate()
        else:
            process.kill()
        process.wait(CANCEL_PATIENCE)


def stop_runner(task_dir: Path) -> None:
    """Once the cancel flag is set: SIGTERM (it ends at its next file), then SIGKILL a
    runner still there, e.g. stuck in a blocking read (a FIFO, a hung mount) whose
    partial file would otherwise sit in a workdir a new job may own by then."""
    kill_runner(task_dir, gently=True)
    kill_runner(task_dir)


class LocalBackend(TransferBackend):
    def __init__(self, state_dir: Path, site_root: Path | None = None) -> None:
        self.state_dir = state_dir
        self.site_root = site_root  # the site's own paths must resolve inside it
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o700)  # the site's own: its tasks name every job's files
        self.pruned_at: float | None = None  # time.monotonic() of the last prune

    def prune(self) -> int:
        """Remove the folders of tasks that finished over KEEP_FINISHED ago; how many."""
        removed = 0
        for task_dir in self.state_dir.iterdir():
            try:
                finished_at = (task_dir / "result.json").stat().st_mtime
            except (FileNotFoundError, NotADirectoryError):
                continue  # not finished (or not a task folder)
            if time.time() - finished_at > KEEP_FINISHED and not runner_alive(task_dir):
                shutil.rmtree(task_dir, ignore_errors=True)
                removed += 1
        self.pruned_at = time.monotonic()
        return removed

    def get_submission_id(self) -> str:
        return str(uuid.uuid4())

    def submit(self, direction: str, remote_address: str, files: list[FileSpec],
               submission_id: str, options: TaskOptions) -> str:
        if not files:
            raise PermanentError("refusing to submit an empty batch")
        if not all(c.isalnum() or c == "-" for c in submission_id):
            raise PermanentError(f"bad submission id {submission_id!r}")
        if self.pruned_at is None or time.monotonic() - self.pruned_at > PRUNE_EVERY:
            self.prune()
        task_dir = self.state_dir / submission_id
        spec = {"direction": direction, "root": remote_address or "/",
                "site_root": str(self.site_root) if self.site_root else None,
                "files": [asdict(f) for f in files], "submitted": time.time(),
                "options": dict(asdict(options), deadline=options.deadline.timestamp())}
        try:
            task_dir.mkdir()
        except FileExistsError:  # same submission id: never a second task
            if read_json(task_dir / "spec.json") is None:
                write_json(task_dir / "spec.json", spec)
        else:
            write_json(task_dir / "spec.json", spec)
        if read_json(task_dir / "result.json") is None and not runner_alive(task_dir):
            self._launch(task_dir)
        return submission_id

    def _launch(self, task_dir: Path) -> None:
        # a dead runner's record would make the new one look lost before it starts:
        # until the new one writes its own, the task counts as starting (START_GRACE)
        (task_dir / "runner.json").unlink(missing_ok=True)
        (task_dir / "launched").touch()
        # the runner forks and detaches; this returns once the intermediate parent exits
        subprocess.run([sys.executable, "-m", "balsam_mp.transfer.local_runner", str(task_dir)],
                       check=True, stdin=subprocess.DEVNULL)

    def poll(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        found = {}
        for task_id in task_ids:
            try:
                status = self._poll_one(self.state_dir / task_id)
            except (OSError, ValueError, TypeError, KeyError):
                continue  # an unreadable task folder: unknown, lost once past its deadline
            if status is not None:
                found[task_id] = status
        return found

    def _poll_one(self, task_dir: Path) -> TaskStatus | None:
        spec = read_json(task_dir / "spec.json")
        if spec is None:
            return None
        state = read_json(task_dir / "result.json") or read_json(task_dir / "progress.json")
        if state is None or state.get("status") not in ("SUCCEEDED", "FAILED"):
            state = self._unfinished(task_dir, spec, state)
        state = state or {"status": "ACTIVE", "nice_status": "Queued"}
        fields = TaskStatus.__dataclass_fields__
        return TaskStatus(task_id=task_dir.name, **{
            k: v for k, v in state.items() if k in fields and k != "task_id"})

    def _unfinished(self, task_dir: Path, spec: dict, state: dict | None) -> dict | None:
        """A task without a result: running, starting, or lost. Lost only when its runner
        is gone AND a fresh read still finds no result: a runner writes result.json,
        then exits, possibly between our first read and our look at the process."""
        started = (task_dir / "runner.json").exists()
        try:
            launched = (task_dir / "launched").stat().st_mtime
        except FileNotFoundError:
            launched = spec["submitted"]
        if runner_alive(task_dir) or not (started or time.time() - launched > START_GRACE):
            return state
        result = read_json(task_dir / "result.json")
        if result is not None:
            return result
        remove_partial(task_dir)
        return {"status": "FAILED", "fatal_code": "RUNNER_LOST",
                "fatal_error": "the copy process died before it finished"}

    def failures(self, task_id: str, direction: str) -> list[FileFailure]:
        result = read_json(self.state_dir / task_id / "result.json") or {}
        return [FileFailure(**f) for f in result.get("failures", [])]

    def cancel(self, task_id: str) -> None:
        task_dir = self.state_dir / task_id
        if not task_dir.is_dir():
            raise PermanentError(f"no local transfer task {task_id}")
        try:
            with commit_lock(task_dir, CANCEL_PATIENCE):
                (task_dir / "cancel").touch()
        except TimeoutError:  # its runner froze mid-rename (SIGSTOP, a hung disk): end it
            kill_runner(task_dir)
            (task_dir / "cancel").touch()
        stop_runner(task_dir)
        if read_json(task_dir / "result.json") is None:  # it died without a word
            remove_partial(task_dir)
            write_json(task_dir / "result.json", {
                "status": "FAILED", "fatal_code": "CANCELED", "fatal_error": "cancelled"})
