"""What a site did over time, from its event log and its transfer tasks.

    from balsam_mp.analytics import throughput_report
    from balsam_mp.api import EventLog
    times, done = throughput_report(EventLog.objects.filter(tags={"run": "7"}))

`throughput_report` is Balsam's: the times at which jobs reached a state, and the
running count of them. The transfer reports are this site's own: files and bytes moved
per interval by direction and alias (`transfer_throughput`), and each task's claim,
submission, start and end (`task_timeline`). A task's end is the last change of a task
that ended (nothing writes a task once it has ended); its start is when the site first
saw it running at the service (not "Queued"): a task that ended before the next poll
has none. `balsam site report` draws all three (balsam_mp.analytics.plot, matplotlib).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from balsam_mp import db, transitions
from balsam_mp.api import EventLog, TransferTask
from balsam_mp.api.query import Manager, QuerySet, guarded
from balsam_mp.errors import ValidationError
from balsam_mp.states import Task

__all__ = ["TaskSpan", "TransferSeries", "human_size", "task_timeline", "throughput_report",
           "transfer_throughput"]

ENDED = (Task.SUCCEEDED, Task.FAILED)


def _query(value: Any, model: type, where: str) -> QuerySet[Any]:
    """A queryset (or manager) of `model`; None means all of them."""
    if value is None:
        return model.objects.all()
    if isinstance(value, (QuerySet, Manager)):
        found = value.model if isinstance(value, QuerySet) else value.model_class
        if found is model:
            return value.all()
    raise ValidationError(f"{where}: expected a {model.__name__} query such as "
                          f"{model.__name__}.objects.filter(...), not {value!r}")


def throughput_report(log_query: Any, to_state: Any = "JOB_FINISHED"
                      ) -> tuple[list[dt.datetime], list[int]]:
    """Balsam's throughput: the times (UTC, oldest first) at which the jobs of
    `log_query` (EventLog events) reached `to_state`, and the count so far at each."""
    # Balsam's JobState enum, or its name; a typo is an error, not an empty report
    state = transitions.check_state_name(to_state, "throughput_report: to_state")
    events = _query(log_query, EventLog, "throughput_report").filter(
        to_state=state, job_id__ne=None).order_by("timestamp", "id")
    # the timestamps alone: a million events would take a minute as EventLog objects
    times = [when for (when,) in guarded(
        lambda: list(events._query(db.LogEvent.timestamp).tuples()))]
    return times, list(range(1, len(times) + 1))


@dataclass(frozen=True)
class TaskSpan:
    """One transfer task on the timeline (times in UTC; None: not reached or not seen)."""

    id: int
    task_id: str | None  # the service's task id
    direction: str
    alias: str
    state: str
    claimed: dt.datetime
    submitted: dt.datetime | None
    started: dt.datetime | None
    finished: dt.datetime | None
    items: int
    files: int  # files the service reports moved
    bytes: int


def task_timeline(task_query: Any = None) -> list[TaskSpan]:
    """The tasks of `task_query` (TransferTask; None: all), oldest claim first."""
    tasks = _query(task_query, TransferTask, "task_timeline").order_by("created_at", "id")
    return [TaskSpan(t.id, t.task_id, t.direction, t.location_alias, t.state, t.created_at,
                     t.submitted_at, t.started_at,
                     t.updated_at if t.state in ENDED else None, t.item_count,
                     t.files_transferred, t.bytes_transferred) for t in tasks]


@dataclass
class TransferSeries:
    """Files and bytes that tasks ending in each interval moved; `times` are the
    intervals' starts (UTC)."""

    times: list[dt.datetime] = field(default_factory=list)
    files: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)


def interval_seconds(value: Any) -> float:
    """An interval as seconds: a timedelta or a number, finite and above 0."""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(f"interval: {value!r} is not a positive number of seconds "
                              "or timedelta")
    return float(seconds)


def transfer_throughput(task_query: Any = None, interval: Any = dt.timedelta(minutes=1)
                        ) -> dict[tuple[str, str], TransferSeries]:
    """Per (direction, alias): files and bytes moved per interval, counted when their
    task ended. Every series has the same intervals, from the first task's end to the
    last's (empty ones count 0), so they can be stacked or compared."""
    seconds = interval_seconds(interval)
    spans = [s for s in task_timeline(task_query) if s.finished is not None]
    if not spans:
        return {}
    first = min(s.finished for s in spans)
    start = first - dt.timedelta(seconds=first.timestamp() % seconds)  # a round start
    count = int((max(s.finished for s in spans) - start).total_seconds() // seconds) + 1
    times = [start + dt.timedelta(seconds=seconds * n) for n in range(count)]
    series: dict[tuple[str, str], TransferSeries] = {}
    for span in spans:
        group = series.setdefault((span.direction, span.alias),
                                  TransferSeries(list(times), [0] * count, [0] * count))
        slot = min(int((span.finished - start).total_seconds() // seconds), count - 1)
        group.files[slot] += span.files
        group.bytes[slot] += span.bytes
    return dict(sorted(series.items()))


def human_size(size: float) -> str:
    """Bytes as B, kB, MB or GB (powers of 1000), as reports and `site status` show them."""
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
