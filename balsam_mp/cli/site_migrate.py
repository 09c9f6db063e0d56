"""`balsam site migrate`: move a stopped SQLite site into PostgreSQL."""

from __future__ import annotations

import click

from balsam_mp.cli.common import site_option, site_path
from balsam_mp.site import migration


@click.command()
@site_option
@click.option("--database-url", "url", metavar="URL", required=True,
              help="postgresql://user@host:port/dbname (the password from ~/.pgpass or "
                   "$PGPASSWORD); the site's schema there must not exist or be empty.")
def migrate(url: str) -> None:
    """Move this stopped SQLite site into a new PostgreSQL schema: apps, jobs, items,
    tasks (submitting ones with their submission ids), events and request budget; then
    settings.yml names the URL and site.db is kept, renamed, as a backup."""
    moved = migration.migrate(site_path(), url)
    rows = ", ".join(f"{table} {count}" for table, count in moved.copied.counts.items())
    click.echo(f"copied site {moved.site!r} into schema {moved.schema} of {moved.url} in "
               f"{moved.copied.seconds:.1f} s; rows: {rows}")
    if moved.copied.released or moved.copied.submitting:
        click.echo(f"claims of the stopped site's processes released: "
                   f"{moved.copied.released}; tasks still submitting: "
                   f"{moved.copied.submitting} (sent again with their submission ids)")
    click.echo(f"settings.yml now has database_url: {moved.url}")
    for kept in moved.backup[:1]:
        click.echo(f"the SQLite database is kept as a backup: {kept}")
    if moved.note:
        click.echo(f"warning: {moved.note}", err=True)
    click.echo("next: balsam site start")

