"""The submitter's side of the database: claiming items into task rows, exactly once.

A claim is a lease: a task row in `submitting` names its owner ("pid:create_time") and a
lease expiry. A claim whose owner has died or whose lease has run out is taken over.
Every function here runs its own BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import peewee
import psutil

from balsam_mp.db.bulk import value_list
from balsam_mp.db.models import LogEvent, TransferItem, TransferTask, utcnow
from balsam_mp.db.outcomes import Failure, fail_items
from balsam_mp.errors import StateConflict
from balsam_mp.settings import TransferSettings
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


def _db() -> peewee.Database:
    return TransferTask._meta.database


def in_flight_count() -> int:
    return TransferTask.select().where(TransferTask.state.in_(Task.IN_FLIGHT)).count()


def ready_groups(candidates: list[Group], now: dt.datetime) -> list[Group]:
    """The candidate groups that have items due now, the one with the oldest job first.

    One index lookup per group, whatever the number of pending items."""
    oldest = {}
    for group in candidates:
        first = (TransferItem.select(TransferItem.job).where(_due(group, now))
                 .order_by(TransferItem.job).limit(1).tuples().first())
        if first is not None:
            oldest[group] = first[0]
    return sorted(oldest, key=oldest.get)


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
                items = _due_items(group, min(batch_size, budget), now)
                if not items:
                    active.remove(entry)
                    continue
                sid = take_submission_id(group)
                task = TransferTask.create(
                    direction=group.direction, location_alias=group.alias, protocol=protocol,
                    remote_address=remote_address, state=Task.SUBMITTING, submission_id=sid,
                    item_count=len(items), owner=owner, deadline=deadline,
                    lease_expires=now + dt.timedelta(seconds=lease), created_at=now,
                    updated_at=now)
                claimed = (TransferItem.update(state=Item.SUBMITTING, transfer_task=task.id,
                                               updated_at=now)
                           .where(TransferItem.id.in_(value_list([i[0] for i in items])),
                                  # `|| ''` keeps SQLite on the ids, off the state index
                                  TransferItem.state.concat("") == Item.PENDING)
                           .execute())
                if claimed != len(items):
                    raise StateConflict(f"claimed {claimed} of {len(items)} items under a lock")
                claims.append(Claim(task.id, group.direction, group.alias, sid, deadline, items))
                capacity -= 1
                budget -= len(items)
    return claims


def _due(group: Group, now: dt.datetime) -> peewee.Expression:
    return ((TransferItem.state == Item.PENDING) & (TransferItem.direction == group.direction) &
            (TransferItem.location_alias == group.alias) &
            (TransferItem.not_before.is_null() | (TransferItem.not_before <= now)))


def _due_items(group: Group, limit: int, now: dt.datetime) -> list[tuple[int, str, str, bool]]:
    query = (TransferItem.select(TransferItem.id, TransferItem.remote_path,
                                 TransferItem.local_path, TransferItem.recursive)
             .where(_due(group, now)).order_by(TransferItem.job, TransferItem.id).limit(limit))
    # plain rows straight from the cursor: these columns need no conversion
    return [(i, remote, local, bool(recursive))
            for i, remote, local, recursive in _db().execute(query).fetchall()]


def take_over_abandoned(owner: str, lease: float) -> list[Claim]:
    """Submitting tasks whose owner died or whose lease ran out become ours."""
    now = utcnow()
    others = list(TransferTask.select().where(TransferTask.state == Task.SUBMITTING,
                                              TransferTask.owner != owner))
    if not others:  # the common case: no write transaction at all
        return []
    mine = []
    with _db().atomic():
        for task in others:
            if task.owner == owner or (owner_alive(task.owner) and task.lease_expires > now):
                continue
            changed = (TransferTask.update(owner=owner, updated_at=now,
                                           lease_expires=now + dt.timedelta(seconds=lease))
                       .where(TransferTask.id == task.id, TransferTask.state == Task.SUBMITTING,
                              TransferTask.owner == task.owner).execute())
            if changed:
                mine.append(task.id)
    return [_claim_of(task_id) for task_id in mine]


def my_unsubmitted(owner: str) -> list[Claim]:
    """Our own submitting tasks (a submit that failed with a retryable error)."""
    tasks = TransferTask.select(TransferTask.id).where(
        TransferTask.state == Task.SUBMITTING, TransferTask.owner == owner)
    return [_claim_of(t.id) for t in tasks]


def _claim_of(task_id: int) -> Claim:
    task = TransferTask.get_by_id(task_id)
    items = list(TransferItem.select(TransferItem.id, TransferItem.remote_path,
                                     TransferItem.local_path, TransferItem.recursive)
                 .where(TransferItem.transfer_task == task_id,
                        TransferItem.state == Item.SUBMITTING)
                 .order_by(TransferItem.id).tuples())
    return Claim(task.id, task.direction, task.location_alias, task.submission_id,
                 task.deadline, items)


def renew_leases(owner: str, lease: float) -> None:
    now = utcnow()
    with _db().atomic():
        TransferTask.update(lease_expires=now + dt.timedelta(seconds=lease)).where(
            TransferTask.state == Task.SUBMITTING, TransferTask.owner == owner).execute()


def mark_submitted(claims: list[tuple[Claim, str]], owner: str) -> None:
    """Record the remote task ids: tasks and their items become active, in one go."""
    now = utcnow()
    with _db().atomic():
        for claim, remote_id in claims:
            changed = (TransferTask.update(state=Task.ACTIVE, task_id=remote_id, owner=None,
                                           lease_expires=None, updated_at=now)
                       .where(TransferTask.id == claim.task_id,
                              TransferTask.state == Task.SUBMITTING,
                              TransferTask.owner == owner).execute())
            if not changed:  # our lease ran out and another submitter took it over: its
                continue     # resend with the same submission id records the same task
            (TransferItem.update(state=Item.ACTIVE, task_id=remote_id, updated_at=now)
             .where(TransferItem.transfer_task == claim.task_id,
                    TransferItem.state == Item.SUBMITTING).execute())


def abandon(claim: Claim, code: str, reason: str, policy: TransferSettings) -> None:
    """A batch the service refused for good: the task fails, its items fail or retry."""
    now = utcnow()
    with _db().atomic():
        TransferTask.update(state=Task.FAILED, fatal_error=f"{code}: {reason}", owner=None,
                            updated_at=now).where(TransferTask.id == claim.task_id,
                                                  TransferTask.state == Task.SUBMITTING).execute()
        fail_items([Failure(item_id, code, reason) for item_id, *_ in claim.items], policy, now)


def record_site_event(kind: str, message: str) -> bool:
    """A site-level event (no job), e.g. ACTION_REQUIRED. Skips an exact repeat."""
    last = (LogEvent.select().where(LogEvent.job.is_null(), LogEvent.transfer_item.is_null())
            .order_by(LogEvent.id.desc()).first())
    if last is not None and last.to_state == kind and last.message == message:
        return False
    with _db().atomic():
        LogEvent.create(job=None, to_state=kind, message=message)
    return True
