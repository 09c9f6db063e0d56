"""The one table of allowed transfer item and task state changes, by actor.

Jobs have theirs in transitions.py; this is its counterpart for what moves files. Each
writer asks `sources(kind, actor, to_state)` for the states it may move rows from, and
uses them in its compare-and-set (`UPDATE ... WHERE state IN (...)`), so a row that some
other actor moved meanwhile is left alone. The actors:

- SUBMITTER claims pending items into a task and records what the service answered;
- POLLER records a task's progress and its end (done, retried, failed, split);
- CANCEL is a user's `transfer cancel`: it resolves a task still being submitted, asks
  the service to cancel it, and ends its items `error "cancelled"` (or `done`, if the
  service says the task had already finished);
- RETRY is `transfer retry`: failed items go round again;
- JOB_MOVE is a job's state change: entering FAILED holds its unsent stage-out items,
  entering POSTPROCESSED (a new run's result) sends every stage-out item again;
- DELETE removes a job's items with it, never while they are in a task in flight.
"""

from __future__ import annotations

from balsam_mp.errors import StateConflict
from balsam_mp.states import Item, Task

SUBMITTER = "submitter"
POLLER = "poller"
CANCEL = "cancel"
RETRY = "retry"
JOB_MOVE = "job move"
DELETE = "delete"

_FLIGHT = Item.IN_FLIGHT  # submitting, active, inactive
_DELETED = "deleted"

ITEM_MOVES: dict[str, dict[str, frozenset[str]]] = {
    # actor -> to-state -> the states an item may be moved from
    SUBMITTER: {
        Item.SUBMITTING: frozenset({Item.PENDING}),  # the claim
        Item.ACTIVE: frozenset({Item.SUBMITTING}),  # the service took the batch
        # the service refused the batch: retried, split in halves, or failed for good
        Item.PENDING: frozenset({Item.SUBMITTING}),
        Item.ERROR: frozenset({Item.SUBMITTING}),
        Item.AWAITING_JOB: frozenset({Item.SUBMITTING}),  # an earlier run's result
    },
    POLLER: {
        Item.ACTIVE: frozenset({Item.INACTIVE}),
        Item.INACTIVE: frozenset({Item.ACTIVE}),
        Item.DONE: frozenset(_FLIGHT),
        Item.PENDING: frozenset(_FLIGHT),  # retried, split, or a newer run's result
        Item.ERROR: frozenset(_FLIGHT),
        # an earlier run's result failed while its job runs again: its next
        # POSTPROCESSED sends that run's result; the running job is not failed
        Item.AWAITING_JOB: frozenset(_FLIGHT),
    },
    CANCEL: {
        Item.ACTIVE: frozenset({Item.SUBMITTING}),  # a resend found the task it made
        Item.DONE: frozenset(_FLIGHT),  # the service says the task had finished
        Item.PENDING: frozenset(_FLIGHT),  # a newer run's result, sent again
        Item.ERROR: frozenset(_FLIGHT),  # "cancelled": never sent again by itself
        Item.AWAITING_JOB: frozenset(_FLIGHT),  # an earlier run's result (see POLLER)
    },
    RETRY: {
        Item.PENDING: frozenset({Item.ERROR}),
        Item.AWAITING_JOB: frozenset({Item.ERROR}),  # a stage-out whose job runs again
    },
    JOB_MOVE: {
        Item.AWAITING_JOB: frozenset({Item.PENDING}),  # FAILED: nothing more of it is sent
        # POSTPROCESSED again (out: a done result goes again too), READY again (in)
        Item.PENDING: frozenset({Item.AWAITING_JOB, Item.DONE}),
    },
    DELETE: {
        _DELETED: frozenset({Item.AWAITING_JOB, Item.PENDING, Item.DONE, Item.ERROR}),
    },
}

TASK_MOVES: dict[str, dict[str, frozenset[str]]] = {
    SUBMITTER: {
        Task.ACTIVE: frozenset({Task.SUBMITTING}),
        Task.FAILED: frozenset({Task.SUBMITTING}),
    },
    POLLER: {
        Task.ACTIVE: frozenset({Task.INACTIVE}),
        Task.INACTIVE: frozenset({Task.ACTIVE}),
        Task.SUCCEEDED: frozenset(Task.POLLED),
        Task.FAILED: frozenset(Task.POLLED),
    },
    CANCEL: {
        Task.ACTIVE: frozenset({Task.SUBMITTING}),
        Task.SUCCEEDED: frozenset(Task.POLLED),
        Task.FAILED: frozenset(Task.IN_FLIGHT),  # a batch the service refused is none
    },
}

_TABLES = {"item": ITEM_MOVES, "task": TASK_MOVES}


def sources(kind: str, actor: str, to_state: str) -> tuple[str, ...]:
    """The states `actor` may move an item or task (`kind`) from, into `to_state`
    (sorted, for stable SQL). A move the table does not know is a bug: StateConflict."""
    found = _TABLES[kind].get(actor, {}).get(to_state)
    if not found:
        raise StateConflict(f"{actor} may not move a transfer {kind} to {to_state}")
    return tuple(sorted(found))


def allowed(kind: str, actor: str, from_state: str, to_state: str) -> bool:
    return from_state in _TABLES[kind].get(actor, {}).get(to_state, frozenset())


def any_actor(kind: str, from_state: str, to_state: str) -> bool:
    """Some actor may make this move (what a log row of it must satisfy)."""
    return any(allowed(kind, actor, from_state, to_state) for actor in _TABLES[kind])
