"""The one table of allowed job state changes, asked by every writer of `job.state`.

Two actors move jobs. The SITE (submitter, poller, `transfer retry`) does the transfer
work: READY -> STAGED_IN when the stage-in files are there, POSTPROCESSED -> STAGED_OUT
-> JOB_FINISHED when the stage-out files have left, any unfinished state -> FAILED when
a file fails for good, and FAILED -> the state it left when the user retries. The USER
(the Python API's save/update/set_state, `balsam job modify`) plays the app's part: this
site runs no launcher, so a user's code may walk a staged-in job through the run states
and mark it POSTPROCESSED, fail it, or restart it. A user may never skip the site's work:
entering STAGED_IN needs every stage-in item done, STAGED_OUT every stage-out item done;
JOB_FINISHED is final.
"""

from __future__ import annotations

from balsam_mp.errors import ValidationError
from balsam_mp.schemas import plain
from balsam_mp.states import (
    AWAITING_PARENTS,
    CREATED,
    FAILED,
    JOB_FINISHED,
    JOB_STATES,
    POSTPROCESSED,
    PREPROCESSED,
    READY,
    RESTART_READY,
    RUN_DONE,
    RUN_ERROR,
    RUN_TIMEOUT,
    RUNNING,
    STAGED_IN,
    STAGED_OUT,
)

USER = "user"
SITE = "site"

# Run states: after stage-in, before stage-out. The user's code drives them, in any
# order (as in Balsam, whose server does not order them): no transfer is at stake
# there, the stage-in items are all done and the stage-out items wait for
# POSTPROCESSED.
RUN_STATES = (STAGED_IN, PREPROCESSED, RUNNING, RUN_DONE, RUN_ERROR, RUN_TIMEOUT, RESTART_READY)

# from-state -> the states a user may move a job to.
USER_MOVES: dict[str, frozenset[str]] = {
    CREATED: frozenset({AWAITING_PARENTS, READY, FAILED}),
    AWAITING_PARENTS: frozenset({READY, FAILED}),
    READY: frozenset({STAGED_IN, FAILED}),
    **{state: frozenset({*RUN_STATES, POSTPROCESSED, FAILED}) - {state}
       for state in RUN_STATES},
    POSTPROCESSED: frozenset({STAGED_OUT, FAILED}),
    STAGED_OUT: frozenset({JOB_FINISHED, FAILED}),
    JOB_FINISHED: frozenset(),
    FAILED: frozenset({READY, RESTART_READY}),
}

# from-state -> the states the site moves a job to.
SITE_MOVES: dict[str, frozenset[str]] = {
    state: frozenset({FAILED}) for state in JOB_STATES if state not in (JOB_FINISHED, FAILED)
}
SITE_MOVES[READY] = frozenset({STAGED_IN, FAILED})
SITE_MOVES[POSTPROCESSED] = frozenset({STAGED_OUT, FAILED})
SITE_MOVES[STAGED_OUT] = frozenset({JOB_FINISHED, FAILED})
SITE_MOVES[JOB_FINISHED] = frozenset()
# `transfer retry` sends a FAILED job back to the state it failed from
SITE_MOVES[FAILED] = frozenset(set(JOB_STATES) - {FAILED, JOB_FINISHED, STAGED_OUT})

# to-state -> the direction whose items must all be done before a job may enter it
NEEDS_DONE: dict[str, str] = {STAGED_IN: "in", STAGED_OUT: "out",
                              RESTART_READY: "in", PREPROCESSED: "in", RUNNING: "in",
                              RUN_DONE: "in", POSTPROCESSED: "in"}

FINAL = frozenset({JOB_FINISHED})


def check_state_name(state: object, where: str = "state") -> str:
    """One of Balsam's 14 job states (a name, or balsam_mp.schemas.JobState), or a
    ValidationError listing them; returns the name."""
    state = plain(state)
    if not isinstance(state, str) or state not in JOB_STATES:
        raise ValidationError(f"{where}: {state!r} is not a job state "
                              f"(one of {', '.join(JOB_STATES)})")
    return state


def allowed(from_state: str, to_state: str, actor: str = USER) -> bool:
    moves = USER_MOVES if actor == USER else SITE_MOVES
    return to_state in moves.get(from_state, frozenset())


def check(job: object, from_state: str, to_state: str, actor: str = USER) -> None:
    """Refuse a move the table does not allow, with a message naming the job."""
    check_state_name(to_state, f"job {job}: state")
    check_state_name(from_state, f"job {job}: state")
    if allowed(from_state, to_state, actor):
        return
    if from_state in FINAL:
        raise ValidationError(f"job {job}: {from_state} is final; it cannot move to {to_state}")
    moves = USER_MOVES if actor == USER else SITE_MOVES
    choices = ", ".join(sorted(moves[from_state])) or "none"
    raise ValidationError(
        f"job {job}: cannot move from {from_state} to {to_state} "
        f"(from {from_state} a {actor} may move it to: {choices})")
