"""python -m balsam_mp.transfer.local_runner TASK_DIR: run one local transfer task.

Forks and detaches at once (the caller only waits for the fork). An exclusive lock on
the task folder means two runners never copy the same task; a task with result.json is
never run again. Every error that belongs to one file fails only that file's item.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from balsam_mp.transfer.filecopy import (
    SYNC_LEVELS,
    copy_atomic,
    in_sync,
    make_dirs,
    partial_path,
)
from balsam_mp.transfer.local import (
    PARTIAL,
    commit_lock,
    read_json,
    remove_partial,
    write_json,
)
from balsam_mp.transfer.localfiles import FileError, Pair, Root, TaskError, file_error, plan

PROGRESS_EVERY = 0.2  # seconds between progress.json writes


class Cancelled(Exception):
    pass


class Runner:
    def __init__(self, task_dir: Path, spec: dict) -> None:
        self.task_dir, self.tag = task_dir, task_dir.name[:8]
        self.options, self.inbound = spec["options"], spec["direction"] == "in"
        level = self.options["sync_level"]
        self.level = SYNC_LEVELS.get(level) if level else None
        # both roots resolved once: SITE/data may itself be a symlink to scratch
        self.roots = Root.of(spec["root"]), Root.of(spec.get("site_root") or "/")
        self.files: list[dict] = spec["files"]
        self.state = {"status": "ACTIVE", "nice_status": "OK", "files": 0,
                      "files_transferred": 0, "files_skipped": 0, "bytes_transferred": 0,
                      "skipped_errors": 0}
        self.failures: list[dict] = []
        self.started = self.last_write = time.monotonic()

    def checkpoint(self) -> None:
        if (self.task_dir / "cancel").exists():
            raise Cancelled()
        if time.time() > self.options["deadline"]:
            raise TimeoutError("deadline expired")
        if time.monotonic() - self.last_write > PROGRESS_EVERY:
            self.state["bytes_per_second"] = self.rate()
            write_json(self.task_dir / "progress.json", self.state)
            self.last_write = time.monotonic()

    @contextlib.contextmanager
    def unless_cancelled(self) -> Iterator[None]:
        """Around each rename into place: a cancel, however recent, stops it (SIGTERM only
        sets the flag, and a copy may have sat in a blocking read meanwhile)."""
        with commit_lock(self.task_dir):
            if (self.task_dir / "cancel").exists():
                raise Cancelled()
            yield

    def rate(self) -> float:
        return self.state["bytes_transferred"] / max(time.monotonic() - self.started, 1e-6)

    def run(self) -> dict:
        try:
            for root in self.roots:
                root.check_exists()
            # running from now on, not "Queued": a first file may take long to copy
            write_json(self.task_dir / "progress.json", self.state)
            for item in self.files:
                self.checkpoint()
                try:
                    for pair in plan(item, self.inbound, *self.roots):
                        self.checkpoint()
                        self.copy(pair)
                except FileError as exc:
                    self.file_failed(item, exc)
            return dict(self.state, status="SUCCEEDED", nice_status=None,
                        failures=self.failures)
        except Cancelled:
            return dict(self.state, status="FAILED", fatal_code="CANCELED",
                        fatal_error="cancelled")
        except TimeoutError as exc:
            return dict(self.state, status="FAILED", fatal_code="EXPIRED", fatal_error=str(exc))
        except TaskError as exc:
            return dict(self.state, status="FAILED", fatal_code=exc.code, fatal_error=str(exc))

    def copy(self, pair: Pair) -> None:
        if pair.folder:  # as `cp -r` and Globus do: the folder exists, even empty
            try:
                make_dirs(pair.dest)
            except OSError as exc:
                raise file_error(exc, pair.dest_shown) from exc
            if not pair.dest.is_dir():
                raise FileError("FILE_EXISTS", pair.dest_shown, "File exists (not a folder)")
            return
        self.state["files"] += 1
        try:
            if in_sync(pair.src, pair.dest, self.level):
                self.state["files_skipped"] += 1
                return
            # as bytes: a name need not be UTF-8 (Globus copies such names as they are)
            (self.task_dir / PARTIAL).write_bytes(os.fsencode(partial_path(pair.dest, self.tag)))
            self.state["bytes_transferred"] += copy_atomic(
                pair.src, pair.dest, self.tag, verify=self.options["verify_checksum"],
                guard=self.unless_cancelled, keep_mode=True)
        except (OSError, ValueError) as exc:
            on_source = getattr(exc, "filename", None) == str(pair.src)
            raise file_error(exc, pair.src_shown if on_source else pair.dest_shown,
                             source=on_source) from exc
        self.state["files_transferred"] += 1

    def file_failed(self, item: dict, exc: FileError) -> None:
        for root in self.roots:  # a root unmounted meanwhile is every file's trouble
            root.check_exists()
        if exc.source and not self.options["skip_source_errors"]:
            raise TaskError(exc.code, str(exc)) from exc
        self.failures.append({"src": item["src"], "dest": item["dest"], "code": exc.code,
                              "details": str(exc)})
        self.state["skipped_errors"] += 1


def run(task_dir: Path) -> None:
    spec = read_json(task_dir / "spec.json")
    if spec is None or read_json(task_dir / "result.json") is not None:
        return
    remove_partial(task_dir)  # an earlier runner of this task was killed mid-copy
    runner = Runner(task_dir, spec)
    try:
        result = runner.run()
    except Exception as exc:  # a bug must not leave the task to be declared lost later
        result = dict(runner.state, status="FAILED", fatal_code="RUNNER_ERROR",
                      fatal_error=f"{type(exc).__name__}: {exc}")
    remove_partial(task_dir)
    result["bytes_per_second"] = runner.rate()
    write_json(task_dir / "result.json", result)


def main() -> None:
    task_dir = Path(sys.argv[1])
    if os.fork() > 0:
        os._exit(0)  # the caller waits only for this; the child is adopted by init
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(task_dir / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os._exit(0)  # another runner has this task
        me = psutil.Process()
        write_json(task_dir / "runner.json", {"pid": me.pid, "create_time": me.create_time()})
        signal.signal(signal.SIGTERM, lambda *_: (task_dir / "cancel").touch())
        run(task_dir)
    os._exit(0)


if __name__ == "__main__":
    main()
