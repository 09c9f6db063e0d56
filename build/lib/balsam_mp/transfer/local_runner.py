"""python -m balsam_mp.transfer.local_runner TASK_DIR: run one local transfer task.

Forks and detaches at once (the caller only waits for the fork). An exclusive lock on
the task folder means two runners never copy the same task; a task with result.json is
never run again.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from balsam_mp.transfer.filecopy import SYNC_LEVELS, copy_atomic, in_sync, walk_files
from balsam_mp.transfer.local import read_json, write_json

PROGRESS_EVERY = 0.2  # seconds between progress.json writes


class Cancelled(Exception):
    pass


def resolve_remote(root: str, path: str) -> Path:
    """A remote path inside the alias's root; '..' and symlinks cannot leave it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, path.lstrip("/")))
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise PermissionError(f"{path} is outside {root}")
    return Path(real)


def run(task_dir: Path) -> None:
    spec = read_json(task_dir / "spec.json")
    if spec is None or read_json(task_dir / "result.json") is not None:
        return
    options, inbound = spec["options"], spec["direction"] == "in"
    level = SYNC_LEVELS.get(options["sync_level"]) if options["sync_level"] else None
    state = {"status": "ACTIVE", "nice_status": "OK", "files": 0, "files_transferred": 0,
             "files_skipped": 0, "bytes_transferred": 0, "skipped_errors": 0}
    failures: list[dict] = []
    started = last_write = time.monotonic()

    def checkpoint() -> None:
        nonlocal last_write
        if (task_dir / "cancel").exists():
            raise Cancelled()
        if time.time() > options["deadline"]:
            raise TimeoutError("deadline expired")
        if time.monotonic() - last_write > PROGRESS_EVERY:
            elapsed = time.monotonic() - started
            state["bytes_per_second"] = state["bytes_transferred"] / max(elapsed, 1e-6)
            write_json(task_dir / "progress.json", state)
            last_write = time.monotonic()

    try:
        for item in spec["files"]:
            checkpoint()
            try:
                src = resolve_remote(spec["root"], item["src"]) if inbound else Path(item["src"])
                dest = Path(item["dest"]) if inbound else resolve_remote(spec["root"],
                                                                         item["dest"])
                if src.is_dir() and item["recursive"]:
                    pairs = [(src / r[1:], dest / r[1:]) for r in walk_files(src)]
                elif src.exists() and not src.is_dir():
                    pairs = [(src, dest)]
                else:
                    raise FileNotFoundError(item["src"])
            except (FileNotFoundError, PermissionError) as exc:
                code = "FILE_NOT_FOUND" if isinstance(exc, FileNotFoundError) \
                    else "PERMISSION_DENIED"
                if not options["skip_source_errors"]:
                    raise
                failures.append({"src": item["src"], "dest": item["dest"], "code": code,
                                 "details": str(exc)})
                state["skipped_errors"] += 1
                continue
            for source, target in pairs:
                checkpoint()
                state["files"] += 1
                if in_sync(source, target, level):
                    state["files_skipped"] += 1
                    continue
                state["bytes_transferred"] += copy_atomic(
                    source, target, task_dir.name[:8], verify=options["verify_checksum"])
                state["files_transferred"] += 1
        result = dict(state, status="SUCCEEDED", nice_status=None, failures=failures)
    except Cancelled:
        result = dict(state, status="FAILED", fatal_code="CANCELED", fatal_error="cancelled")
    except TimeoutError as exc:
        result = dict(state, status="FAILED", fatal_code="EXPIRED", fatal_error=str(exc))
    except OSError as exc:
        code = "FILE_NOT_FOUND" if isinstance(exc, FileNotFoundError) else \
            "PERMISSION_DENIED" if isinstance(exc, PermissionError) else "ENDPOINT_ERROR"
        result = dict(state, status="FAILED", fatal_code=code, fatal_error=str(exc))
    result["bytes_per_second"] = state["bytes_transferred"] / max(
        time.monotonic() - started, 1e-6)
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
