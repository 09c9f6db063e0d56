"""`balsam site sync` never reports success for a site it would halt.

Before the supervisor restarts its workers with new settings, it runs their boot in a
child process, in the daemon's own environment (its credentials, its database): the
new settings load, and each worker's initialize() (the database, the locations and the
credentials they need) succeeds. Only then are the workers replaced; otherwise the
running ones stay as they are. Either way the answer goes to `.run/sync.json`, which
the `sync` command waits for, prints, and turns into its exit code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from balsam_mp import db, permissions
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site.backends import build_locations
from balsam_mp.site.worker import Worker

CHECK_TIMEOUT = 60.0  # seconds a boot check may take (a token fetch over the network)
RESULT = "sync.json"


def result_path(site_path: Path) -> Path:
    return site_path / ".run" / RESULT


def write_result(site_path: Path, ok: bool, message: str) -> None:
    """The supervisor's answer, written whole (a temp file renamed into place)."""
    path = result_path(site_path)
    temp = path.with_suffix(f".tmp{os.getpid()}")
    with os.fdopen(permissions.open_file(temp, os.O_WRONLY | os.O_TRUNC,
                                         permissions.RUNTIME.file), "w") as out:
        json.dump({"ok": ok, "message": message, "pid": os.getpid()}, out)
    os.replace(temp, path)


def boot_check(new: Settings, in_child: Callable[[], None] = lambda: None) -> str | None:
    """What the workers' boot does with `new`, in a child process: open the database
    and build the locations (each with its backend and credentials). None if it works,
    else the reason (one line)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the check: a worker's boot, then out
        os.close(reader)
        reason = ""
        try:
            in_child()  # e.g. close what only the supervisor may hold (its lock)
            db.allow_connections()
            worker = Worker(new)
            try:
                worker.initialize()
                build_locations(new)
            finally:
                worker.shutdown()
        except Exception as exc:  # noqa: BLE001 - its reason is the answer
            reason = f"the workers would not start: {exc}"
        finally:
            os.write(writer, reason.encode("utf-8", "replace")[:4000])
            os._exit(0)
    os.close(writer)
    deadline = time.monotonic() + CHECK_TIMEOUT
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(reader)
            return f"the workers' boot check took over {CHECK_TIMEOUT:.0f} s"
        time.sleep(0.02)
    with os.fdopen(reader, "rb") as answer:
        text = answer.read().decode("utf-8", "replace").strip()
    return " ".join(text.split()) or None


def wait_result(site_path: Path, supervisor_pid: int, timeout: float = CHECK_TIMEOUT + 10,
                ) -> str:
    """What the supervisor answered to our SIGHUP (the caller removed the old answer
    first); BalsamError if it refused the sync or did not answer."""
    path = result_path(site_path)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BalsamError(f"supervisor {supervisor_pid} did not answer the sync within "
                              f"{timeout:.0f} s; see {site_path / 'logs'}/supervisor.log")
        time.sleep(0.05)
    answer = json.loads(path.read_text())
    if not answer["ok"]:
        raise BalsamError(f"sync refused, the running workers are kept: {answer['message']}")
    return answer["message"]
