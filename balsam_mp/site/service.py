"""What `balsam site start|stop|sync|status` do, apart from printing."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import peewee
import psutil

from balsam_mp import api, db, settings
from balsam_mp.db import models
from balsam_mp.db.filesystem import check_database_location
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site import pidfile
from balsam_mp.site.logs import configure_logging
from balsam_mp.site.supervisor import WORKERS, Supervisor
from balsam_mp.site.worker import ready_file
from balsam_mp.states import Item

START_TIMEOUT = 30.0


def check_not_running(site: Settings) -> str | None:
    """Refuse if a site runs; clean up a stale pidfile (returns a note saying so)."""
    info = pidfile.read(site.site_path)
    if info is None:
        return None
    if not info.here:
        raise BalsamError(f"site {site.site_name} is running on host {info.host} "
                          f"(pid {info.pid}); stop it there")
    if info.alive():
        raise BalsamError(f"site {site.site_name} is already running (pid {info.pid})")
    pidfile.remove(site.site_path)
    return f"removed a stale pidfile (pid {info.pid} is not running)"


def validate(site: Settings) -> None:
    """What `site start` checks beyond loading settings.yml; `site sync` runs it too (a
    sync that pointed the workers at a missing database would halt a running site)."""
    file = site.site_path / settings.SETTINGS_FILE
    if not site.database_path.is_file():
        raise BalsamError(f"{file}: database_path: {site.database_path} does not exist; to "
                          "move site.db, stop the site, move the file, then set database_path")
    check_database_location(site.database_path, file)


def start(site: Settings, foreground: bool = False) -> str:
    note = check_not_running(site)
    validate(site)
    for name in WORKERS:
        ready_file(site, name).unlink(missing_ok=True)
    if foreground:
        configure_logging(site, "supervisor")
        code = Supervisor(site).run()
        if code:
            raise BalsamError(f"site stopped with errors; see {site.logs_path}/")
        return "site stopped"
    if os.fork() == 0:  # daemon: detach twice, then supervise
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _detach_stdio(site)
        configure_logging(site, "supervisor")
        code = 1
        try:
            code = Supervisor(site).run()
        finally:
            os._exit(code)
    os.wait()
    info = _wait_until_ready(site)
    return "\n".join(filter(None, [note, f"site {site.site_name} started (pid {info.pid})"]))


def _detach_stdio(site: Settings) -> None:
    out = os.open(site.logs_path / "supervisor.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)


def _wait_until_ready(site: Settings) -> pidfile.PidInfo:
    deadline = time.monotonic() + START_TIMEOUT
    seen = None
    while time.monotonic() < deadline:
        info = pidfile.read(site.site_path)
        if info is not None and info.alive():
            seen = info
            workers = info.workers or {}
            ready = all(_ready_pid(site, n) == workers.get(n) for n in WORKERS)
            if ready and len(workers) == len(WORKERS):
                return info
        elif seen is not None:  # it was up and is gone: a worker failed at boot
            break
        time.sleep(0.05)
    raise BalsamError(f"site {site.site_name} failed to start; see "
                      f"{site.logs_path / 'supervisor.log'} and the worker logs there")


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
        return f"site was not running; removed a stale pidfile (pid {info.pid})"
    process = psutil.Process(info.pid)
    children = process.children(recursive=True)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        for proc in [process, *children]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        pidfile.remove(site_path, info.pid)
        return f"site did not stop within {timeout:.0f}s; killed it"
    return f"site {site_path} stopped"


def sync(site_path) -> str:
    """Validate settings.yml, re-register apps, then restart the workers of a running site."""
    site = settings.load(site_path)  # raises on a bad file: the running site is untouched
    validate(site)
    api.use_site(site.site_path)
    api.App.sync()
    info = pidfile.read(site.site_path)
    if info is None or not info.alive():
        return "settings are valid and apps synced; the site is not running"
    os.kill(info.pid, signal.SIGHUP)
    return f"settings are valid and apps synced; restarting the workers of pid {info.pid}"


def status(site_path: Path) -> dict:
    """Works without valid settings: the pidfile, and the database at its best-known path."""
    info = pidfile.read(site_path)
    running = info is not None and info.alive()
    try:
        site: Settings | None = settings.load(site_path)
        db_path, note = site.database_path, None
    except BalsamError:
        site = None
        db_path, note = settings.database_path_of(site_path)
    db.connect(db_path)
    items = [{"direction": d, "state": s, "count": n} for d, s, n in (
        models.TransferItem.select(models.TransferItem.direction, models.TransferItem.state,
                                   peewee.fn.COUNT(models.TransferItem.id)).group_by(
            models.TransferItem.direction, models.TransferItem.state).tuples())]
    in_flight = [{"id": t.id, "task_id": t.task_id, "state": t.state, "direction": t.direction,
                  "alias": t.location_alias, "items": t.item_count,
                  "nice_status": t.nice_status, "bytes": t.bytes_transferred}
                 for t in models.TransferTask.select().where(
                     models.TransferTask.state.in_(("submitting", "active", "inactive")))]
    site_events = models.LogEvent.select().where(models.LogEvent.job.is_null()).order_by(
        models.LogEvent.id.desc())
    action = site_events.where(models.LogEvent.to_state == "ACTION_REQUIRED").first()
    inactive = [t for t in in_flight if t["state"] == "inactive"]
    # every item failure writes an event (newest id first is an index walk, not a scan)
    last_error = (models.LogEvent.select(models.LogEvent.message)
                  .where(models.LogEvent.transfer_item.is_null(False),
                         models.LogEvent.from_state != "error")
                  .order_by(models.LogEvent.id.desc()).first())
    actions = [action.message] if action and (inactive or _recent(action)) else []
    untrusted = _items_on_unknown_aliases(site) if site else {}
    if untrusted:
        actions.append(f"items wait on location aliases that transfer_locations no longer "
                       f"has: {_counted(untrusted)}; add them back to settings.yml and run "
                       "`balsam site sync`")
    no_endpoint = _waiting_items(site.aliases_without_endpoint()) if site else {}
    if no_endpoint:
        actions.append(f"items wait on globus aliases {_counted(no_endpoint)}: set "
                       f"transfers.globus_endpoint_id (the site's own Globus endpoint UUID) in "
                       f"{site.site_path / settings.SETTINGS_FILE} and run `balsam site sync`")
    if note:
        actions.insert(0, f"fix settings.yml: {note}")
    return {
        "site": site.site_name if site else site_path.name, "running": running,
        "pid": info.pid if running else None, "host": info.host if info else None,
        "workers": (info.workers or {}) if running else {},
        "items": items, "tasks_in_flight": in_flight,
        "last_error": last_error.message if last_error else None,
        "unknown_aliases": untrusted,
        "waiting_for_endpoint_id": no_endpoint,
        "settings_error": note,
        "action_required": "; ".join(actions) or None,
    }


def _items_on_unknown_aliases(site: Settings) -> dict[str, int]:
    """Items not sent whose alias was removed from settings: no one will send them."""
    return _waiting_items(list(site.transfers.transfer_locations), outside=True)


def _waiting_items(aliases: list[str], outside: bool = False) -> dict[str, int]:
    """alias -> count of items not sent yet, on these aliases (or on any other)."""
    if not aliases and not outside:
        return {}
    item = models.TransferItem
    on = item.location_alias.not_in(aliases) if outside else item.location_alias.in_(aliases)
    return dict(item.select(item.location_alias, peewee.fn.COUNT(item.id))
                .where(item.state.in_((Item.AWAITING_JOB, Item.PENDING, Item.SUBMITTING)), on)
                .group_by(item.location_alias).tuples())


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{alias!r} ({count} item{'s' if count > 1 else ''})"
                     for alias, count in counts.items())


def _recent(event: models.LogEvent, seconds: float = 300) -> bool:
    return (models.utcnow() - event.timestamp).total_seconds() < seconds
