"""`balsam site status`: one consistent snapshot of a site, short enough to read.

Every count comes from one read transaction (SQLite's snapshot isolation), so the items
by state agree with the tasks in flight. The queries use indexes only: counts by state
walk the claim index, recent throughput looks at tasks (one per batch), and the oldest
pending item is the first of each claim group, which is the one the submitter takes next.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import peewee

from balsam_mp import db, permissions, settings
from balsam_mp.db.bulk import dialect, run
from balsam_mp.db.locks import long_lock_holders
from balsam_mp.db.models import LogEvent, TransferItem, TransferTask, iso, utcnow
from balsam_mp.db.postgres import SitePostgres, connection_headroom
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site import lease, pidfile, upgrades, waits
from balsam_mp.site.crashes import read_halt
from balsam_mp.site.supervisor import WORKERS
from balsam_mp.states import Item, Task

LINE = 160  # characters: longer messages and paths are cut in the middle
ACTION_FRESH = 300.0  # seconds an ACTION_REQUIRED event stays news without an INACTIVE task


# What status says of the database when it cannot find it (settings.yml is broken).
NOTHING_READ = {"items": [], "tasks_in_flight": [], "done_last_minute": None,
                "done_last_hour": None, "drain_estimate_s": None, "oldest_pending_age_s": None,
                "last_error": None, "unknown_aliases": {}, "waiting_for_endpoint_id": {}}


def elide(text: str | None, width: int = LINE) -> str | None:
    """'/very/long/.../path.dat': keeps both ends, which say the most."""
    if text is None or len(text) <= width:
        return text
    keep = (width - 3) // 2
    return f"{text[:keep]}...{text[len(text) - keep:]}"


def status(site_path: Path) -> dict:
    """Works without valid settings: the pidfile, and the database at its best-known path
    (so a site can be inspected, and stopped, while settings.yml is broken)."""
    info = pidfile.read(site_path)
    running = info is not None and info.alive()
    try:
        site: Settings | None = settings.load(site_path)
        db_path, site_name, note = site.database, site.site_name, None
    except BalsamError:
        site = None
        db_path, site_name, note = settings.database_of(site_path)
    halted = None if running else read_halt(site_path)
    database_error = None
    try:
        database = db.connect(db_path, site=site_name)
    except BalsamError as exc:
        if note is None and halted is None and not running:
            raise
        database = None  # still say whether the site runs, and why it halted
        if note is None:
            database_error = lease.unreachable(site_path, exc) if running else str(exc)
        else:
            note = f"{note}; {exc}"
    if database is None:
        report = dict(NOTHING_READ, actions=[], pending={}, locked=False, lease=None)
        # a server that does not answer has no size to give
        sizes = None if db.is_database_url(db_path) else _sizes(db_path, site_path / "logs")
    else:
        with database.atomic("DEFERRED"):  # one read snapshot for every number below
            report = _snapshot(site)
            sizes = _sizes(db_path, site_path / "logs")
            report["lease"] = lease.read(database) if db.is_database_url(db_path) \
                else None  # SQLite: one machine, no lease
            if isinstance(database, SitePostgres):  # the server's slots left to open
                report["connections"] = connection_headroom(database)
    standby = info.standby if running else None
    workers = _workers(info) if running and not standby else {}
    actions = report.pop("actions")
    actions += [f"{name} is crash-looping ({w['last_error']}); next try at {w['next_try']}; "
                f"see {site_path / 'logs' / (name + '.log')}"
                for name, w in workers.items() if w["state"] == "crash-looping"]
    if note:
        actions.insert(0, f"fix settings.yml: {note}")
    if database_error:
        actions.insert(0, database_error)
    if halted:
        actions.insert(0, halted)
    held = waits.read(site_path, waits.retry_grace(site)) if running else {}
    report["groups"] = waits.groups(report["tasks_in_flight"], site, held,
                                    report.pop("pending"), report.pop("locked"))
    actions += _mode_warnings(site_path, site, db_path)
    actions += upgrades.notes(site_path / settings.SETTINGS_FILE)
    if info is not None and info.damaged:
        actions.insert(0, f"{pidfile.path_of(site_path)} is damaged; `balsam site stop` or "
                          "`balsam site start` removes it")
    return {
        "site": site_name or site_path.name, "running": running,
        "elsewhere": info.pid if info is not None and not info.here else None,
        "pid": info.pid if running else None, "host": info.host if info else None,
        "standby": standby, "workers": workers, **report,
        "settings_error": note, "database_error": database_error,
        "sizes": sizes,
        "action_required": elide("; ".join(actions), 4 * LINE) or None,
    }


def _mode_warnings(site_path: Path, site: Settings | None, db_path: Path | str) -> list[str]:
    """A site whose files let in more users than its site_permissions says."""
    chosen = site.permissions if site else "private"
    wide = permissions.too_wide(site_path, chosen, None if db.is_database_url(db_path)
                                else Path(db_path))
    if not wide:
        return []
    more = f" and {len(wide) - 3} more" if len(wide) > 3 else ""
    return [f"more users may read the site than site_permissions: {chosen} allows: "
            f"{', '.join(wide[:3])}{more}; `balsam site sync` sets its modes (see "
            "docs/running-a-site.md, \"Who may read a site\")"]


def database_status(site: Settings) -> dict:
    """What a PostgreSQL database alone says of one of its sites (the API bound to it):
    for a machine without the site directory, and for `site status --all-sites`."""
    database = db.Job._meta.database
    with database.atomic("DEFERRED"):
        report = _snapshot(site)
        held = lease.read(database)
    actions = report.pop("actions")
    report.pop("pending"), report.pop("locked")
    return {"site": site.site_name, "active": bool(held and held["live"]), "lease": held,
            **report,
            "action_required": elide("; ".join(actions), 4 * LINE) or None}


def _workers(info: pidfile.PidInfo) -> dict[str, dict]:
    """Each worker: running (pid), restarting, or crash-looping (why, next try)."""
    found = {}
    for name in WORKERS:
        pid = (info.workers or {}).get(name)
        down = (info.down or {}).get(name) or {}
        if pid:
            found[name] = {"state": "running", "pid": pid}
            continue
        next_try = down.get("next_try")
        found[name] = {
            "state": "crash-looping" if down.get("crash_looping") else "restarting",
            "pid": None, "last_error": elide(down.get("last_error")),
            "next_try": time.strftime("%H:%M:%S", time.localtime(next_try))
            if next_try else None}
    return found


def _snapshot(site: Settings | None) -> dict:
    item, task = TransferItem, TransferTask
    groups = list(item.select(item.state, item.direction, item.location_alias,
                              peewee.fn.COUNT(peewee.SQL("*")))
                  .group_by(item.state, item.direction, item.location_alias).tuples())
    by_state: dict[tuple[str, str], int] = {}
    for state, direction, _, count in groups:
        by_state[direction, state] = by_state.get((direction, state), 0) + count
    in_flight = [{"id": t.id, "task_id": t.task_id, "state": t.state, "direction": t.direction,
                  "alias": t.location_alias, "protocol": t.protocol, "items": t.item_count,
                  "nice_status": elide(t.nice_status), "bytes": t.bytes_transferred}
                 for t in task.select(task.id, task.task_id, task.state, task.direction,
                                      task.location_alias, task.protocol, task.item_count,
                                      task.nice_status, task.bytes_transferred)
                 .where(task.state.in_(Task.IN_FLIGHT))]
    waiting = sum(n for (_, state), n in by_state.items()
                  if state in (Item.PENDING, *Item.IN_FLIGHT))
    done_minute, done_hour = _done_recently()
    rate = done_minute / 60 if done_minute else done_hour / 3600
    trusted = site.transfers.transfer_locations if site else None
    # a client's settings hold no endpoint id (the site publishes none): not its to say
    no_endpoint = site.aliases_without_endpoint() if site and not site.client else []
    untrusted = _waiting(groups, lambda alias: trusted is not None and alias not in trusted)
    waiting_for_endpoint = _waiting(groups, lambda alias: alias in no_endpoint)
    holders = long_lock_holders()  # sessions holding the site's rows (PostgreSQL)
    return {
        "items": [{"direction": d, "state": s, "count": n}
                  for (d, s), n in sorted(by_state.items())],
        "tasks_in_flight": in_flight,
        "done_last_minute": done_minute, "done_last_hour": done_hour,
        "drain_estimate_s": round(waiting / rate) if rate and waiting else None,
        "oldest_pending_age_s": _oldest_pending_age(groups),
        "last_error": elide(_last_error()),
        "unknown_aliases": untrusted,
        "waiting_for_endpoint_id": waiting_for_endpoint,
        "actions": _actions(in_flight, untrusted, waiting_for_endpoint, site) + holders,
        "pending": {(d, a): n for state, d, a, n in groups if state == Item.PENDING},
        "locked": bool(holders),
    }


def _waiting(groups: list[tuple], on_alias) -> dict[str, int]:
    """alias -> items not sent yet on the aliases `on_alias` picks."""
    counts: dict[str, int] = {}
    for state, _, alias, count in groups:
        if state in (Item.AWAITING_JOB, Item.PENDING, Item.SUBMITTING) and on_alias(alias):
            counts[alias] = counts.get(alias, 0) + count
    return counts


# Items done by tasks that finished in the last hour, and in the last minute (an item is
# done when its task finishes). Tasks are a hundredth of the items, so this reads the
# recent tasks and their items by task; `|| ''` keeps SQLite off the state index,
# which would walk every done item ever.
_DONE_RECENTLY = """
    SELECT COUNT(*), COALESCE(SUM(CASE WHEN task.updated_at >= :minute THEN 1 ELSE 0 END), 0)
    FROM transfer_task AS task JOIN transfer_item AS item ON item.transfer_task_id = task.id
    WHERE task.state IN (:succeeded, :failed) AND task.updated_at >= :hour
      AND item.state || '' = :done"""


def _done_recently() -> tuple[int, int]:
    now = utcnow()
    hour, minute = run(_DONE_RECENTLY, {
        "hour": iso(now - dt.timedelta(hours=1)), "minute": iso(now - dt.timedelta(minutes=1)),
        "succeeded": Task.SUCCEEDED, "failed": Task.FAILED, "done": Item.DONE}).fetchone()
    return minute, hour


def _oldest_pending_age(groups: list[tuple]) -> float | None:
    oldest = None
    for state, direction, alias, _ in groups:
        if state != Item.PENDING:
            continue
        first = (TransferItem.select(TransferItem.updated_at)
                 .where(TransferItem.state == Item.PENDING, TransferItem.direction == direction,
                        TransferItem.location_alias == alias)
                 .order_by(TransferItem.job).first())
        if first is not None and (oldest is None or first.updated_at < oldest):
            oldest = first.updated_at
    return round((utcnow() - oldest).total_seconds(), 1) if oldest else None


# Every item failure writes an event naming its item; they are few next to the jobs' own
# events, so the newest is found through the index of events by item, not by a scan.
_LAST_ERROR = """
    SELECT item.location_alias, item.remote_path, event.message
    FROM log_event AS event {index}
    JOIN transfer_item AS item ON item.id = event.transfer_item_id
    WHERE event.transfer_item_id IS NOT NULL AND event.from_state != :error
    ORDER BY event.id DESC LIMIT 1"""


def _last_error() -> str | None:
    """The newest item failure, with the file it is about."""
    sql = _LAST_ERROR.format(index=dialect().indexed_by("log_event_transfer_item_id"))
    row = run(sql, {"error": Item.ERROR}).fetchone()
    return f"{row[0]}:{row[1]}: {row[2]}" if row else None


def _actions(in_flight: list[dict], untrusted: dict[str, int],
             waiting_for_endpoint: dict[str, int], site: Settings | None) -> list[str]:
    event = (LogEvent.select().where(LogEvent.job.is_null(),
                                     LogEvent.to_state == "ACTION_REQUIRED")
             .order_by(LogEvent.id.desc()).first())
    inactive = any(t["state"] == Task.INACTIVE for t in in_flight)
    fresh = event is not None and (utcnow() - event.timestamp).total_seconds() < ACTION_FRESH
    actions = [elide(event.message)] if event and (inactive or fresh) else []
    if untrusted:
        actions.append(f"items wait on location aliases that transfer_locations no longer "
                       f"has: {_counted(untrusted)}; add them back to settings.yml and run "
                       "`balsam site sync`")
    if waiting_for_endpoint and site is not None:
        actions.append(f"items wait on globus aliases {_counted(waiting_for_endpoint)}: set "
                       f"transfers.globus_endpoint_id (the site's own Globus endpoint UUID) in "
                       f"{site.site_path / settings.SETTINGS_FILE} and run `balsam site sync`")
    return actions


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{alias!r} ({count} item{'s' if count > 1 else ''})"
                     for alias, count in counts.items())


def _sizes(db_path: Path | str, logs_path: Path) -> dict[str, int]:
    """Bytes on disk: what counts against a home-directory quota. A PostgreSQL
    database's size is the server's, of every site in it, and wal is None (no -wal
    file of ours)."""
    logs = sum(f.stat().st_size for f in logs_path.glob("*") if f.is_file()) \
        if logs_path.is_dir() else 0
    if db.is_database_url(db_path):
        size = run("SELECT pg_database_size(current_database())").fetchone()[0]
        return {"database": size, "wal": None, "logs": logs}  # the database's, all sites
    return {"database": _size(db_path), "wal": _size(db_path.with_name(db_path.name + "-wal")),
            "logs": logs}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
