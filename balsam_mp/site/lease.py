"""The site's lease on PostgreSQL: its statements, and what `site status` says of it.

One row (`lease`, id 1) of the site's own schema names the host whose supervisor runs
the workers (leader.py holds it). Every time in it is the database server's clock, as
epoch seconds, and every comparison is made by the server (`now()`): the hosts' clocks
never decide who leads.
"""

from __future__ import annotations

import time
from pathlib import Path

import peewee

from balsam_mp.site import pidfile

LEASE_SECONDS = 10.0  # a lease not renewed for this long (database clock) may be taken

_NOW = "extract(epoch FROM now())"
_START = "extract(epoch FROM pg_postmaster_start_time())"
# Free: released, or expired, or its holder's session ended while the server ran (the
# host was killed). A lease renewed before the server (re)started expires LEASE_SECONDS
# after the start: its holder gets that long to come back before a standby may take it.
_FREE = f"""(lease.backend_pid IS NULL OR CASE WHEN lease.renewed_at < {_START}
    THEN {_START} + {LEASE_SECONDS} < {_NOW}
    ELSE lease.expires_at < {_NOW} OR NOT EXISTS (
        SELECT 1 FROM pg_stat_activity WHERE pid = lease.backend_pid) END)"""
ENSURE = ("INSERT INTO lease (id, epoch, renewed_at, expires_at) VALUES (1, 0, 0, 0) "
          "ON CONFLICT (id) DO NOTHING")
TAKE = f"""
    UPDATE lease SET epoch = epoch + 1, host = %(host)s, pid = %(pid)s,
        backend_pid = pg_backend_pid(), renewed_at = {_NOW}, expires_at = {_NOW} + %(ttl)s
    WHERE id = 1 AND {_FREE}
    RETURNING epoch"""
RENEW = f"""
    UPDATE lease SET backend_pid = pg_backend_pid(), renewed_at = {_NOW},
        expires_at = {_NOW} + %(ttl)s
    WHERE id = 1 AND epoch = %(epoch)s"""
RELEASE = f"""
    UPDATE lease SET backend_pid = NULL, expires_at = {_NOW} WHERE id = 1 AND epoch = %s"""
_READ = f"SELECT epoch, host, pid, {_NOW} - renewed_at, NOT {_FREE} FROM lease WHERE id = 1"


def read(database: peewee.Database) -> dict | None:
    """The lease as the database sees it: epoch, host, pid, renewed_s_ago and `live`
    (unexpired, its holder's session open); None if no host ever held it."""
    row = database.execute_sql(_READ).fetchone()
    if row is None or row[1] is None:
        return None
    epoch, host, pid, renewed, live = row
    return {"epoch": epoch, "host": host, "pid": pid,
            "renewed_s_ago": round(float(renewed), 1), "live": bool(live)}


def describe(lease: dict | None) -> str:
    """'login1 (pid 123) holds the site lease, renewed 0.4 s ago', or why no one does."""
    if lease is None:
        return "no host has held the site lease yet"
    who = f"{lease['host']} (pid {lease['pid']})"
    if lease["live"]:
        return f"{who} holds the site lease, renewed {lease['renewed_s_ago']:.1f} s ago"
    return (f"the site lease of {who} is free, last renewed {lease['renewed_s_ago']:.0f} s "
            "ago: no host is active")


def state_line(report: dict) -> str:
    """What `site status` says first: whether the site runs on this host, and on
    PostgreSQL which host is active (from the lease, whatever the pidfiles say)."""
    where = f"pid {report['pid']} on {report['host']}"
    lease = report.get("lease")
    if report.get("standby"):
        return f"on standby ({where}): " + (describe(lease) if lease else report["standby"])
    if report["running"]:
        return f"running ({where})"
    if report["elsewhere"]:
        return (f"running on host {report['host']} (pid {report['elsewhere']}), says its "
                "pidfile; run `balsam site status` there")
    if lease and lease["live"]:
        return (f"not running on this host ({pidfile.hostname()}); " +
                database_line({"active": True, "lease": lease}))
    return "not running" + (f" ({describe(lease)})" if lease else "")


def database_line(report: dict) -> str:
    """Whether a site of a PostgreSQL database runs, from its lease alone."""
    lease = report.get("lease")
    if report["active"]:
        return (f"active on {lease['host']} (pid {lease['pid']}), lease renewed "
                f"{lease['renewed_s_ago']:.1f} s ago")
    return f"not running ({describe(lease)})"


def unreachable(site_path: Path, error: Exception) -> str:
    """The site runs here but its database does not answer: since when, if this host's
    lease holder has noticed (it records when the outage began)."""
    outage = pidfile.read_outage(site_path)
    if outage is None:
        return f"database unreachable: {error}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(outage["since"]))
    return (f"database unreachable since {since} ({round(time.time() - outage['since'])} s "
            f"ago): {error}")
