"""`balsam site ...`: create and run a site."""

from __future__ import annotations

from pathlib import Path

import click

from balsam_mp.cli.common import BalsamGroup
from balsam_mp.cli.globus import globus_login, globus_whoami
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


site.add_command(globus_login)
site.add_command(globus_whoami)
