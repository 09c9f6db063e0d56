"""Bulk inserts, value lists and plain SQL: for thousands of rows, and for hot paths.

peewee builds the SQL of an insert_many row by row in Python, which cost about two
thirds of the time of creating 20,000 jobs. Here the statement is built once and
the driver's executemany binds every row; values still go through each field's db_value.

The statements the workers run for every batch (claim, submit, finish, advance jobs)
are written out as SQL and run with `run()`: building them with peewee cost about as
much CPU as SQLite spent executing them (measured: scripts/bench_site.py (b)).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import peewee

from balsam_mp.db.models import database_proxy


def insert_rows(model: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    """INSERT every row (dicts with the same keys) in the caller's transaction. On
    PostgreSQL as one COPY: one statement, streamed, where executemany sends a statement
    per row (each parsed by the server, each firing the NOTIFY trigger)."""
    if not rows:
        return
    sql, values = _insert_statement(model, rows)
    database = model._meta.database
    with _driver_errors(database):
        cursor = database.cursor()
        if dialect().COPY_ROWS:
            columns = sql[sql.index("("):sql.index(")") + 1]
            with database.lock, cursor.copy(
                    f'COPY "{model._meta.table_name}" {columns} FROM STDIN') as copy:
                for row in values:
                    copy.write_row(row)
        else:
            cursor.executemany(sql, values)


def insert_row(model: type[peewee.Model], row: dict[str, Any]) -> int:
    """INSERT one row in the caller's transaction; returns its id."""
    sql, values = _insert_statement(model, [row])
    cursor = model._meta.database.cursor()
    with _driver_errors(model._meta.database):
        cursor.execute(f'{sql} RETURNING "{model._meta.primary_key.column_name}"', values[0])
    return cursor.fetchone()[0]


@contextlib.contextmanager
def _driver_errors(database: peewee.Database) -> Iterator[None]:
    """A driver's error as peewee's (IntegrityError), a failed file or disk as the
    database's DatabaseFailure."""
    try:
        with peewee.__exception_wrapper__:
            yield
    except peewee.DatabaseError as exc:
        database.raise_failure(exc)
        raise


def _insert_statement(model: type[peewee.Model],
                      rows: list[dict[str, Any]]) -> tuple[str, list[list[Any]]]:
    """One INSERT for rows with the same keys, with the fields' defaults filled in."""
    defaults = {name: field.default() if callable(field.default) else field.default
                for name, field in model._meta.fields.items()
                if field.default is not None and name not in rows[0]}
    rows = [{**defaults, **row} for row in rows] if defaults else rows
    fields = [model._meta.fields[name] for name in rows[0]]
    columns = ", ".join(f'"{field.column_name}"' for field in fields)
    marks = ", ".join(model._meta.database.param for _ in fields)
    sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES ({marks})'
    return sql, [[field.db_value(row[field.name]) for field in fields] for row in rows]


def value_list(values: list[int] | list[str]) -> peewee.SQL | list:
    """Many ids (or names) as ONE bound parameter, for `field.in_(value_list(values))`.

    A list of a hundred values costs peewee a node per value to build, and SQLite a
    variable each (with a limit on how many); one JSON array read by json_each (on
    PostgreSQL jsonb_array_elements_text) costs neither, whatever its length."""
    if not values:
        return []  # peewee writes `field IN ()` as false; no list to type on PostgreSQL
    database = database_proxy.obj
    listing = database.dialect.ID_LIST if isinstance(values[0], int) \
        else database.dialect.TEXT_LIST
    return peewee.SQL(f"({listing.format(param=database.param)})", (json.dumps(values),))


BIG_INSERT = 1000  # jobs: after creating this many at once, refresh planner statistics


def refresh_statistics(rows: int) -> None:
    """After a big insert, on engines whose planner needs fresh statistics."""
    if rows >= BIG_INSERT and dialect().ANALYZE:
        database_proxy.execute_sql(dialect().ANALYZE)


def lock_job_creation() -> None:
    """In the caller's transaction: one job creation (or its undo) of this site at a
    time, as SQLite's write lock gives. They check folders on disk that another's
    commit or undo changes (api/jobs.py)."""
    if dialect().CREATION_LOCK:
        database_proxy.execute_sql(dialect().CREATION_LOCK)


def dialect():
    """The SQL fragments of this process's engine (sql_sqlite or sql_postgres)."""
    return database_proxy.obj.dialect


def run(sql: str, params: dict[str, Any] | None = None) -> Any:
    """Plain SQL with `:name` parameters on this process's connection (a DB-API cursor)."""
    return database_proxy.execute_sql(dialect().named(sql), params)


def states_in(name: str, values: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """`IN (:name0, :name1, ...)` for a few states, and its parameters: the states a
    move may start from (itemmoves.sources), written into a compare-and-set."""
    params = {f"{name}{n}": value for n, value in enumerate(values)}
    return "IN (" + ", ".join(f":{key}" for key in params) + ")", params
