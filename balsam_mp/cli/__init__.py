"""The `balsam` command line."""

from __future__ import annotations

import logging

import click

from balsam_mp import __version__
from balsam_mp.cli.app import app
from balsam_mp.cli.common import MainGroup, database_options, site_option
from balsam_mp.cli.job import job
from balsam_mp.cli.site import site
from balsam_mp.cli.transfer import transfer


@click.group(cls=MainGroup)
@click.version_option(__version__, prog_name="balsam")
@site_option
@database_options[0]
@database_options[1]
@click.option("-v", "--verbose", is_flag=True, help="Log informational messages.")
def main(verbose: bool) -> None:
    """Stage the input and output files of many HPC jobs."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


for group in (site, app, job, transfer):
    main.add_command(group)
