"""`balsam app sync|ls`."""

from __future__ import annotations

import click

from balsam_mp import api
from balsam_mp.cli.common import BalsamGroup, emit, format_option, open_site, site_option


@click.group(cls=BalsamGroup)
def app() -> None:
    """Register and list the site's apps."""


@app.command()
@site_option
def sync() -> None:
    """Register or update every app in SITE/apps/*.py."""
    open_site()
    names = api.App.sync()
    click.echo(f"synced {len(names)} app(s): {', '.join(names) or '-'}")


@app.command(name="ls")
@site_option
@format_option
def list_apps(output_format: str) -> None:
    """List apps with their transfer slots."""
    open_site()
    rows = [{"name": a.name, "description": a.description, "transfers": a.transfers,
             "source_file": a.source_file} for a in api.App.objects.order_by("name")]

    def render(row: dict) -> list[str]:
        slots = ", ".join(
            f"{name}({s['direction']}{', required' if s['required'] else ''} -> {s['local_path']})"
            for name, s in row["transfers"].items()
        )
        return [row["name"], slots or "-", row["description"]]

    emit(output_format, rows, ["name", "transfers", "description"], render)
