"""The emulator's transfer engine: queues tasks like Globus and really copies files.

Like Globus, each user has at most `max_active` tasks running; the rest wait ACTIVE
with nice_status "Queued". Every task has a deadline. A submission id is accepted once.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from balsam_mp.testing.globus_emulator import tree
from balsam_mp.testing.globus_emulator.knobs import DEST_FAULTS, SOURCE_ERRORS, Knobs
from balsam_mp.testing.globus_emulator.paths import PathEscape, resolve
from balsam_mp.testing.globus_emulator.task import Task, TransferEntry
from balsam_mp.transfer.filecopy import copy_atomic, in_sync, make_dirs


class Engine:
    def __init__(self, endpoints: dict[str, Path], knobs: Knobs | None = None) -> None:
        self.endpoints = {ep: Path(root) for ep, root in endpoints.items()}
        # the endpoint table's names, shown in task documents and by get_endpoint
        self.display_names = {ep: f"emulated {ep[:8]}" for ep in endpoints}
        self.knobs = knobs or Knobs()
        self.tasks: dict[str, Task] = {}
        self.by_submission: dict[str, str] = {}
        self.submissions: list[dict] = []  # every accepted POST /transfer, for assertions
        self.lock = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="emulator-task")
        self._running: dict[str, int] = {}
        self._unfinished: dict[str, Task] = {}  # what the scheduler looks at
        self._stopping = False
        self._scheduler = threading.Thread(target=self._schedule_loop, daemon=True,
                                           name="emulator-scheduler")
        self._scheduler.start()

    def close(self) -> None:
        with self.lock:
            self._stopping = True
            for task in self.tasks.values():
                task.cancelled.set()
            self.lock.notify_all()
        self._scheduler.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- submission -----------------------------------------------------------------

    def submit(self, task: Task) -> tuple[Task, bool]:
        """Queue a task; a repeated submission id returns the original (True = duplicate)."""
        with self.lock:
            original = self.by_submission.get(task.submission_id)
            record = {"submission_id": task.submission_id, "duplicate": original is not None,
                      "task_id": original or task.task_id, "label": task.label,
                      "items": [(e.source_path, e.destination_path) for e in task.entries],
                      "unfinished_before": sum(1 for t in self._unfinished.values()
                                               if t.owner == task.owner and not t.finished)}
            self.submissions.append(record)
            if original is not None:
                return self.tasks[original], True
            self.tasks[task.task_id] = task
            self._unfinished[task.task_id] = task
            self.by_submission[task.submission_id] = task.task_id
            self.lock.notify_all()
            return task, False

    def unfinished_count(self, owner: str) -> int:
        with self.lock:
            return sum(1 for t in self._unfinished.values() if t.owner == owner and not t.finished)

    # -- control --------------------------------------------------------------------

    def cancel(self, task: Task) -> bool:
        with self.lock:
            if task.finished:
                return False
            task.cancelled.set()
            task.finish("FAILED", {"code": "CANCELED", "description": "canceled by the user"})
            self.lock.notify_all()
            return True

    def set_inactive(self, task: Task, inactive: bool, reason: str = "CREDENTIALS") -> None:
        with self.lock:
            if task.finished:
                return
            task.status = "INACTIVE" if inactive else "ACTIVE"
            task.nice_status = reason if inactive else "OK"
            task.event("PAUSED" if inactive else "RESUMED", f"task {task.status.lower()}")
            self.lock.notify_all()

    def fail(self, task: Task, code: str, description: str) -> None:
        with self.lock:
            if not task.finished:
                task.cancelled.set()
                task.finish("FAILED", {"code": code, "description": description})
                self.lock.notify_all()

    # -- scheduling -----------------------------------------------------------------

    def _schedule_loop(self) -> None:
        with self.lock:
            while not self._stopping:
                now = time.time()
                for task in list(self._unfinished.values()):
                    if task.finished:
                        del self._unfinished[task.task_id]
                    elif now >= task.deadline:
                        task.cancelled.set()
                        task.finish("FAILED", {"code": "EXPIRED",
                                               "description": "deadline expired"})
                    elif task.started_at is None and task.status == "ACTIVE" and \
                            not task.is_paused and \
                            self._running.get(task.owner, 0) < self.knobs.max_active:
                        self._start(task)
                self.lock.wait(timeout=0.05)

    def _start(self, task: Task) -> None:
        task.started_at = time.time()
        task.nice_status = "OK"
        self._running[task.owner] = self._running.get(task.owner, 0) + 1
        task.event("STARTED", "task started")
        knobs = self.knobs
        if knobs.metadata_only and not (knobs.startup_delay or knobs.file_overhead):
            self._run(task)  # nothing to wait for: skip the thread hand-off
        else:
            self._pool.submit(self._run, task)

    def _run(self, task: Task) -> None:
        try:
            if self.knobs.startup_delay and task.cancelled.wait(self.knobs.startup_delay):
                return
            for entry in task.entries:
                if not self._wait_while_inactive(task):
                    return
                self._transfer(task, entry)
                if task.finished:
                    return
            with self.lock:
                if not task.finished:
                    task.finish("SUCCEEDED")
        except Exception as exc:  # never leave a task ACTIVE forever
            with self.lock:
                if not task.finished:
                    task.finish("FAILED", {"code": "ENDPOINT_ERROR", "description": str(exc)})
        finally:
            with self.lock:
                self._running[task.owner] -= 1
                self.lock.notify_all()

    def _wait_while_inactive(self, task: Task) -> bool:
        """Between items: wait while INACTIVE or paused by an administrator. A task that
        waits stops working, so its slot goes to a queued task ("Additional tasks will be
        queued until other tasks stop working due to completion, pausing, or backing off
        from an error": Globus' Task Behavior, Queuing); when it may go on, it queues for
        a slot again."""
        def held() -> bool:
            return (task.status == "INACTIVE" or task.is_paused) and not task.cancelled.is_set()

        with self.lock:
            if not held():
                return not task.finished
            self._running[task.owner] -= 1
            self.lock.notify_all()
            while held():
                self.lock.wait(timeout=0.1)
            while not task.cancelled.is_set() and \
                    self._running.get(task.owner, 0) >= self.knobs.max_active:
                task.nice_status = "Queued"
                self.lock.wait(timeout=0.1)
            self._running[task.owner] = self._running.get(task.owner, 0) + 1
            if task.nice_status == "Queued":
                task.nice_status = "OK"
            return not task.finished

    # -- copying --------------------------------------------------------------------

    def _transfer(self, task: Task, entry: TransferEntry) -> None:
        if self.knobs.metadata_only:
            if self.knobs.file_overhead and task.cancelled.wait(self.knobs.file_overhead):
                return
            with self.lock:
                task.files += 1
                task.files_transferred += 1
                task.subtasks_succeeded += 1
                task.successful.append(_success(entry.source_path, entry.destination_path))
            return
        src_root = self.endpoints[task.source_endpoint]
        dst_root = self.endpoints[task.destination_endpoint]
        try:
            parts, folders = tree.expand(src_root, entry, task.filter_rules)
        except PathEscape as exc:
            return self._source_error(task, entry, "PERMISSION_DENIED", f"{exc} leaves the root")
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            return self._source_error(task, entry, SOURCE_ERRORS[exc.errno], exc.strerror)
        with self.lock:
            task.directories += folders
        for src, relative, folder in parts:
            dst_path = entry.destination_path.rstrip("/") + relative
            try:
                dst = resolve(dst_root, dst_path)
            except PathEscape:
                return self.fail(task, "PERMISSION_DENIED", f"{dst_path} leaves the root")
            try:
                if not self._copy_retrying(task, src, dst, dst_path, folder):
                    return  # cancelled or expired while the destination faulted
            except OSError as exc:
                if exc.filename != str(src):
                    raise
                return self._source_error(  # e.g. unreadable: skipped like a missing file
                    task, entry, SOURCE_ERRORS.get(exc.errno, "FILE_ERROR"), exc.strerror)
        with self.lock:
            task.subtasks_succeeded += 1
            task.successful.append(_success(entry.source_path, entry.destination_path))

    def _copy_retrying(self, task: Task, src: Path, dst: Path, dst_path: str,
                       folder: bool = False) -> bool:
        """Copy one file (or make one folder); a destination error is a fault, retried
        like Globus does: the task stays ACTIVE with the fault in nice_status (and one
        event per try) until the file goes through, or the task is cancelled or expires.
        False if it ended."""
        if not folder:
            with self.lock:
                task.files += 1
        if not folder and self.knobs.file_overhead and \
                task.cancelled.wait(self.knobs.file_overhead):
            return False
        while True:
            try:
                self._make_folder(dst) if folder else self._copy(task, src, dst)
            except OSError as exc:
                if exc.errno not in DEST_FAULTS or exc.filename == str(src):
                    raise
                code, details = DEST_FAULTS[exc.errno], f"{dst_path}: {exc.strerror}"
                with self.lock:
                    task.faults += 1
                    task.nice_status, task.nice_status_details = code, details
                    task.event(code, "Error on the destination; retrying", details, True)
                if task.cancelled.wait(self.knobs.fault_retry) or \
                        not self._wait_while_inactive(task):  # a paused task tries nothing
                    return False
                continue
            with self.lock:
                if task.nice_status_details is not None:
                    task.nice_status, task.nice_status_details = "OK", None
            return True

    @staticmethod
    def _make_folder(dst: Path) -> None:
        make_dirs(dst)
        if not dst.is_dir():  # a file in the way
            raise FileExistsError(errno.EEXIST, "File exists", str(dst))

    def _copy(self, task: Task, src: Path, dst: Path) -> None:
        if in_sync(src, dst, task.sync_level):
            with self.lock:
                task.files_skipped += 1
            return
        if self.knobs.disk_full:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        started = time.monotonic()
        size = copy_atomic(src, dst, task.task_id[:8], verify=task.verify_checksum)
        if task.preserve_timestamp:
            info = src.stat()
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
        if self.knobs.bandwidth:
            task.cancelled.wait(max(0.0, size / self.knobs.bandwidth
                                    - (time.monotonic() - started)))
        with self.lock:
            task.files_transferred += 1
            task.bytes_transferred += size
            task.bytes_checksummed += size if task.verify_checksum else 0

    def _source_error(self, task: Task, entry: TransferEntry, code: str, details: str) -> None:
        if not task.skip_source_errors:
            return self.fail(task, code, f"{entry.source_path}: {details}")
        with self.lock:
            task.subtasks_skipped_errors += 1
            task.skipped.append({
                "DATA_TYPE": "skipped_error", "source_path": entry.source_path,
                "destination_path": entry.destination_path, "error_code": code,
                "error_details": details, "error_time": task.request_time,
                "is_directory": bool(entry.recursive) or code == "IS_A_DIRECTORY",
                "is_delete_destination_extra": False,
            })


def _success(source: str, destination: str) -> dict[str, str]:
    return {"DATA_TYPE": "successful_transfer", "source_path": source,
            "destination_path": destination}
