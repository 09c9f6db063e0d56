"""Who holds the site's rows: sessions that could make the site wait (PostgreSQL).

The workers never wait long on a lock (lock_timeout) and pass over the jobs another
session holds, moving them when it lets go; a session that holds rows for long still
delays those jobs, so `site status` names it under ACTION REQUIRED.
"""

from __future__ import annotations

import datetime as dt

from balsam_mp.db.bulk import dialect, run

REPORT_AFTER = 60.0  # seconds a transaction may hold the site's rows before status says so


def long_lock_holders(seconds: float = REPORT_AFTER) -> list[str]:
    """One line per session (not this one) whose transaction, open for over `seconds`,
    holds locks on the site's tables; none on SQLite (one writer, no lock held long)."""
    if not dialect().LONG_LOCKS:
        return []
    rows = run(dialect().LONG_LOCKS, {"seconds": seconds}).fetchall()
    return [f"PostgreSQL session {pid} ({application or 'no application_name'}, {state}) has "
            f"held rows of the site since {_when(since)}; its jobs wait: commit or end it "
            f"(SELECT pg_terminate_backend({pid}))" for pid, application, since, state in rows]


def _when(since: dt.datetime) -> str:
    return since.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
