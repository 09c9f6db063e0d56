"""`balsam transfer ls|retry|cancel`."""

from __future__ import annotations

import click

from balsam_mp import api
from balsam_mp.cli.common import (
    BalsamGroup,
    RowId,
    all_sites_option,
    each_site,
    emit,
    format_option,
    open_site,
    site_option,
)
from balsam_mp.db import controls
from balsam_mp.errors import ValidationError
from balsam_mp.site import controls as site_controls
from balsam_mp.states import Item


@click.group(cls=BalsamGroup)
def transfer() -> None:
    """List, retry and cancel transfers."""


@transfer.command(name="ls")
@site_option
@click.option("--state", type=click.Choice(Item.ALL), help="Only items in this state.")
@click.option("--job", "job_id", type=RowId(), help="Only items of this job.")
@click.option("--direction", type=click.Choice(["in", "out"]))
@all_sites_option
@format_option
def list_items(state: str | None, job_id: int | None, direction: str | None,
               all_sites: bool, output_format: str) -> None:
    """List transfer items (of the current site, or of --all-sites)."""
    lookups = {k: v for k, v in (("state", state), ("job_id", job_id),
                                 ("direction", direction)) if v is not None}
    rows = [{"site": site_name, "id": i.id, "job": i.job_id, "direction": i.direction,
             "state": i.state, "remote": f"{i.location_alias}:{i.remote_path}",
             "local_path": i.local_path, "task_id": i.task_id, "attempts": i.attempts,
             "split_round": i.split_round, "error": i.error}
            for site_name in each_site(all_sites)
            for i in api.TransferItem.objects.filter(**lookups)]
    # split_round: how often the item's batch was split in halves to isolate a poison
    emit(output_format, rows, ["site"] * all_sites + [
        "id", "job", "direction", "state", "split_round", "remote", "task_id", "error"])


@transfer.command()
@site_option
@click.argument("item_ids", nargs=-1, type=RowId())
@click.option("--failed", is_flag=True, help="Retry every item in state error.")
def retry(item_ids: tuple[int, ...], failed: bool) -> None:
    """Put failed items back to pending; their FAILED jobs return to where they were."""
    if bool(item_ids) == failed:
        raise ValidationError("give item ids or --failed (not both)")
    open_site()
    api.connect()
    retried = controls.retry_items(None if failed else list(item_ids))
    click.echo(f"retrying {len(retried)} item(s)")


@transfer.command()
@site_option
@click.argument("task_ids", nargs=-1, required=True)
def cancel(task_ids: tuple[str, ...]) -> None:
    """Cancel transfer tasks (local or remote ids); their items end in error."""
    settings = open_site()
    api.connect()
    lines, failed = site_controls.cancel(settings, list(task_ids))
    for line in lines:
        click.echo(line)
    if failed:
        raise click.ClickException(f"{failed} of {len(lines)} cancel(s) not confirmed; the "
                                   "site's poller sends them again (or run this again)")
