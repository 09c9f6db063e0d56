"""State names shared by every layer, stored as plain text in the database."""

# Job states, as in Balsam.
CREATED = "CREATED"
AWAITING_PARENTS = "AWAITING_PARENTS"
READY = "READY"
STAGED_IN = "STAGED_IN"
PREPROCESSED = "PREPROCESSED"
RUNNING = "RUNNING"
RUN_DONE = "RUN_DONE"
RUN_ERROR = "RUN_ERROR"
RUN_TIMEOUT = "RUN_TIMEOUT"
RESTART_READY = "RESTART_READY"
POSTPROCESSED = "POSTPROCESSED"
STAGED_OUT = "STAGED_OUT"
JOB_FINISHED = "JOB_FINISHED"
FAILED = "FAILED"

JOB_STATES = (
    CREATED, AWAITING_PARENTS, READY, STAGED_IN, PREPROCESSED, RUNNING, RUN_DONE,
    RUN_ERROR, RUN_TIMEOUT, RESTART_READY, POSTPROCESSED, STAGED_OUT, JOB_FINISHED, FAILED,
)


class Item:
    """Transfer item states (Balsam's, plus awaiting_job and submitting)."""

    AWAITING_JOB = "awaiting_job"
    PENDING = "pending"
    SUBMITTING = "submitting"
    ACTIVE = "active"
    INACTIVE = "inactive"
    DONE = "done"
    ERROR = "error"

    ALL = (AWAITING_JOB, PENDING, SUBMITTING, ACTIVE, INACTIVE, DONE, ERROR)
    IN_FLIGHT = (SUBMITTING, ACTIVE, INACTIVE)


class Task:
    """Transfer task states as the site tracks them."""

    SUBMITTING = "submitting"
    ACTIVE = "active"
    INACTIVE = "inactive"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    ALL = (SUBMITTING, ACTIVE, INACTIVE, SUCCEEDED, FAILED)
    IN_FLIGHT = (SUBMITTING, ACTIVE, INACTIVE)
    POLLED = (ACTIVE, INACTIVE)


DIRECTIONS = ("in", "out")
