"""`balsam site ls`: the sites a user can reach from here, as Balsam lists its sites."""

from __future__ import annotations

import os

import click

from balsam_mp import api, settings
from balsam_mp.api.site import database
from balsam_mp.cli.common import emit, format_option, open_site, site_option
from balsam_mp.dburl import display_url
from balsam_mp.errors import BalsamError
from balsam_mp.site import lease, service


@click.command(name="ls")
@site_option
@click.option("-v", "--verbose", is_flag=True, help="Add each site's database.")
@format_option
def list_sites(verbose: bool, output_format: str) -> None:
    """List sites: on PostgreSQL every site in the database (active: its supervisor
    holds the site's lock, wherever it runs); on SQLite this site (active: it runs on
    this host)."""
    try:
        here: settings.Settings | None = open_site()
    except BalsamError:
        if not os.environ.get(settings.DATABASE_URL_ENV):
            raise
        here = None  # a client with a database URL alone
    if here is not None and not here.database_url:
        rows = [{"name": here.site_name, "path": str(here.site_path),
                 "active": service.running_here(here.site_path),
                 "jobs": api.Job.objects.count(), "database": str(here.database)}]
    else:
        url = here.database_url if here is not None else \
            os.environ[settings.DATABASE_URL_ENV]
        rows = [_postgres_row(url, name) for name in api.site_names(url)]
    columns = ["name", "path", "active", "jobs"] + ["database"] * verbose

    def render(row: dict) -> list:
        return [row["name"], row["path"], "yes" if row["active"] else "no",
                row["jobs"]] + [row["database"]] * verbose

    emit(output_format, rows, columns, render)


def _postgres_row(url: str, name: str) -> dict:
    row = {"name": name, "database": display_url(url)}
    try:
        site = api.use_database(url, name)
        api.connect()
        held = lease.read(database())  # active: a host holds the site's live lease
        return {**row, "path": str(site.site_path), "active": bool(held and held["live"]),
                "jobs": api.Job.objects.count()}
    except BalsamError as exc:  # e.g. a site not started yet: it published no path
        return {**row, "path": f"({exc})", "active": False, "jobs": None}
