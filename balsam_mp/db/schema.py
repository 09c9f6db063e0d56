"""A site database's tables: made whole for a new site, or brought up from an older
schema version one step at a time (MIGRATIONS), one migrating process at a time."""

from __future__ import annotations

from collections.abc import Callable

import peewee

from balsam_mp.db.models import ALL_MODELS, SCHEMA_VERSION, Lease, Meta, RequestBudget
from balsam_mp.db.postgres import SitePostgres
from balsam_mp.errors import BalsamError

Database = peewee.Database


def create_schema(db: Database) -> None:
    with db.atomic():
        db.create_tables(ALL_MODELS)
        db.install_schema_hooks()
        Meta.insert(key="schema_version", value=str(SCHEMA_VERSION)).on_conflict_ignore().execute()
        if isinstance(db, SitePostgres):  # whose schema this is (two names may map to it)
            Meta.insert(key="site_name", value=db.site).on_conflict_ignore().execute()


def _split_batches(db: Database) -> None:
    """v2: split halves of a poisoned batch (transfer_item.split_round, batch_key) and
    the time a task's fault started repeating (transfer_task.fault_since)."""
    for statement in (
            'ALTER TABLE "transfer_item" ADD COLUMN "split_round" INTEGER NOT NULL DEFAULT 0',
            'ALTER TABLE "transfer_item" ADD COLUMN "batch_key" TEXT',
            'CREATE INDEX "transfer_item_batch_key" ON "transfer_item" ("batch_key")',
            'ALTER TABLE "transfer_task" ADD COLUMN "fault_since" TEXT'):
        db.execute_sql(statement)


def _request_budget(db: Database) -> None:
    """v3: the Globus request budget the workers share (request_budget)."""
    db.create_tables([RequestBudget])


# Migration hook: version -> function bringing the schema from version-1 to version.
def _interventions(db: Database) -> None:
    """v4: a user's cancel recorded on its task (transfer_task.cancel_requested), and a
    stage-out to send again for a newer run (transfer_item.resend)."""
    boolean = "BOOLEAN" if isinstance(db, SitePostgres) else "INTEGER"
    for statement in (
            'ALTER TABLE "transfer_task" ADD COLUMN "cancel_requested" TEXT',
            f'ALTER TABLE "transfer_item" ADD COLUMN "resend" {boolean} NOT NULL DEFAULT FALSE'):
        db.execute_sql(statement)


def _task_times(db: Database) -> None:
    """v5: when a task was accepted by the service and first seen running there
    (transfer_task.submitted_at, started_at), for the timeline of `balsam site report`."""
    for column in ("submitted_at", "started_at"):
        db.execute_sql(f'ALTER TABLE "transfer_task" ADD COLUMN "{column}" TEXT')


def _event_data(db: Database) -> None:
    """v6: the state_data a user gives with a state change, kept on its event
    (log_event.data, Balsam's EventLog.data)."""
    db.execute_sql('ALTER TABLE "log_event" ADD COLUMN "data" TEXT')


def _lease(db: Database) -> None:
    """v7: the site's leadership on PostgreSQL (lease, site/leader.py)."""
    db.create_tables([Lease])


MIGRATIONS: dict[int, Callable[[Database], None]] = {2: _split_batches, 3: _request_budget,
                                                     4: _interventions, 5: _task_times,
                                                     6: _event_data, 7: _lease}


def migrate(db: Database) -> None:
    name = db.database
    row = Meta.get_or_none(Meta.key == "schema_version") \
        if db.table_exists(Meta._meta.table_name) else None
    if row is None:
        if isinstance(db, SitePostgres):
            raise BalsamError(f"{name}: no site {db.site!r} in this database (no schema "
                              f"{db.schema}, or none this role may use); `balsam site init "
                              "PATH --database-url URL` makes it")
        raise BalsamError(f"{name}: not a balsam site database (no schema_version)")
    owner = Meta.get_or_none(Meta.key == "site_name")
    if isinstance(db, SitePostgres) and owner is not None and owner.value != db.site:
        raise BalsamError(f"{name}: schema {db.schema} belongs to site {owner.value!r}, not "
                          f"{db.site!r}; rename one of the two sites")
    version = int(row.value)
    if version > SCHEMA_VERSION:
        raise BalsamError(
            f"{name}: schema version {version} is newer than this balsam_mp "
            f"({SCHEMA_VERSION}); upgrade balsam_mp"
        )
    while version < SCHEMA_VERSION:
        with db.atomic():  # SQLite: BEGIN IMMEDIATE, one migrating process at a time
            if isinstance(db, SitePostgres):  # the same: others wait for our commit
                db.execute_sql('LOCK TABLE "meta" IN EXCLUSIVE MODE')
            # read again under the lock: another process may have migrated meanwhile
            version = int(Meta.get(Meta.key == "schema_version").value)
            if version < SCHEMA_VERSION:
                version += 1
                MIGRATIONS[version](db)
                Meta.update(value=str(version)).where(Meta.key == "schema_version").execute()
