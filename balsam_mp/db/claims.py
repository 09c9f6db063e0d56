"""The submitter's side of the database: claiming items into task rows, exactly once.

A claim is a lease: a task row in `submitting` names its owner ("pid:create_time") and a
lease expiry. A claim whose owner has died or whose lease has run out is taken over.
Every function here runs its own BEGIN IMMEDIATE transaction (on PostgreSQL, the claim's
read locks its rows with FOR UPDATE SKIP LOCKED instead).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass

import peewee
import psutil

from balsam_mp.db.bulk import dialect, insert_row, run
from balsam_mp.db.models import LogEvent, TransferItem, TransferTask, iso, utcnow
from balsam_mp.errors import StateConflict
from balsam_mp.states import Item, Task


def owner_id(pid: int | None = None) -> str:
    process = psutil.Process(pid)
    return f"{process.pid}:{process.create_time()}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    pid, _, created = owner.partition(":")
    try:
        process = psutil.Process(int(pid))
        return str(process.create_time()) == created and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


@dataclass(frozen=True)
class Group:
    direction: str
    alias: str


@dataclass
class Claim:
    task_id: int  # local transfer_task.id
    direction: str
    alias: str
    submission_id: str
    deadline: dt.datetime
    items: list[tuple[int, str, str, bool]]  # (item id, remote path, local path, recursive)
    protocol: str = ""  # the backend it was claimed for: a resend uses that one only


def _db() -> peewee.Database:
    return TransferTask._meta.database


def slot_use() -> list[tuple[str, str, str, int]]:
    """(protocol, alias, state, count) of the tasks in flight (site/domains.py counts
    the slots they take)."""
    return run("SELECT protocol, location_alias, state, count(*) FROM transfer_task "
               "WHERE state IN (:submitting, :active, :inactive) "
               "GROUP BY protocol, location_alias, state",
               {"submitting": Task.SUBMITTING, "active": Task.ACTIVE,
                "inactive": Task.INACTIVE}).fetchall()


# Pending items of one (direction, alias) that are due now, oldest job first: the
# claim's query, served by the (state, direction, location_alias, job) index.
_DUE_ITEMS = """
    SELECT {columns} FROM transfer_item
    WHERE state = :pending AND direction = :direction AND location_alias = :alias
      AND (not_before IS NULL OR not_before <= :now){batched}
    ORDER BY {order} LIMIT :limit{lock}"""
# The half of a split batch (items sharing a batch_key) to claim first, if any: the
# batch_key index holds only the few items waiting in such halves.
_DUE_HALF = """
    SELECT batch_key FROM transfer_item {index}
    WHERE batch_key IS NOT NULL AND state = :pending AND direction = :direction
      AND location_alias = :alias AND (not_before IS NULL OR not_before <= :now)
    LIMIT 1"""
_HALF_ITEMS = """
    SELECT id, remote_path, local_path, recursive FROM transfer_item
    WHERE batch_key = :key AND state = :pending ORDER BY id LIMIT :limit{lock}"""
_CLAIM_ITEMS = """
    UPDATE transfer_item SET state = :submitting, transfer_task_id = :task, updated_at = :now,
        batch_key = NULL
    WHERE id IN ({ids})
      AND state || '' = :pending  -- `|| ''` keeps SQLite on the ids, off the state index
"""


def _due(group: Group, now: str, limit: int, columns: str, batched: bool = True,
         lock: bool = False) -> list[tuple]:
    """Due items; only those in no split half unless `batched`. `lock`: the claim's
    read, which on PostgreSQL locks the rows and skips those another claim holds."""
    sql = _DUE_ITEMS.format(columns=columns, batched="" if batched else
                            " AND batch_key IS NULL", order=dialect().DUE_ORDER,
                            lock=dialect().SKIP_LOCKED if lock else "")
    return run(sql, {"pending": Item.PENDING, "direction": group.direction,
                     "alias": group.alias, "now": now, "limit": limit}).fetchall()


def _next_batch(group: Group, now: str, limit: int,
                half_limit: int) -> list[tuple[int, str, str, bool]]:
    """The items of the next batch: a waiting split half whole and alone (up to
    `half_limit`, whatever the batch size), else at most `limit` of the oldest jobs'
    items that are in no half."""
    params = {"pending": Item.PENDING, "direction": group.direction, "alias": group.alias,
              "now": now, "limit": limit}
    due_half = _DUE_HALF.format(index=dialect().indexed_by("transfer_item_batch_key"))
    half = run(due_half, params).fetchone()
    rows = run(_HALF_ITEMS.format(lock=dialect().SKIP_LOCKED),
               dict(params, key=half[0], limit=half_limit)).fetchall() if half else []
    if not rows:  # no half waits, or (PostgreSQL) another claim holds its items
        rows = _due(group, now, limit, "id, remote_path, local_path, recursive",
                    batched=False, lock=True)
    return [(i, remote, local, bool(recursive)) for i, remote, local, recursive in rows]


def ready_groups(candidates: list[Group], now: dt.datetime) -> list[Group]:
    """The candidate groups that have items due now, the one with the oldest job first.

    One index lookup per group, whatever the number of pending items."""
    oldest = {}
    for group in candidates:
        first = _due(group, iso(now), 1, "job_id")
        if first:
            oldest[group] = first[0][0]
    return sorted(oldest, key=oldest.get)


def recent_task_seconds(count: int = 9) -> float:
    """Median seconds from claim to finish of the last `count` tasks that succeeded
    (0.0 before any): what a task costs here, start-up included."""
    rows = run(f"SELECT {dialect().SECONDS_BETWEEN.format(start='created_at', end='updated_at')}"
               " FROM transfer_task WHERE state = :succeeded ORDER BY id DESC LIMIT :n",
               {"succeeded": Task.SUCCEEDED, "n": count}).fetchall()
    seconds = sorted(max(0.0, float(row[0] or 0.0)) for row in rows)
    return seconds[len(seconds) // 2] if seconds else 0.0


def due_count(groups: list[Group], now: dt.datetime, limit: int) -> int:
    """How many items of these groups are due now, counting at most `limit`."""
    total = 0
    for group in groups:
        if total >= limit:
            break
        due = _DUE_ITEMS.format(columns="1", batched="", order=dialect().DUE_ORDER, lock="")
        sql = f"SELECT count(*) FROM ({due}) AS due"
        total += run(sql, {"pending": Item.PENDING, "direction": group.direction,
                           "alias": group.alias, "now": iso(now),
                           "limit": limit - total}).fetchone()[0]
    return total


def claim_batches(groups: list[tuple[Group, str, str]], capacity: int, budget: int,
                  batch_size: int, take_submission_id: Callable[[Group], str], owner: str,
                  lease: float, deadline: dt.datetime) -> list[Claim]:
    """In one transaction, claim batches round-robin over groups: at most `capacity`
    batches of at most `batch_size` items, `budget` items in all, oldest job first.

    groups: (group, remote_address, protocol). Each batch gets a submission id from
    `take_submission_id` (fetched beforehand: nothing here touches the network)."""
    now = utcnow()
    claims: list[Claim] = []
    with _db().atomic():
        active = list(groups)
        while capacity > 0 and budget > 0 and active:
            for entry in list(active):
                if capacity <= 0 or budget <= 0:
                    break
                group, remote_address, protocol = entry
                items = _next_batch(group, iso(now), min(batch_size, budget), budget)
                if not items:
                    active.remove(entry)
                    continue
                sid = take_submission_id(group)
                task_id = insert_row(TransferTask, dict(
                    direction=group.direction, location_alias=group.alias, protocol=protocol,
                    remote_address=remote_address, state=Task.SUBMITTING, submission_id=sid,
                    item_count=len(items), owner=owner, deadline=deadline,
                    lease_expires=now + dt.timedelta(seconds=lease), created_at=now,
                    updated_at=now))
                claimed = run(_CLAIM_ITEMS.format(ids=dialect().ID_LIST.format(
                    param=":ids")), {
                    "submitting": Item.SUBMITTING, "pending": Item.PENDING, "task": task_id,
                    "now": iso(now), "ids": json.dumps([i[0] for i in items])}).rowcount
                if claimed != len(items):
                    raise StateConflict(f"claimed {claimed} of {len(items)} items under a lock")
                claims.append(Claim(task_id, group.direction, group.alias, sid, deadline, items,
                                    protocol))
                capacity -= 1
                budget -= len(items)
    return claims


def unsubmitted(owner: str, lease: float) -> list[Claim]:
    """Batches claimed but not yet submitted that are ours to send (again): our own
    (a submit that failed with a retryable error; their leases are renewed) and those
    whose owner died or whose lease ran out (taken over)."""
    waiting = run("SELECT id, owner, lease_expires FROM transfer_task WHERE state = :submitting",
                  {"submitting": Task.SUBMITTING}).fetchall()
    if not waiting:  # the common case: no write transaction at all
        return []
    now = utcnow()
    mine = []
    with _db().atomic():
        for task_id, task_owner, expires in waiting:
            leased = expires is not None and expires > iso(now)  # ISO text sorts as time
            if task_owner != owner and leased and owner_alive(task_owner):
                continue  # a live submitter's claim
            changed = (TransferTask.update(owner=owner, updated_at=now,
                                           lease_expires=now + dt.timedelta(seconds=lease))
                       .where(TransferTask.id == task_id, TransferTask.state == Task.SUBMITTING,
                              TransferTask.owner == task_owner).execute())
            if changed:
                mine.append(task_id)
    return [claim_of(task_id) for task_id in mine]


def claim_of(task_id: int) -> Claim:
    task = TransferTask.get_by_id(task_id)
    items = list(TransferItem.select(TransferItem.id, TransferItem.remote_path,
                                     TransferItem.local_path, TransferItem.recursive)
                 .where(TransferItem.transfer_task == task_id,
                        TransferItem.state == Item.SUBMITTING)
                 .order_by(TransferItem.id).tuples())
    return Claim(task.id, task.direction, task.location_alias, task.submission_id,
                 task.deadline, items, task.protocol)


_TASK_SUBMITTED = """
    UPDATE transfer_task SET state = :task_active, task_id = :remote_id, owner = NULL,
        lease_expires = NULL, updated_at = :now, submitted_at = :now
    WHERE id = :task AND state = :task_submitting AND owner = :owner"""
_ITEMS_SUBMITTED = """
    UPDATE transfer_item SET state = :item_active, task_id = :remote_id, updated_at = :now
    WHERE transfer_task_id = :task AND state = :item_submitting"""


def mark_submitted(claims: list[tuple[Claim, str]], owner: str) -> None:
    """Record the remote task ids: tasks and their items become active, in one go. Each
    claim in a savepoint: on PostgreSQL a row another session holds (lock_timeout) keeps
    only its own claim `submitting`, to be recorded at the next pass's resend."""
    params = {"task_active": Task.ACTIVE, "task_submitting": Task.SUBMITTING,
              "item_active": Item.ACTIVE, "item_submitting": Item.SUBMITTING,
              "owner": owner, "now": iso(utcnow())}
    with _db().atomic():
        for claim, remote_id in claims:
            params.update(task=claim.task_id, remote_id=remote_id)
            try:
                with _db().atomic():  # nested: a savepoint
                    if not run(_TASK_SUBMITTED, params).rowcount:  # our lease ran out and
                        continue  # another took it over: its resend records the same task
                    run(_ITEMS_SUBMITTED, params)
            except peewee.OperationalError:  # a lock not had in time: this claim only
                continue


def record_site_event(kind: str, message: str) -> bool:
    """A site-level event (no job), e.g. ACTION_REQUIRED. Skips an exact repeat."""
    last = (LogEvent.select().where(LogEvent.job.is_null(), LogEvent.transfer_item.is_null())
            .order_by(LogEvent.id.desc()).first())
    if last is not None and last.to_state == kind and last.message == message:
        return False
    with _db().atomic():
        LogEvent.create(job=None, to_state=kind, message=message)
    return True
