"""`balsam site ...`: create, run and inspect a site."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from balsam_mp import api
from balsam_mp.analytics import human_size
from balsam_mp.cli.common import (
    ALL,
    BalsamGroup,
    Seconds,
    all_sites_option,
    each_site,
    format_option,
    named_site,
    open_site,
    site_option,
    site_path,
    site_selector,
)
from balsam_mp.cli.globus import globus_login, globus_whoami
from balsam_mp.cli.report import report
from balsam_mp.cli.site_migrate import migrate
from balsam_mp.cli.sitelist import list_sites
from balsam_mp.dburl import DATABASE_URL_ENV, check_database_url, display_url
from balsam_mp.settings import SETTINGS_FILE
from balsam_mp.site import lease as site_lease
from balsam_mp.site import service
from balsam_mp.site import status as site_status
from balsam_mp.site.layout import init_site


@click.group(cls=BalsamGroup)
def site() -> None:
    """Create, run and inspect a site."""


@site.command()
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--name", help="Site name (default: the directory name).")
@click.option("--database-url", metavar="URL",
              help="postgresql://user@host:port/dbname instead of SITE/site.db "
                   "(the password from ~/.pgpass or $PGPASSWORD).")
def init(path: Path, name: str | None, database_url: str | None) -> None:
    """Create a site at PATH from the site template."""
    from_env = os.environ.get(DATABASE_URL_ENV) if database_url is None else None
    if from_env:  # a refusal names the variable the user set, not --database-url
        check_database_url(from_env)
    settings = init_site(path, name, database_url or from_env or None)
    click.echo(f"created site {settings.site_name!r} at {settings.site_path}")
    if from_env:  # written down: cron and a new shell run without the variable
        click.echo(f"database_url {display_url(from_env)} (from ${DATABASE_URL_ENV}) "
                   f"written into {settings.site_path / SETTINGS_FILE}")
    click.echo(f"next: export BALSAM_SITE_PATH={settings.site_path}; balsam app sync")


@site.command()
@site_option
@click.option("--foreground", is_flag=True, help="Do not daemonize (for debugging).")
@click.option("--if-not-running", is_flag=True,
              help="Exit 0 quietly if the site already runs on this host (for crontab).")
def start(foreground: bool, if_not_running: bool) -> None:
    """Start the site: a supervisor with a submitter and a poller."""
    if if_not_running and service.running_here(site_path()):
        return  # before reading settings: cron must stay quiet while the site runs
    message = service.start(open_site(client_ok=False), foreground, if_not_running)
    if message:
        click.echo(message)


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
    settings = open_site(client_ok=False)
    click.echo(service.sync(settings.site_path))


@site.command()
@site_option
@all_sites_option
@format_option
def status(all_sites: bool, output_format: str) -> None:
    """Whether the site runs, its workers, items by state, throughput, tasks, actions.
    With --all-sites or --site-name: what the PostgreSQL database says of its sites."""
    reports = []
    all_sites = all_sites or site_selector() == ALL  # Balsam's --site all
    for _ in each_site(all_sites) if all_sites or named_site() else ():
        if not api.current_settings().database_url:
            break  # SQLite: the one site, from its directory (below)
        reports.append(site_status.database_status(api.current_settings()))
    if reports:
        if output_format == "json":
            click.echo(json.dumps(reports if all_sites else reports[0], indent=2, default=str))
            return
        for report in reports:
            click.echo(f"site {report['site']}: {site_lease.database_line(report)}")
            _echo_work(report)
        return
    report = site_status.status(site_path(all_ok=True))
    if output_format == "json":  # --all-sites: a list, whatever the engine
        click.echo(json.dumps([report] if all_sites else report, indent=2, default=str))
        if report["database_error"]:
            raise click.ClickException(report["database_error"])
        return
    click.echo(f"site {report['site']}: {site_lease.state_line(report)}")
    for name, worker in report["workers"].items():
        if worker["state"] == "running":
            click.echo(f"  {name:<10} running (pid {worker['pid']})")
        else:
            click.echo(f"  {name:<10} {worker['state']}: {worker['last_error']}; "
                       f"next try at {worker['next_try']}")
    _echo_work(report)
    if report["database_error"]:  # said under ACTION REQUIRED; the exit code tells too
        raise click.ClickException(report["database_error"])


def _echo_work(report: dict) -> None:
    """Items, throughput, tasks, sizes, errors and actions of a status report."""
    click.echo("items:")
    for row in report["items"] or [{"direction": "-", "state": "none", "count": 0}]:
        click.echo(f"  {row['direction']:>3}  {row['state']:<13} {row['count']}")
    drain = report["drain_estimate_s"]
    if report["done_last_hour"] is not None:
        click.echo(f"done: {report['done_last_minute']} in the last minute, "
                   f"{report['done_last_hour']} in the last hour"
                   + (f"; what waits drains in about {_duration(drain)}" if drain else ""))
    if report["oldest_pending_age_s"] is not None:
        click.echo(f"oldest pending item: {_duration(report['oldest_pending_age_s'])}")
    click.echo(f"tasks in flight: {len(report['tasks_in_flight'])}")
    for task in report["tasks_in_flight"]:
        click.echo(f"  {task['task_id'] or '(submitting)'}  {task['state']}  {task['direction']} "
                   f"{task['alias']}  {_plural(task['items'], 'item')}  "
                   f"{task['nice_status'] or ''}".rstrip())
    if report.get("groups"):  # none from the database alone
        click.echo("by location:")
    for group in report.get("groups") or []:
        counts = (f"{group['active']} active ({group['queued']} queued), "
                  f"{group['inactive']} inactive, {group['held']} held")
        waits_on = f"; waits on: {group['waits_on']}" if group["waits_on"] else ""
        click.echo(f"  {group['direction']:>3} {group['alias']}: {counts}{waits_on}")
    sizes = report.get("sizes")  # none from the database alone
    if sizes and sizes["wal"] is None:
        click.echo(f"disk: logs {human_size(sizes['logs'])}; the PostgreSQL database, every "
                   f"site in it: {human_size(sizes['database'])}")
    elif sizes:
        click.echo(f"disk: site.db {human_size(sizes['database'])}, "
                   f"WAL {human_size(sizes['wal'])}, logs {human_size(sizes['logs'])}")
    slots = report.get("connections")  # PostgreSQL: the server's, every site's
    if slots:
        role = f"; role {slots['role']}: {slots['role_in_use']} of {slots['role_limit']}" \
            if slots["role_limit"] >= 0 else ""
        click.echo(f"database connections: {slots['in_use']} of {slots['max_connections']} "
                   f"in use, {slots['free']} free ({slots['reserved']} reserved for "
                   f"superusers){role}; a site needs 3")
    if report["last_error"]:
        click.echo(f"last error: {report['last_error']}")
    if report["action_required"]:
        click.echo(f"ACTION REQUIRED: {report['action_required']}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


site.add_command(report)
site.add_command(list_sites)
site.add_command(globus_login)
site.add_command(globus_whoami)
site.add_command(migrate)
