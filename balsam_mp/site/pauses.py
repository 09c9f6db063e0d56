"""A task an endpoint's administrator paused, as the site sees it.

It waits on someone else, not on a fault or on the user: it is shown ACTIVE with
`PAUSED (<who and why>)` as its nice_status (what `balsam site status` lists), it has
no fault (so `fault_timeout` does not run), and it is not INACTIVE (so
`inactive_timeout` does not run). Both clocks start again, from zero, when the
administrator resumes it and the fault or the inactivity is still there.
"""

from __future__ import annotations

import dataclasses

from balsam_mp.transfer.base import TaskStatus

PAUSED = "PAUSED"


def as_seen(status: TaskStatus) -> TaskStatus:
    if not status.paused or status.finished:
        return status
    return dataclasses.replace(status, status="ACTIVE", nice_status_details=None,
                               nice_status=f"{PAUSED} ({status.pause_message or 'no message'})")
