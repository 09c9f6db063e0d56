"""How a worker's death is explained and how often it is restarted.

A worker that raises an unexpected exception logs the traceback, then leaves a one-line
note (`.run/<worker>.crash`) that the supervisor reads when it reaps the process. The
supervisor records every death in the database's event log through a short-lived child
(it never opens the database itself), and stops restarting a worker that keeps dying:
after CRASH_LIMIT deaths within CRASH_WINDOW seconds it waits a growing pause, capped at
MAX_PAUSE, before the next try (rq and gunicorn report how a child died; systemd's
StartLimitBurst is the model for the limit).
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from balsam_mp import db, permissions
from balsam_mp.settings import Settings
from balsam_mp.site import pidfile

CRASH_LIMIT = 5  # deaths ...
CRASH_WINDOW = 600.0  # ... within this many seconds make a worker crash-looping
FIRST_PAUSE = 30.0  # seconds a crash-looping worker is kept stopped, doubled each time
MAX_PAUSE = 600.0
MAX_BACKOFF = 30.0  # seconds between restarts of a worker that is not crash-looping
HEALTHY_AFTER = 60.0  # a worker that lived this long starts its backoff afresh
NOTE_LIMIT = 300  # characters of an exception kept in the note


def note_path(settings: Settings, worker: str) -> Path:
    tag = pidfile.host_tag(bool(settings.database_url))
    return settings.site_path / ".run" / f"{worker}{tag}.crash"


def write_note(settings: Settings, worker: str, exc: BaseException) -> None:
    """In the dying worker: the exception's last line, for the supervisor to report."""
    last_line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    permissions.write_file(note_path(settings, worker), json.dumps(
        {"pid": os.getpid(), "error": last_line[:NOTE_LIMIT]}), permissions.RUNTIME.file)


def halt_path(site_path: Path) -> Path:
    return site_path / ".run" / "halted"


def write_halt(settings: Settings, reason: str) -> None:
    """Why the site halted, for `site status` until the next `site start`."""
    permissions.write_file(halt_path(settings.site_path), json.dumps(
        {"time": time.time(), "reason": reason}), permissions.RUNTIME.file)


def read_halt(site_path: Path) -> str | None:
    """'at HH:MM:SS: why', if the site halted on its own since it was last started."""
    try:
        note = json.loads(halt_path(site_path).read_text())
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(note["time"]))
        return f"the site halted at {when}: {note['reason']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_note(settings: Settings, worker: str, pid: int) -> str | None:
    """The note `pid` left when it died, if it left one (and remove it)."""
    path = note_path(settings, worker)
    try:
        note = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return note.get("error") if note.get("pid") == pid else None


@dataclass
class RestartPolicy:
    """When to start a dead worker again; remembers its recent deaths."""

    deaths: deque[float] = field(default_factory=deque)
    restarts: int = 0  # quick restarts in a row, for the backoff
    pauses: int = 0  # crash-loop pauses in a row, for the growing pause
    crash_looping: bool = False

    def after_death(self, lived: float, now: float | None = None) -> float:
        """Seconds to wait before the next start."""
        now = time.monotonic() if now is None else now
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > CRASH_WINDOW:
            self.deaths.popleft()
        self.restarts = 0 if lived > HEALTHY_AFTER else self.restarts + 1
        if len(self.deaths) >= CRASH_LIMIT:
            self.crash_looping = True
            pause = min(MAX_PAUSE, FIRST_PAUSE * 2 ** self.pauses)
            self.pauses += 1
            self.deaths.clear()  # the next CRASH_LIMIT deaths start the count again
            return pause
        if lived > CRASH_WINDOW:  # it ran well for a while: no longer crash-looping
            self.crash_looping, self.pauses = False, 0
        return min(MAX_BACKOFF, 0.1 * 2 ** self.restarts) if self.restarts else 0.0

    def reset(self) -> None:
        self.deaths.clear()
        self.restarts = self.pauses = 0
        self.crash_looping = False


def record_death(settings: Settings, message: str) -> None:
    """Write a WORKER_DIED event to the site's event log from a short-lived child."""
    if os.fork() != 0:
        return  # the supervisor's reap loop collects the child
    code = 1
    try:
        db.allow_connections()  # a fresh process: it may open its own connection
        database = db.connect(settings.database, site=settings.site_name)
        with database.atomic():  # every death is its own row, the same message or not
            db.LogEvent.create(job=None, to_state="WORKER_DIED", message=message)
        database.close()
        code = 0
    finally:
        os._exit(code)
