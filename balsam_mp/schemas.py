"""Balsam's state enums (`from balsam.schemas import JobState, TransferItemState`).

Both are str enums: `JobState.failed == "FAILED"`, and every call that takes a state
name (filters, `job.state = ...`, `update(state=...)`, `set_state`) takes them too.
TransferItemState adds `submitting`, the state of an item whose task is being sent
(Balsam's server has no such step)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from balsam_mp import states
from balsam_mp.states import Item


class _State(str, Enum):
    """A state name that prints as itself (`print(JobState.failed)` -> FAILED)."""

    def __str__(self) -> str:
        return self.value


class JobState(_State):
    created = states.CREATED
    awaiting_parents = states.AWAITING_PARENTS
    ready = states.READY
    staged_in = states.STAGED_IN
    preprocessed = states.PREPROCESSED
    running = states.RUNNING
    run_done = states.RUN_DONE
    run_error = states.RUN_ERROR
    run_timeout = states.RUN_TIMEOUT
    restart_ready = states.RESTART_READY
    postprocessed = states.POSTPROCESSED
    staged_out = states.STAGED_OUT
    job_finished = states.JOB_FINISHED
    failed = states.FAILED

    @classmethod
    def is_valid(cls, state: str) -> bool:
        return state in cls._value2member_map_


class TransferItemState(_State):
    awaiting_job = Item.AWAITING_JOB
    pending = Item.PENDING
    submitting = Item.SUBMITTING
    active = Item.ACTIVE
    inactive = Item.INACTIVE
    done = Item.DONE
    error = Item.ERROR


RUNNABLE_STATES = {JobState.preprocessed, JobState.restart_ready}
DONE_STATES = {JobState.job_finished, JobState.failed}


def plain(value: Any) -> Any:
    """A state enum as its name (what the database stores); anything else unchanged."""
    return value.value if isinstance(value, Enum) else value
