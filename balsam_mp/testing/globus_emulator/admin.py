"""What an endpoint's administrator (an activity manager) can do to a user's task.

Modelled on Globus' advanced collection management API (admin_pause, admin_resume,
admin_cancel, each with the message the user is shown) and on what the task owner
then sees: `is_paused` and GET /task/<id>/pause_info (`source_pause_message`,
`destination_pause_message`), or `canceled_by_admin` ("SOURCE", "DESTINATION" or
"BOTH") with `canceled_by_admin_message` on a FAILED task whose fatal error is
CANCELED. Field names and values: globus-sdk's recorded task documents and the
Globus JavaScript SDK's TaskDocument and PauseInfoLimitedDocument types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balsam_mp.testing.globus_emulator.request import bad_request
from balsam_mp.testing.globus_emulator.task import Task

if TYPE_CHECKING:
    from balsam_mp.testing.globus_emulator.engine import Engine

SIDES = ("source", "destination")


def check(side: str, message: str | None) -> None:
    if side not in SIDES:
        raise bad_request(f"side must be 'source' or 'destination', not {side!r}")
    if message is not None and (not isinstance(message, str) or not message.strip()):
        raise bad_request("an administrator's message is a non-empty string")


def pause(engine: Engine, task: Task, side: str, message: str) -> bool:
    """Pause as the administrator of one side; False if the task had finished."""
    check(side, message)
    with engine.lock:
        if task.finished:
            return False
        task.pause_messages[side] = message
        task.event("PAUSED", "paused by an administrator", message)
        engine.lock.notify_all()
        return True


def resume(engine: Engine, task: Task) -> bool:
    """Lift every administrator's pause; False if it was not paused."""
    with engine.lock:
        if task.finished or not task.pause_messages:
            return False
        task.pause_messages.clear()
        task.event("RESUMED", "resumed by an administrator")
        engine.lock.notify_all()
        return True


def cancel(engine: Engine, task: Task, side: str, message: str) -> bool:
    """Cancel as the administrator of one side; False if the task had finished."""
    check(side, message)
    with engine.lock:
        if task.finished:
            return False
        task.cancelled.set()
        task.canceled_by_admin, task.canceled_by_admin_message = side.upper(), message
        task.pause_messages.clear()
        task.finish("FAILED", {"code": "CANCELED",
                               "description": f"canceled by an administrator: {message}"})
        engine.lock.notify_all()
        return True


def pause_info(task: Task) -> dict:
    """GET /task/<id>/pause_info as the task's owner sees it (no pause rules modelled)."""
    return {"DATA_TYPE": "pause_info_limited", "pause_rules": [],
            "source_pause_message": task.pause_messages.get("source"),
            "destination_pause_message": task.pause_messages.get("destination"),
            "source_pause_message_share": None, "destination_pause_message_share": None}
