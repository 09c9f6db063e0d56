"""`transfer_batch_size: auto`: each claim's batches shaped to what Globus charges.

Every Globus task pays a start-up of seconds, Globus runs at most 3 tasks per user at
once (the rest wait "Queued"), and a job's file counts as arrived only when its whole
task has finished. So:

- tasks in flight are kept to the slots Globus runs at once (a queued task would
  only wait, with its batch already frozen);
- what is due is spread evenly over the slots free now: a backlog of 2,000 items with
  3 slots free goes out as 3 tasks of about 667, paying one start-up per slot; a
  trickle (1 item due, slots free) goes out at once as a task of 1;
- nothing is held back to fill a batch: an item waits for a free slot, and, while
  other tasks run, at most a task's cost over the slots (capped at service_period)
  since the last new task: new tasks then start one by one, so the slots free one by
  one and a trickle waits about a third of a start-up for the next, not a whole one
  behind slots that all free together (the submitter's `paced`).

An explicit number keeps Balsam's meaning: batches of at most that many items, up to
max_concurrent_transfers in flight.
"""

from __future__ import annotations

import math

AUTO = "auto"
GLOBUS_ACTIVE_TASKS = 3  # tasks Globus runs at once per user (documented limit)


def slots(max_concurrent: int, protocols: set[str]) -> int:
    """Tasks worth having in flight under `auto`: Globus's active limit when the site
    uses Globus (other backends run every task at once)."""
    return min(max_concurrent, GLOBUS_ACTIVE_TASKS) if "globus" in protocols else \
        max_concurrent


def auto_batch_size(due: int, free_slots: int) -> int:
    """Items per batch: what is due, spread evenly over the free slots."""
    return max(1, math.ceil(due / max(1, free_slots)))
