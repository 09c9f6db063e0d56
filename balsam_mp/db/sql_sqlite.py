"""The few per-batch SQL fragments that differ between engines: SQLite's.

Every statement is written with `:name` parameters; `named()` turns them into what the
driver takes. sql_postgres.py has the same names.
"""

from __future__ import annotations

# the ids (or names) of a JSON array parameter, as one column `value`
ID_LIST = "SELECT value FROM json_each({param})"
TEXT_LIST = ID_LIST
# a subquery over a JSON object column's pairs: key = ? AND value = ?
JSON_PAIR = ("EXISTS (SELECT 1 FROM json_each(",
             ") AS tag WHERE tag.key = ? AND tag.type = 'text' AND tag.value = ?)")
# a case-sensitive substring test (LIKE ignores case)
INSTR = "instr"
# SQLite serialises writers (BEGIN IMMEDIATE): a claim needs no row locks
SKIP_LOCKED = ""
# rows to lock before checking a job's items (SQLite: the write lock already covers it)
LOCK_JOBS: str | None = None
LOCK_FREE_JOBS: str | None = None
WORKER_LOCK_TIMEOUT: str | None = None  # busy_timeout serves (db/connection.py)
LONG_LOCKS: str | None = None  # one writer at a time: no lock is held past a statement
LOCK_ITEMS_OF_JOBS: str | None = None
CREATION_LOCK: str | None = None
# the claim's order: oldest job first
DUE_ORDER = "job_id, id"
# seconds between two ISO-8601 text timestamps
SECONDS_BETWEEN = "(julianday({end}) - julianday({start})) * 86400.0"
# statistics to refresh after a big insert (SQLite's planner needs none for these)
ANALYZE: str | None = None


def named(sql: str) -> str:
    return sql


def indexed_by(index: str) -> str:
    """Where SQLite's planner must be told the index (one that holds few rows, e.g. the
    batch_key index: only items waiting in split halves)."""
    return f"INDEXED BY {index}"
# Many rows at once: COPY (PostgreSQL), else executemany
COPY_ROWS = False
