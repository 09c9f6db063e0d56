"""`balsam job create|ls|modify|rm`, with Balsam 0.7's flags (balsam/cmdline/job.py)."""

from __future__ import annotations

import json

import click

from balsam_mp import api
from balsam_mp.cli.common import (
    ALL,
    BalsamGroup,
    all_sites_option,
    each_site,
    emit,
    format_option,
    open_site,
    site_option,
    site_selector,
)
from balsam_mp.cli.jobselect import (
    JobStateName,
    UnknownApp,
    check_launcher,
    find_app,
    launcher_options,
    pairs,
    parse_ids,
    select_jobs,
    warn_launcher,
)
from balsam_mp.errors import ValidationError
from balsam_mp.states import JOB_STATES
from balsam_mp.transitions import check_state_name

COLUMNS = ["id", "app", "workdir", "state"]


@click.group(cls=BalsamGroup)
def job() -> None:
    """Create, list, modify and remove jobs."""


@job.command()
@site_option
@click.option("-w", "--workdir", required=True, help="Work directory, relative to SITE/data.")
@click.option("-a", "--app", "app_name", required=True,
              help="The app: its id, its name, or module.ClassName.")
@click.option("-tag", "--tag", "tags", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("-p", "--param", "params", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("-s", "--stage-data", "--transfer", "transfers", multiple=True,
              help="SLOT=ALIAS:/absolute/path (repeatable).")
@click.option("-y", "--yes", is_flag=True,
              help="Create without asking (this site never asks; for Balsam's scripts).")
@launcher_options
@format_option
def create(workdir: str, app_name: str, tags: tuple[str, ...], params: tuple[str, ...],
           transfers: tuple[str, ...], yes: bool, output_format: str, **launcher) -> None:
    """Create one job (all of it, folders included, or nothing)."""
    check_launcher(launcher)
    open_site()
    app_id, name = find_app(app_name)
    new = api.Job.objects.create(app_id=app_id, workdir=workdir,
                                 transfers=pairs("-s", transfers), tags=pairs("--tag", tags),
                                 parameters=pairs("-p", params))
    emit(output_format, [_row(new, {app_id: name})], COLUMNS)
    warn_launcher(launcher)  # after the job exists: a refusal stays one line


@job.command(name="ls")
@site_option
@click.option("-t", "--tag", "tags", multiple=True, help="KEY=VALUE that jobs must carry.")
@click.option("-s", "--state", type=JobStateName(), help="Only jobs in this state.")
@click.option("-ns", "--exclude-state", type=JobStateName(), help="No jobs in this state.")
@click.option("--id", "ids", multiple=True, help="Only this job (repeatable).")
@click.option("-w", "--workdir", help="Only jobs whose workdir contains this text.")
@click.option("-a", "--app", "app_name", help="Only jobs of this app (id or name).")
@click.option("--by-state", is_flag=True, help="Count jobs by state instead.")
@click.option("-v", "--verbose", is_flag=True,
              help="Every field of each job (with --by-state: every state, even at 0).")
@all_sites_option
@format_option
def list_jobs(tags: tuple[str, ...], state: str | None, exclude_state: str | None,
              ids: tuple[str, ...], workdir: str | None, app_name: str | None, by_state: bool,
              verbose: bool, all_sites: bool, output_format: str) -> None:
    """List jobs (of the current site, of --all-sites, or of --site NAME,... / all)."""
    tag_filter, id_filter = pairs("--tag", tags), parse_ids("--id", ids)
    rows: list[dict] = []
    missing_app: UnknownApp | None = None
    app_found = False
    for site_name in each_site(all_sites):
        query = select_jobs([], tag_filter, state, exclude_state)
        if id_filter:
            query = query.filter(id=id_filter)
        if workdir:
            query = query.filter(workdir__contains=workdir)
        if app_name is not None:  # -a "" (an empty $APP) names no app: not "any app"
            try:
                query = query.filter(app_id=find_app(app_name)[0])
                app_found = True
            except UnknownApp as exc:  # on one of several sites: none of its jobs
                missing_app = exc
                continue
        rows += _rows(site_name, query, by_state, verbose)
    if missing_app is not None and not app_found:  # on no site at all
        raise missing_app
    selector = site_selector() or ""
    several = all_sites or selector == ALL or "," in selector
    site_column = ["site"] if several or len({r["site"] for r in rows}) > 1 else []
    if by_state:
        emit(output_format, rows, site_column + ["state", "count"])
    elif verbose and output_format == "text":
        _echo_verbose(rows)
    else:
        emit(output_format, rows, site_column + COLUMNS)


def _rows(site_name: str, query: api.QuerySet, by_state: bool, verbose: bool) -> list[dict]:
    if by_state:
        counts = {state: query.filter(state=state).count() for state in JOB_STATES}
        return [{"site": site_name, "state": state, "count": count}
                for state, count in counts.items() if count or verbose]
    app_names = {a.id: a.name for a in api.App.objects.all()}
    rows = []
    for found in query:
        row = {"site": site_name, **_row(found, app_names)}
        if verbose:
            row.update(parameters=found.parameters, transfers=found.transfers,
                       created_at=found.created_at, last_update=found.last_update)
        rows.append(row)
    return rows


def _row(job_row, app_names: dict[int, str]) -> dict:
    return {"id": job_row.id, "app": app_names[job_row.app_id], "workdir": str(job_row.workdir),
            "state": job_row.state, "state_data": job_row.state_data, "tags": job_row.tags}


def _echo_verbose(rows: list[dict]) -> None:
    for row in rows:
        for key, value in row.items():
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
            click.echo(f"{key}: {shown}")
        click.echo("---")


def _selected_ids(positional: tuple[str, ...], option: tuple[str, ...]) -> list[int]:
    return parse_ids("job id", positional) + [
        i for i in parse_ids("--id", option) if str(i) not in positional]


@job.command()
@site_option
@click.argument("job_ids", nargs=-1)
@click.option("-i", "--id", "option_ids", multiple=True, help="A job id (repeatable).")
@click.option("-t", "--tag", "tags", multiple=True, help="Jobs carrying KEY=VALUE.")
@click.option("-s", "--state", "state", required=True, help="The state to move the jobs to.")
@format_option
def modify(job_ids: tuple[str, ...], option_ids: tuple[str, ...], tags: tuple[str, ...],
           state: str, output_format: str) -> None:
    """Move jobs (ids, -i/--id, -t/--tag: those matching all given) to STATE through the
    same rules as the Python API (all or none move)."""
    open_site()
    check_state_name(state, "--state")
    ids, tag_filter = _selected_ids(job_ids, option_ids), pairs("--tag", tags)
    if not ids and not tag_filter:
        raise ValidationError("give the jobs to modify: job ids (ID... or -i/--id) or "
                              "-t/--tag KEY=VALUE")
    query = select_jobs(ids, tag_filter)
    moved = query.update(state=state)
    if output_format == "json":
        click.echo(json.dumps([{"id": j.id, "state": j.state} for j in moved], indent=2))
    elif not moved:
        click.echo("no job matches: nothing modified")
    for found in moved if output_format == "text" else ():
        click.echo(f"job {found.id}: {found.state}")


@job.command(name="rm")
@site_option
@click.argument("job_ids", nargs=-1)
@click.option("-i", "--id", "option_ids", multiple=True, help="A job id (repeatable).")
@click.option("-t", "--tag", "tags", multiple=True, help="Jobs carrying KEY=VALUE.")
@click.option("-s", "--state", type=JobStateName(), help="Jobs in this state.")
@click.option("-ns", "--exclude-state", type=JobStateName(), help="Jobs not in this state.")
@click.option("--all", "all_jobs", is_flag=True, help="Every job of the site(s).")
@click.option("-y", "--yes", is_flag=True, help="Delete without asking.")
@format_option
def remove(job_ids: tuple[str, ...], option_ids: tuple[str, ...], tags: tuple[str, ...],
           state: str | None, exclude_state: str | None, all_jobs: bool, yes: bool,
           output_format: str) -> None:
    """Delete jobs (those matching every selector given) with their transfer items,
    after asking (-y: without); refused while an item is in flight. The files in their
    workdirs stay."""
    ids, tag_filter = _selected_ids(job_ids, option_ids), pairs("--tag", tags)
    chosen = bool(ids or tag_filter or state or exclude_state)
    if all_jobs and chosen:
        raise ValidationError("--all deletes every job: give it alone, or drop it to "
                              "delete only the jobs selected")
    if not all_jobs and not chosen:
        raise ValidationError("give the jobs to delete: job ids (ID... or -i/--id), "
                              "-t/--tag, -s/--state, -ns/--exclude-state, or --all")
    found = {name: [j.id for j in select_jobs(ids, tag_filter, state, exclude_state)]
             for name in each_site(False)}
    total = sum(len(v) for v in found.values())
    if not total:
        _said(output_format, 0, "no job matches: nothing deleted")
        return
    if not yes:
        _confirm(found, total)
    deleted = 0
    for name in each_site(False):  # the jobs counted, if they still match
        if found.get(name):
            deleted += select_jobs([], tag_filter, state, exclude_state).filter(
                id=found[name]).delete()
    _said(output_format, deleted, f"deleted {deleted} job(s)")


def _said(output_format: str, deleted: int, text: str) -> None:
    click.echo(json.dumps({"deleted": deleted}) if output_format == "json" else text)


def _confirm(found: dict[str, list[int]], total: int) -> None:
    shown = "; ".join(f"site {name}: {', '.join(map(str, ids[:10]))}"
                      f"{' ...' if len(ids) > 10 else ''}" for name, ids in found.items() if ids)
    try:
        agreed = click.confirm(f"Really delete {total} job(s) ({shown})?", err=True)
    except click.exceptions.Abort:  # no answer (stdin closed)
        click.echo(err=True)  # end the prompt's line
        raise click.ClickException("no answer: nothing deleted (pass -y to delete without "
                                   "asking)") from None
    if not agreed:
        raise click.ClickException("not confirmed: nothing deleted")
