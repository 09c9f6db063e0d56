"""A transaction that PostgreSQL aborts to break a deadlock (SQLSTATE 40P01) or a
serialization failure (40001) is run again, whole, a bounded number of times: the user
never sees either. Writers lock jobs in id order (db/jobs.py lock_jobs), so a deadlock
takes a session outside balsam_mp, or a worker's item rows, and is rare; the retry is
what makes it invisible when it happens. SQLite has neither: its one writer at a time
takes the whole database.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import peewee

T = TypeVar("T")
ATTEMPTS = 5  # tries in all; the last one's error reaches the caller
RETRIED = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, wherever it sits in the chain: psycopg's error
    carries it as `sqlstate`, peewee's wrapper carries psycopg's as its first argument,
    and the API's BalsamError keeps the database error as its context."""
    seen: set[int] = set()
    chain: list[object] = [exc]
    while chain:
        error = chain.pop()
        if not isinstance(error, BaseException) or id(error) in seen:
            continue
        seen.add(id(error))
        code = getattr(error, "sqlstate", None)
        if isinstance(code, str) and code:
            return code
        chain += [error.__cause__, error.__context__, *error.args[:1]]
    return None


def retry_transaction(database: peewee.Database, body: Callable[[], T],
                      attempts: int = ATTEMPTS) -> T:
    """body() in a transaction of its own (database.atomic()), run again on a deadlock or
    serialization failure, after a short random pause that grows with each try (two
    sessions that deadlocked do not meet again in step). Inside a transaction already,
    body() joins it: the outermost transaction is the one that can be run again."""
    if database.in_transaction():
        return body()
    for attempt in range(1, attempts + 1):
        try:
            with database.atomic():
                return body()
        except Exception as exc:  # a driver's error, or the API's BalsamError made of one
            if sqlstate(exc) not in RETRIED or attempt == attempts:
                raise
        time.sleep(random.uniform(0.005, 0.02) * 2 ** attempt)
    raise AssertionError("unreachable")  # the loop returns or raises
