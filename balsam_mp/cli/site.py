"""`balsam site ...`: create, run and inspect a site."""

from __future__ import annotations

import json
from pathlib import Path

import click

from balsam_mp.cli.common import (
    BalsamGroup,
    Seconds,
    format_option,
    open_site,
    site_option,
    site_path,
)
from balsam_mp.cli.globus import globus_login, globus_whoami
from balsam_mp.site import service
from balsam_mp.site.layout import init_site


@click.group(cls=BalsamGroup)
def site() -> None:
    """Create, run and inspect a site."""


@site.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="Site name (default: the directory name).")
def init(path: Path, name: str | None) -> None:
    """Create a site at PATH from the site template."""
    settings = init_site(path, name)
    click.echo(f"created site {settings.site_name!r} at {settings.site_path}")
    click.echo(f"next: export BALSAM_SITE_PATH={settings.site_path}; balsam app sync")


@site.command()
@site_option
@click.option("--foreground", is_flag=True, help="Do not daemonize (for debugging).")
def start(foreground: bool) -> None:
    """Start the site: a supervisor with a submitter and a poller."""
    click.echo(service.start(open_site(), foreground))


@site.command()
@site_option
@click.option("--timeout", default=30.0, show_default=True, type=Seconds(),
              help="Seconds to wait after SIGTERM before SIGKILL.")
def stop(timeout: float) -> None:
    """Stop the site (SIGTERM, then SIGKILL after --timeout)."""
    click.echo(service.stop(site_path(), timeout))


@site.command()
@site_option
def sync() -> None:
    """Validate settings.yml, sync apps, and restart the workers of a running site."""
    settings = open_site()
    click.echo(service.sync(settings.site_path))


@site.command()
@site_option
@format_option
def status(output_format: str) -> None:
    """Whether the site runs, its workers, items by state, tasks in flight, actions."""
    report = service.status(site_path())
    if output_format == "json":
        click.echo(json.dumps(report, indent=2, default=str))
        return
    if report["running"]:
        workers = ", ".join(f"{n} {p}" for n, p in report["workers"].items())
        click.echo(f"site {report['site']}: running (pid {report['pid']}; {workers})")
    else:
        click.echo(f"site {report['site']}: not running")
    click.echo("items:")
    for row in report["items"] or [{"direction": "-", "state": "none", "count": 0}]:
        click.echo(f"  {row['direction']:>3}  {row['state']:<13} {row['count']}")
    click.echo(f"tasks in flight: {len(report['tasks_in_flight'])}")
    for task in report["tasks_in_flight"]:
        click.echo(f"  {task['task_id'] or '(submitting)'}  {task['state']}  {task['direction']} "
                   f"{task['alias']}  {task['items']} items  {task['nice_status'] or ''}")
    if report["last_error"]:
        click.echo(f"last error: {report['last_error']}")
    if report["action_required"]:
        click.echo(f"ACTION REQUIRED: {report['action_required']}")


site.add_command(globus_login)
site.add_command(globus_whoami)
