"""The lease's fence (PostgreSQL): a worker writes only while its supervisor leads.

A site's workers run on the host whose lease holder holds the site's lease (the `lease`
row, site/leader.py), and they are armed with its epoch. Every transaction they begin
first reads the lease row `FOR SHARE`: if another host has taken the lease since (the
epoch moved on), the transaction ends before it writes anything and `Fenced` is raised;
if not, the share lock keeps any takeover waiting until this transaction ends. So a
host frozen for longer than the lease (SIGSTOP, a hung mount) writes nothing once it
wakes. A worker frozen inside a transaction would keep the takeover waiting: the
server ends such a session after IDLE_IN_TRANSACTION, well within the lease.

Unarmed processes (clients, `balsam` commands, SQLite sites) are not fenced.
"""

from __future__ import annotations

import peewee

IDLE_IN_TRANSACTION = "5s"  # shorter than the lease (leader.LEASE_SECONDS)
_CHECK = ("SELECT epoch, host, pid, set_config('idle_in_transaction_session_timeout', "
          f"'{IDLE_IN_TRANSACTION}', true) FROM lease WHERE id = 1 FOR SHARE")

_epoch: int | None = None


class Fenced(Exception):
    """Another host took the site's lease: this worker must stop without writing.
    (Not a BalsamError: the workers' retry loops must not catch it.)"""


def arm(epoch: int | None) -> None:
    """In a worker, right after the fork: fence its transactions with `epoch`."""
    global _epoch
    _epoch = epoch


def check(database: peewee.Database) -> None:
    """Right after BEGIN (SitePostgres.begin): raise Fenced, the transaction rolled back,
    unless the lease still has our epoch; else hold it FOR SHARE until commit."""
    if _epoch is None:
        return
    row = database.execute_sql(_CHECK).fetchone()
    if row is not None and row[0] == _epoch:
        return
    database.execute_sql("ROLLBACK")
    holder = f"{row[1]} (pid {row[2]}, epoch {row[0]})" if row else "no one"
    raise Fenced(f"the site lease moved to {holder} since this host took it "
                 f"(epoch {_epoch})")
