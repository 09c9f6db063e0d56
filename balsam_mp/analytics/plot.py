"""`balsam site report`'s picture: jobs over time, files and bytes moved per interval,
and the timeline of transfer tasks. Needs matplotlib (`pip install 'balsam_mp[plots]'`);
drawn with its Agg backend, so no display is needed."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from balsam_mp.analytics import (
    TaskSpan,
    TransferSeries,
    human_size,
    task_timeline,
    throughput_report,
    transfer_throughput,
)
from balsam_mp.api import EventLog, TransferTask
from balsam_mp.api.site import database
from balsam_mp.errors import BalsamError
from balsam_mp.states import Task

INSTALL_HINT = "balsam site report needs matplotlib: pip install 'balsam_mp[plots]'"
FORMATS = ("png", "svg", "pdf")
JOB_STATES = ("STAGED_IN", "JOB_FINISHED", "FAILED")
MAX_TASKS = 40  # rows of the timeline: the latest tasks (more would be unreadable)
_NICE_INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600,
                   43200, 86400)
_COLORS = {"in": "#1f77b4", "out": "#2ca02c"}


def matplotlib_missing() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return True
    return False


@dataclass
class Report:
    """What the picture shows, read from the site in one go."""

    site: str
    since: dt.datetime | None
    jobs: dict[str, tuple[list[dt.datetime], list[int]]]
    spans: list[TaskSpan]
    moved: dict[tuple[str, str], TransferSeries]
    interval: float


def gather(site: str, since: dt.datetime | None) -> Report:
    with database().atomic("DEFERRED"):  # one snapshot: events and tasks agree
        return _gather(site, since)


def _gather(site: str, since: dt.datetime | None) -> Report:
    events = EventLog.objects.all() if since is None else \
        EventLog.objects.filter(timestamp__gte=since)
    tasks = TransferTask.objects.all() if since is None else \
        TransferTask.objects.filter(last_update__gte=since)
    jobs = {state: throughput_report(events, state) for state in JOB_STATES}
    spans = task_timeline(tasks)
    ends = [s.finished for s in spans if s.finished is not None]
    span = (max(ends) - min(ends)).total_seconds() if ends else 0.0
    interval = next((n for n in _NICE_INTERVALS if n >= span / 30), _NICE_INTERVALS[-1])
    return Report(site, since, jobs, spans, transfer_throughput(tasks, interval), interval)


def draw(report: Report, output: Path) -> None:
    """Draw the report into `output` (.png, .svg or .pdf), replacing it whole or not
    at all."""
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise BalsamError(f"-o {output}: the picture's name must end in "
                          f"{', '.join('.' + f for f in FORMATS)}")
    if not output.parent.is_dir():
        raise BalsamError(f"-o {output}: folder {output.parent} does not exist")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(4, 1, figsize=(10, 12), sharex=True,
                                   gridspec_kw={"height_ratios": [1, 1, 1, 1.6]})
    try:
        _jobs(axes[0], report)
        _moved(axes[1], axes[2], report)
        _timeline(axes[3], report)
        _time_axis(axes[3], report)
        figure.suptitle(_title(report), fontsize=13)
        figure.tight_layout()
        _save(figure, output, suffix)
    finally:
        pyplot.close(figure)


def _title(report: Report) -> str:
    finished = len(report.jobs["JOB_FINISHED"][0])
    files = sum(sum(s.files) for s in report.moved.values())
    moved = sum(sum(s.bytes) for s in report.moved.values())
    since = f" since {report.since:%Y-%m-%d %H:%M:%S} UTC" if report.since else ""
    return (f"site {report.site}{since}: {finished} jobs finished, "
            f"{len(report.spans)} transfer tasks, {files} files ({human_size(moved)}) moved")


def _save(figure, output: Path, suffix: str) -> None:
    try:
        handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.",
                                             suffix=f".{suffix}")
    except OSError as exc:
        raise BalsamError(f"-o {output}: cannot write in {output.parent}: "
                          f"{exc.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format=suffix, dpi=100)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # as any file the user writes
        os.replace(temporary, output)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk, the name taken by a folder
            raise BalsamError(f"-o {output}: cannot write it: {exc.strerror or exc}") from None
        raise


def _empty(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, transform=axis.transAxes, ha="center", va="center",
              color="grey")


def _jobs(axis, report: Report) -> None:
    axis.set_title("jobs: how many reached each state (running count)", loc="left")
    drawn = False
    for state, (times, counts) in report.jobs.items():
        if times:
            axis.step(times, counts, where="post", label=f"{state} ({counts[-1]})",
                      color={"FAILED": "#d62728"}.get(state))
            drawn = True
    if drawn:
        axis.legend(loc="upper left")
        axis.set_ylabel("jobs")
    else:
        _empty(axis, "no job reached STAGED_IN, JOB_FINISHED or FAILED")


def _moved(files_axis, bytes_axis, report: Report) -> None:
    every = _duration(report.interval)
    files_axis.set_title(f"files moved, per {every} (when their task ended)", loc="left")
    bytes_axis.set_title(f"data moved, per {every}", loc="left")
    if not report.moved:
        _empty(files_axis, "no transfer task ended")
        _empty(bytes_axis, "no transfer task ended")
        return
    top = max(max(s.bytes) for s in report.moved.values())
    unit, scale = next(((u, s) for u, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
                        if top >= s), ("B", 1.0))
    width = dt.timedelta(seconds=report.interval * 0.9)
    files_base = bytes_base = None
    for (direction, alias), series in report.moved.items():
        label = f"{direction} {alias}: {sum(series.files)} files, " \
                f"{human_size(sum(series.bytes))}"
        scaled = [b / scale for b in series.bytes]
        style = {"width": width, "align": "edge", "label": label, "alpha": 0.85,
                 "color": _COLORS.get(direction) if len(report.moved) <= 2 else None}
        files_axis.bar(series.times, series.files, bottom=files_base, **style)
        bytes_axis.bar(series.times, scaled, bottom=bytes_base, **style)
        files_base = _add(files_base, series.files)
        bytes_base = _add(bytes_base, scaled)
    files_axis.set_ylabel("files")
    bytes_axis.set_ylabel(unit)
    for axis, base in ((files_axis, files_base), (bytes_axis, bytes_base)):
        axis.set_ylim(0, max(base or [0]) * 1.35 or 1)  # room for the legend
    files_axis.legend(loc="upper left", ncols=2)


def _add(base: list | None, values: list) -> list:
    return list(values) if base is None else [a + b for a, b in zip(base, values, strict=True)]


def _timeline(axis, report: Report) -> None:
    spans = report.spans[-MAX_TASKS:]
    shown = f"the latest {len(spans)} of {len(report.spans)}" \
        if len(spans) < len(report.spans) else str(len(spans))
    axis.set_title(f"transfer tasks ({shown}): claimed, submitted, running, ended",
                   loc="left")
    if not spans:
        _empty(axis, "no transfer task")
        return
    now = max([s.finished or s.started or s.submitted or s.claimed for s in spans])
    for row, span in enumerate(spans):
        sent = span.submitted or span.finished or now
        axis.barh(row, sent - span.claimed, left=span.claimed, height=0.6, color="#bbbbbb")
        if span.submitted is not None:
            ran_from = span.started or span.submitted
            if span.started is not None:
                axis.barh(row, span.started - span.submitted, left=span.submitted,
                          height=0.6, color="#ff7f0e")
            color = "#d62728" if span.state == Task.FAILED else \
                _COLORS.get(span.direction, "#9467bd")
            axis.barh(row, (span.finished or now) - ran_from, left=ran_from, height=0.6,
                      color=color, hatch=None if span.finished else "//")
        axis.annotate(f" {span.files} files", (span.finished or now, row), va="center",
                      fontsize=8)
    axis.set_yticks(range(len(spans)))
    axis.set_yticklabels([f"{s.direction} {s.alias} #{s.id}" for s in spans], fontsize=7)
    axis.invert_yaxis()  # the first claim on top
    from matplotlib.patches import Patch

    axis.legend(handles=[Patch(color="#bbbbbb", label="claimed, being submitted"),
                         Patch(color="#ff7f0e", label="queued at the service"),
                         Patch(color=_COLORS["in"], label="running: stage-in"),
                         Patch(color=_COLORS["out"], label="running: stage-out"),
                         Patch(color="#d62728", label="failed")],
                loc="upper right", fontsize=8)


def _time_axis(axis, report: Report) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=dt.timezone.utc)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.timezone.utc))
    axis.set_xlabel("time (UTC)")


def _duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" if count > 1 else unit
    return f"{seconds:g} s"


