"""The few per-batch SQL fragments that differ between engines: PostgreSQL's.

Same names as sql_sqlite.py. JSON columns are text (as in SQLite), cast to jsonb where
a statement looks inside.
"""

from __future__ import annotations

import functools
import re

ID_LIST = ("SELECT CAST(value AS bigint) AS value "
           "FROM jsonb_array_elements_text(CAST({param} AS jsonb))")
TEXT_LIST = "SELECT value FROM jsonb_array_elements_text(CAST({param} AS jsonb))"
JSON_PAIR = ("EXISTS (SELECT 1 FROM jsonb_each(CAST(",
             " AS jsonb)) AS tag WHERE tag.key = %s AND tag.value = to_jsonb(CAST(%s AS text)))")
# a case-sensitive substring test (LIKE ignores case)
INSTR = "strpos"
# writers run side by side (READ COMMITTED): a claim locks the rows it takes and passes
# over those another transaction holds
SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
# Moving a job checks that none of its items is still in flight. Two transactions that
# each finish some items of one job must not both decide on a snapshot missing the
# other's commit: the job rows are locked first (in id order, no deadlock), so the
# second waits for the first and its next statement sees the first's items done.
LOCK_JOBS = "SELECT id FROM job WHERE id IN ({ids}) ORDER BY id FOR UPDATE"
# The site's own moves never wait on a job someone else holds (a user's psql session
# left idle in a transaction): they take the jobs they can and leave the rest for their
# next pass.
LOCK_FREE_JOBS = LOCK_JOBS + " SKIP LOCKED"
# How long a worker's statement waits for a lock before it gives up (and is retried):
# no session, ours or a stranger's, can hold the site for ever.
WORKER_LOCK_TIMEOUT = "SET lock_timeout = '5s'"
# Sessions holding locks on the site's tables in a transaction older than :seconds
# (a row locked FOR UPDATE shows as a RowShareLock on its table).
LONG_LOCKS = """
    SELECT DISTINCT a.pid, a.application_name, a.xact_start, a.state
    FROM pg_stat_activity AS a JOIN pg_locks AS l ON l.pid = a.pid
    JOIN pg_class AS c ON c.oid = l.relation
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE a.pid <> pg_backend_pid() AND n.nspname = current_schema()
      AND c.relname IN ('job', 'transfer_item', 'transfer_task', 'request_budget')
      AND a.xact_start < now() - make_interval(secs => :seconds)
    ORDER BY a.xact_start"""
# Deleting jobs checks that none of their items is in flight: their items are locked
# first, so a claim taking them either commits before the check or passes over them.
# Job creations of one site check and undo folders on disk, so they take turns: a row
# lock in the site's own schema, which only roles with rights there can take (an
# advisory lock's key is anyone's)
CREATION_LOCK = "SELECT 1 FROM meta WHERE key = 'schema_version' FOR UPDATE"
LOCK_ITEMS_OF_JOBS = ("SELECT id FROM transfer_item WHERE job_id IN ({ids}) ORDER BY id "
                      "FOR UPDATE")

# oldest job first, in the order of the claim index (state, direction, alias, job): no
# sort, whatever the statistics say
DUE_ORDER = "job_id"
# seconds between two ISO-8601 text timestamps
SECONDS_BETWEEN = ("CAST(EXTRACT(EPOCH FROM CAST({end} AS timestamptz) - "
                   "CAST({start} AS timestamptz)) AS double precision)")
# Without statistics (a table just filled by a bulk create) the planner takes the claim
# for a one-row query and sorts every pending item: 34 ms instead of 0.1 ms per claim
# at 40,000 items. Autovacuum analyzes only after its next nap.
ANALYZE = "ANALYZE job, transfer_item"

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def indexed_by(index: str) -> str:
    """PostgreSQL's planner picks the index from its statistics."""
    return ""


@functools.lru_cache(maxsize=256)
def named(sql: str) -> str:
    """`:name` -> `%(name)s` (psycopg's style); a literal % is doubled."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
# Many rows at once: COPY (PostgreSQL), else executemany
COPY_ROWS = True
