"""What `balsam site start|stop|sync|status` do, apart from printing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

from balsam_mp import api, db, permissions, settings
from balsam_mp.db.filesystem import check_database_location
from balsam_mp.errors import BalsamError, DatabaseFailure
from balsam_mp.settings import Settings
from balsam_mp.site import pidfile, syncs
from balsam_mp.site.crashes import halt_path, read_halt
from balsam_mp.site.logs import configure_logging
from balsam_mp.site.supervisor import WORKERS, Supervisor
from balsam_mp.site.worker import ready_file

START_TIMEOUT = 30.0
STANDBY_GRACE = 3.0  # seconds a PostgreSQL site gets to take its lock before "standby"


class AlreadyRunning(BalsamError):
    """This site already runs on this host."""


def running_here(site_path: Path) -> bool:
    """True if this site's supervisor runs on this host (needs no valid settings)."""
    info = pidfile.read(site_path)
    return info is not None and info.alive()


def check_not_running(site: Settings) -> str | None:
    """Refuse if a site runs; clean up a stale pidfile (returns a note saying so)."""
    info = pidfile.read(site.site_path)
    if info is None:
        return None
    if not info.here:
        raise BalsamError(f"site {site.site_name} is running on host {info.host} "
                          f"(pid {info.pid}); stop it there")
    if info.alive():
        raise AlreadyRunning(f"site {site.site_name} is already running (pid {info.pid})")
    pidfile.remove(site.site_path)
    if info.damaged:
        return "removed a damaged pidfile"
    return f"removed a stale pidfile (pid {info.pid} is not running)"


def validate(site: Settings, open_postgres: bool = True) -> None:
    """What `site start` checks beyond loading settings.yml; `site sync` runs it too (a
    sync that pointed the workers at a missing database would halt a running site).
    `open_postgres=False`: the caller opens a PostgreSQL database itself right after."""
    file = site.site_path / settings.SETTINGS_FILE
    if site.client:  # what a site published for clients is not its settings.yml
        raise BalsamError(f"site {site.site_name!r}: starting or syncing a site needs its "
                          "directory (--site PATH or $BALSAM_SITE_PATH), not its name")
    if site.database_url:  # reachable, and a balsam database: or the workers halt at boot
        if open_postgres:
            db.connect(site.database_url, site=site.site_name).close()
        return
    if not site.database_path.is_file() and site.database_path == site.site_path / "site.db":
        raise DatabaseFailure(f"{site.database_path}: site database missing (deleted or "
                              "moved?); restore it, or run `balsam site init`")
    if not site.database_path.is_file():
        raise BalsamError(f"{file}: database_path: {site.database_path} does not exist; to "
                          "move site.db, stop the site, move the file, then set database_path")
    check_database_location(site.database_path, file)
    database = db.connect(site.database_path)  # unreadable, corrupt: one line now, not at
    try:  # the workers' boot; read-only: BEGIN IMMEDIATE needs the right to write
        with database.atomic("IMMEDIATE"):
            pass
    finally:
        database.close()


def start(site: Settings, foreground: bool = False, if_not_running: bool = False) -> str:
    """Start the site; with `if_not_running`, a site already running here is success."""
    try:
        note = check_not_running(site)
    except AlreadyRunning:
        if if_not_running:
            return ""
        raise
    validate(site)
    permissions.apply(site.site_path, site.permissions, site.database_file)
    halt_path(site.site_path).unlink(missing_ok=True)  # the reason was seen to
    if foreground:
        configure_logging(site, "supervisor")
        code = Supervisor(site).run()
        if code:
            raise BalsamError(f"site stopped with errors; see {site.logs_path}/")
        return "site stopped"
    reader, writer = os.pipe()
    if os.fork() == 0:  # daemon: detach twice, then supervise
        os.close(reader)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.write(writer, f"{os.getpid()}\n".encode())  # tells `start` which daemon is ours
        os.close(writer)
        _detach_stdio(site)
        configure_logging(site, "supervisor")
        code = 1
        try:
            code = Supervisor(site).run()
        finally:
            os._exit(code)
    os.close(writer)
    os.wait()
    with os.fdopen(reader) as pipe:
        daemon = int(pipe.readline() or 0)
    try:
        info = _wait_until_ready(site, daemon)
    except AlreadyRunning:  # a racing `site start` won the site lock
        if if_not_running:
            return ""
        raise
    started = f"site {site.site_name} started (pid {info.pid})"
    if info.standby:
        started = (f"site {site.site_name} started on standby (pid {info.pid}): {info.standby};"
                   " it takes over when that one stops")
    return "\n".join(filter(None, [note, started]))


def _detach_stdio(site: Settings) -> None:
    out = permissions.open_file(site.logs_path / "supervisor.out", os.O_WRONLY | os.O_APPEND,
                                site.modes.file)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)


def _wait_until_ready(site: Settings, daemon: int) -> pidfile.PidInfo:
    """Wait until our daemon runs both workers; raise AlreadyRunning if a rival won."""
    deadline = time.monotonic() + START_TIMEOUT
    standby_after = time.monotonic() + STANDBY_GRACE
    while time.monotonic() < deadline:
        info = pidfile.read(site.site_path)
        if info is not None and info.pid == daemon and info.alive():
            if info.standby and time.monotonic() > standby_after:
                return info  # another login node runs the site; we take over if it dies
            workers = info.workers or {}
            ready = all(_ready_pid(site, n) == workers.get(n) for n in WORKERS)
            if ready and len(workers) == len(WORKERS):
                return info
        elif not psutil.pid_exists(daemon):
            if info is not None and info.alive():
                raise AlreadyRunning(f"site {site.site_name} is already running "
                                     f"(pid {info.pid})")
            break  # it failed at boot
        time.sleep(0.05)
    why = read_halt(site.site_path)
    raise BalsamError(f"site {site.site_name} failed to start" + (f": {why}" if why else "")
                      + f"; see {site.logs_path / 'supervisor.log'} and the worker logs there")


def _ready_pid(site: Settings, name: str) -> int | None:
    try:
        return int(ready_file(site, name).read_text())
    except (FileNotFoundError, ValueError):
        return None


def stop(site_path: Path, timeout: float = 30.0) -> str:
    """Works from the pidfile alone: a broken settings.yml must not lock a site on."""
    info = pidfile.read(site_path)
    if info is None:
        raise BalsamError(f"site {site_path} is not running (no pidfile)")
    if not info.here:
        raise BalsamError(f"site {site_path} runs on host {info.host} (pid {info.pid}); "
                          "stop it there")
    if not info.alive():
        pidfile.remove(site_path)
        what = "a damaged pidfile" if info.damaged else f"a stale pidfile (pid {info.pid})"
        return f"site was not running; removed {what}"
    process = psutil.Process(info.pid)
    children = process.children(recursive=True)
    process.send_signal(signal.SIGTERM)
    if not _exited(process, timeout):
        for proc in [process, *children]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        pidfile.remove(site_path, info.pid)
        return f"site did not stop within {timeout:.0f}s; killed it"
    return f"site {site_path} stopped"


def _exited(process: psutil.Process, timeout: float) -> bool:
    """Whether `process` exits within `timeout`. A zombie has exited: the daemon's
    reaper is init, which in a container may take seconds to reap it."""
    deadline, pause = time.monotonic() + timeout, 0.001
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def sync(site_path) -> str:
    """Validate settings.yml, re-register apps, then restart the workers of a running site."""
    site = settings.load(site_path)  # raises on a bad file: the running site is untouched
    # PostgreSQL: the apps' sync opens the database as validate would, and one session
    # is all a sync may hold (a role limited to 4 connections, the site's 3 taken): a
    # session just closed keeps its slot a moment, and a command's refusal is said at once
    validate(site, open_postgres=False)
    permissions.apply(site.site_path, site.permissions, site.database_file)
    api.use_site(site.site_path)
    api.App.sync()
    api.close()  # its slot is the boot check's: a role limited to 4 connections syncs
    info = pidfile.read(site.site_path)
    if info is None or not info.alive():
        return "settings are valid and apps synced; the site is not running"
    syncs.result_path(site.site_path).unlink(missing_ok=True)
    os.kill(info.pid, signal.SIGHUP)
    answer = syncs.wait_result(site.site_path, info.pid)  # raises if it refused
    return f"settings are valid and apps synced; {answer}"
