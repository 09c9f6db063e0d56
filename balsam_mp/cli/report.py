"""`balsam site report`: a picture of what the site did (balsam_mp.analytics)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import click

from balsam_mp.cli.common import format_option, open_site, site_option

_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


class Duration(click.ParamType):
    """A span of time back from now: 90s, 15m (or 15min), 1h, 2d, 1w."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.timedelta:
        if isinstance(value, dt.timedelta):
            return value
        found = _DURATION.fullmatch(str(value).strip().lower())
        if found is None or found.group(2) not in _UNITS:
            self.fail(f"{value!r} is not a duration such as 90s, 15m, 1h or 2d", param, ctx)
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
        if seconds <= 0:
            self.fail(f"{value!r}: the duration must be more than 0", param, ctx)
        try:
            return dt.timedelta(seconds=seconds)
        except OverflowError:
            self.fail(f"{value!r} is too long a duration", param, ctx)


def _since(span: dt.timedelta) -> dt.datetime | None:
    """The start of the last `span`; None (everything) when it reaches back before
    year 1, which a datetime cannot hold."""
    try:
        return dt.datetime.now(dt.timezone.utc) - span
    except OverflowError:
        return None


@click.command()
@site_option
@click.option("--since", type=Duration(), metavar="DURATION",
              help="Only what happened in this last span of time (90s, 15m, 1h, 2d); "
                   "default: everything.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default="site-report.png", show_default=True,
              help="The picture to write (.png, .svg or .pdf).")
@format_option
def report(since: dt.timedelta | None, output: Path, output_format: str) -> None:
    """Draw jobs over time, files and bytes moved per interval, and the timeline of
    transfer tasks (needs matplotlib: pip install 'balsam_mp[plots]')."""
    from balsam_mp.analytics import plot

    if plot.matplotlib_missing():  # before anything else: nothing read, nothing written
        raise click.ClickException(plot.INSTALL_HINT)
    settings = open_site()
    start = None if since is None else _since(since)
    data = plot.gather(settings.site_name, start)
    plot.draw(data, output)
    summary = {"output": str(output), "site": settings.site_name,
               "since": start.isoformat() if start else None,
               **{state.lower(): len(times) for state, (times, _) in data.jobs.items()},
               "tasks": len(data.spans),
               "files": sum(sum(s.files) for s in data.moved.values()),
               "bytes": sum(sum(s.bytes) for s in data.moved.values())}
    if output_format == "json":
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"wrote {output}: {summary['job_finished']} job(s) finished, "
                   f"{summary['tasks']} transfer task(s), {summary['files']} file(s) moved")
