"""Copying a stopped SQLite site into a new PostgreSQL schema (`balsam site migrate`).

One transaction on the target does it all: the site's schema and tables (made as `site
init` makes them), then apps, jobs, tasks, items, events, the request budget and the
meta rows with their ids, sequences set past the largest id, and a count of every
table compared with the source's. Any error or mismatch rolls the whole of it back:
the target is as it was, and the SQLite file was only read (under its write lock, so
no straggler commits meanwhile).

Claims of the stopped site's processes are expired, not dropped: a task still
`submitting` keeps its owner and submission id, and the new submitter takes it over at
once and sends it again with that id, so Globus answers with the task it already made,
if any (exactly once, as after a crash).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from balsam_mp.db import connection, schema
from balsam_mp.db.failures import explain
from balsam_mp.db.models import (
    App,
    Job,
    LogEvent,
    Meta,
    RequestBudget,
    TransferItem,
    TransferTask,
    database_proxy,
    iso,
    utcnow,
)
from balsam_mp.db.postgres import SitePostgres
from balsam_mp.errors import BalsamError, first_line

# in the order their foreign keys need; a table of the target not named here (e.g. the
# leadership lease) is the new site's own and starts empty
COPIED: tuple[type[peewee.Model], ...] = (App, Job, TransferTask, TransferItem, LogEvent,
                                          RequestBudget)
CHUNK = 5000  # rows read from SQLite at a time
_CLAIMED = (TransferTask, TransferItem)  # tables whose rows carry an owner and a lease


@dataclass(frozen=True)
class Copied:
    counts: dict[str, int]  # table -> rows copied (and found on both sides)
    released: int  # claims of the stopped site's processes, expired
    submitting: int  # tasks still submitting: sent again with their submission ids
    seconds: float


def open_source(path: Path) -> sqlite3.Connection:
    """The site's SQLite file, checked and brought to the current schema as `site start`
    would, then opened holding its write lock (BEGIN IMMEDIATE) until closed."""
    connection.connect(path).close()
    try:
        source = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        source.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise explain(path, exc) from exc
    return source


def close_source(source: sqlite3.Connection) -> None:
    """Let go of the lock and fold the WAL into the file, so the backup is one file (if
    another connection keeps the WAL, it goes along with the backup)."""
    try:
        if source.in_transaction:
            source.execute("ROLLBACK")
        source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass
    finally:
        source.close()


def source_counts(source: sqlite3.Connection) -> dict[str, int]:
    return {model._meta.table_name: source.execute(
        f'SELECT count(*) FROM "{model._meta.table_name}"').fetchone()[0]
        for model in (Meta, *COPIED)}


def refuse_occupied(database: SitePostgres) -> None:
    """Refuse a target schema that holds a site, or any rows: the move never merges."""
    try:
        _refuse_occupied(database)
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:  # e.g. no right to read it
        first = first_line(exc)
        raise BalsamError(f"schema {database.schema}: cannot see what it holds: "
                          f"{first}") from None


def _refuse_occupied(database: SitePostgres) -> None:
    tables = [name for (name,) in database.execute_sql(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        (database.schema,)).fetchall()]
    where = f"schema {database.schema}"
    if "meta" in tables:
        row = database.execute_sql(f"SELECT value FROM {_qualified(database, 'meta')} "
                                   "WHERE key = %s", ("site_name",)).fetchone()
        held = f"site {row[0]!r}" if row else "a balsam site"
        raise BalsamError(f"{where} already holds {held}: the move copies into a new schema "
                          f"only; drop that one first (DROP SCHEMA {database.schema} "
                          "CASCADE) if its rows are not needed, or give this site "
                          "another site_name")
    for table in tables:
        if database.execute_sql(f"SELECT EXISTS (SELECT 1 FROM "
                                f"{_qualified(database, table)})").fetchone()[0]:
            raise BalsamError(f"{where} already has rows in table {table}: the move copies "
                              "into an empty schema only")


def _qualified(database: SitePostgres, table: str) -> str:
    """schema.table, quoted (a table name read from the server may hold anything)."""
    return f'"{database.schema}"."' + table.replace('"', '""') + '"'


def copy(source: sqlite3.Connection, database: SitePostgres) -> Copied:
    """Everything of the site, in one transaction on `database` (bound to the models);
    raises BalsamError, after the rollback, on any error or mismatch."""
    started = time.monotonic()
    expected = source_counts(source)
    if not source.execute("SELECT 1 FROM meta WHERE key = 'site_name'").fetchone():
        expected["meta"] += 1  # the new schema names its site (postgres.py)
    try:
        with database.atomic():
            database.create_site_schema()
            # the path `site init` takes on PostgreSQL (tables, hooks, version, owner)
            schema.create_schema(database)
            for model in COPIED:
                _copy_table(source, database, model)
            _copy_meta(source)
            now = iso(utcnow())
            released = sum(_expire(database, model, now) for model in _CLAIMED)
            submitting = database.execute_sql(
                "SELECT count(*) FROM transfer_task WHERE state = 'submitting'").fetchone()[0]
            _reset_sequences(database)
            counts = _compare(database, expected)
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:  # rolled back: say why
        first = first_line(exc)
        raise BalsamError(f"schema {database.schema}: the copy failed and was rolled back "
                          f"(nothing was written): {first}") from None
    with contextlib.suppress(peewee.DatabaseError, peewee.InterfaceError):
        # fresh planner statistics, or the workers' claims walk every copied item
        # until autovacuum analyzes the tables (see postgres.py)
        database.execute_sql("ANALYZE " + ", ".join(f'"{m._meta.table_name}"' for m in COPIED))
    return Copied(counts, released, submitting, time.monotonic() - started)


def _copy_table(source: sqlite3.Connection, database: SitePostgres,
                model: type[peewee.Model]) -> None:
    """COPY every row, every column, ids included (the driver streams them in batches)."""
    table = model._meta.table_name
    fields = list(model._meta.sorted_fields)
    have = {row[1] for row in source.execute(f'PRAGMA table_info("{table}")')}
    missing = [f.column_name for f in fields if f.column_name not in have]
    if missing:  # the source was brought to the current schema: a file edited by hand
        raise BalsamError(f"table {table} of the SQLite site has no column "
                          f"{', '.join(missing)}")
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    booleans = [n for n, f in enumerate(fields) if isinstance(f, peewee.BooleanField)]
    rows = source.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid')
    with peewee.__exception_wrapper__, database.connection().cursor() as cursor, \
            cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as stream:
        while chunk := rows.fetchmany(CHUNK):
            for row in chunk:
                stream.write_row(_converted(row, booleans) if booleans else row)


def _converted(row: tuple, booleans: list[int]) -> list[Any]:
    """SQLite keeps booleans as 0/1."""
    values = list(row)
    for n in booleans:
        if values[n] is not None:
            values[n] = bool(values[n])
    return values


def _copy_meta(source: sqlite3.Connection) -> None:
    """The source's meta rows the new schema lacks (e.g. what the site published for
    clients); its schema_version must be the one just made."""
    for key, value in source.execute("SELECT key, value FROM meta ORDER BY key"):
        row = Meta.get_or_none(Meta.key == key)
        if row is None:
            Meta.insert(key=key, value=value).execute()
        elif row.value != value and key != "site_name":
            raise BalsamError(f"meta {key}: {value!r} in the SQLite site, {row.value!r} in "
                              "the new schema")


def _expire(database: SitePostgres, model: type[peewee.Model], now: str) -> int:
    """Claims held by the stopped site's processes end now: the new workers take them."""
    return database.execute_sql(
        f'UPDATE "{model._meta.table_name}" SET lease_expires = %s WHERE owner IS NOT NULL '
        "AND (lease_expires IS NULL OR lease_expires > %s)", (now, now)).rowcount


def _reset_sequences(database: SitePostgres) -> None:
    """The next id of every table goes past the largest copied one."""
    for model in COPIED:
        key = model._meta.primary_key
        if isinstance(key, peewee.AutoField):
            table = f'"{database.schema}"."{model._meta.table_name}"'
            database.execute_sql(
                f"SELECT setval(pg_get_serial_sequence(%s, %s), "
                f'COALESCE((SELECT max("{key.column_name}") FROM {table}), 0) + 1, false)',
                (table, key.column_name))


def _compare(database: SitePostgres, expected: dict[str, int]) -> dict[str, int]:
    """The rows of every table on both sides."""
    found = {name: database.execute_sql(f'SELECT count(*) FROM "{name}"').fetchone()[0]
             for name in expected}
    wrong = [f"{name}: {expected[name]} in SQLite, {found[name]} in PostgreSQL"
             for name in expected if found[name] != expected[name]]
    if wrong:
        raise BalsamError(f"schema {database.schema}: row counts differ after the copy, so it "
                          f"was rolled back (nothing was written): {'; '.join(wrong)}")
    return found


def bind(database: SitePostgres) -> None:
    """The models write to `database` (the copy's Meta rows, the schema's creation)."""
    database_proxy.initialize(database)
