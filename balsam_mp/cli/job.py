"""`balsam job create|ls|modify|rm`."""

from __future__ import annotations

import click

from balsam_mp import api
from balsam_mp.cli.common import (
    MAX_ID,
    BalsamGroup,
    all_sites_option,
    each_site,
    emit,
    format_option,
    open_site,
    site_option,
)
from balsam_mp.errors import NotFound, ValidationError
from balsam_mp.states import JOB_STATES
from balsam_mp.transitions import check_state_name


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise ValidationError(f"{option} {value!r}: expected KEY=VALUE")
        if key in pairs:  # the last one silently winning hides a typo
            raise ValidationError(f"{option} {key}= is given twice ({pairs[key]!r} and "
                                  f"{rest!r}); give each once")
        pairs[key] = rest
    return pairs


@click.group(cls=BalsamGroup)
def job() -> None:
    """Create, list, modify and remove jobs."""


@job.command()
@site_option
@click.option("--app", "app_name", required=True, help="App class name.")
@click.option("--workdir", required=True, help="Work directory, relative to SITE/data.")
@click.option("-t", "--transfer", "transfers", multiple=True,
              help="SLOT=ALIAS:/absolute/path (repeatable).")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE (repeatable).")
@format_option
def create(app_name: str, workdir: str, transfers: tuple[str, ...], tags: tuple[str, ...],
           output_format: str) -> None:
    """Create one job."""
    open_site()
    new = api.Job.objects.create(app=app_name, workdir=workdir,
                                 transfers=_pairs("-t", transfers), tags=_pairs("--tag", tags))
    emit(output_format, [_row(new, {new.app_id: app_name})], ["id", "app", "workdir", "state"])


@job.command(name="ls")
@site_option
@click.option("--state", type=click.Choice(JOB_STATES), help="Only jobs in this state.")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE that jobs must carry.")
@all_sites_option
@format_option
def list_jobs(state: str | None, tags: tuple[str, ...], all_sites: bool,
              output_format: str) -> None:
    """List jobs (of the current site, or of --all-sites)."""
    rows = []
    for site_name in each_site(all_sites):
        query = api.Job.objects.all()
        if state:
            query = query.filter(state=state)
        if tags:
            query = query.filter(tags=_pairs("--tag", tags))
        app_names = {a.id: a.name for a in api.App.objects.all()}
        rows += [{"site": site_name, **_row(j, app_names)} for j in query]
    emit(output_format, rows, ["site"] * all_sites + ["id", "app", "workdir", "state"])


def _row(job_row, app_names: dict[int, str]) -> dict:
    return {"id": job_row.id, "app": app_names[job_row.app_id], "workdir": job_row.workdir,
            "state": job_row.state, "state_data": job_row.state_data, "tags": job_row.tags}


def _job_ids(values: tuple[str, ...]) -> list[int]:
    """Job ids as the user typed them; all must exist."""
    ids = []
    for value in values:
        if not value.isdigit() or not 0 < int(value) <= MAX_ID:
            raise ValidationError(f"job id {value!r} is not an id (a whole number from 1 to "
                                  f"{MAX_ID})")
        ids.append(int(value))
    found = {job.id for job in api.Job.objects.filter(id=ids)}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        raise NotFound(f"no job with id {', '.join(missing)}")
    return list(dict.fromkeys(ids))


@job.command()
@site_option
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--state", "state", required=True, help="The state to move the jobs to.")
def modify(job_ids: tuple[str, ...], state: str) -> None:
    """Move jobs to STATE through the same rules as the Python API (all or none move)."""
    open_site()
    check_state_name(state, "--state")
    ids = _job_ids(job_ids)
    for moved in api.Job.objects.filter(id=ids).update(state=state):
        click.echo(f"job {moved.id}: {moved.state}")


@job.command(name="rm")
@site_option
@click.argument("job_ids", nargs=-1, required=True)
def remove(job_ids: tuple[str, ...]) -> None:
    """Delete jobs with their transfer items (refused while an item is in flight;
    the files in their workdirs stay)."""
    open_site()
    deleted = api.Job.objects.filter(id=_job_ids(job_ids)).delete()
    click.echo(f"deleted {deleted} job(s)")
