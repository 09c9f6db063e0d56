"""`balsam app sync|ls|rm`."""

from __future__ import annotations

import click

from balsam_mp import api
from balsam_mp.cli.common import BalsamGroup, emit, format_option, open_site, site_option


@click.group(cls=BalsamGroup)
def app() -> None:
    """Register, list and remove the site's apps."""


@app.command()
@site_option
def sync() -> None:
    """Register or update every app in SITE/apps/*.py. Apps registered from Python
    (MyApp.sync()) stay; an app whose file left SITE/apps/ is forgotten unless jobs
    use it."""
    open_site()
    names = api.App.sync()
    click.echo(f"synced {len(names)} app(s): {', '.join(names) or '-'}")


@app.command(name="ls")
@site_option
@format_option
@click.option("-v", "--verbose", is_flag=True,
              help="Also show each app's id, class path, source file and job count.")
def list_apps(output_format: str, verbose: bool) -> None:
    """List apps with their transfer slots."""
    open_site()
    rows = [{"id": a.id, "name": a.name, "class_path": a.class_path,
             "description": a.description, "transfers": a.transfers,
             "source_file": a.source_file,
             **({"jobs": api.Job.objects.filter(app_id=a.id).count()} if verbose else {})}
            for a in api.App.objects.order_by("name")]

    def slots(row: dict) -> str:
        return ", ".join(
            f"{name}({s['direction']}{', required' if s['required'] else ''} -> {s['local_path']})"
            for name, s in row["transfers"].items()) or "-"

    if verbose:
        emit(output_format, rows,
             ["id", "name", "class_path", "jobs", "transfers", "source_file", "description"],
             lambda row: [row["id"], row["name"], row["class_path"], row["jobs"], slots(row),
                          row["source_file"], row["description"]])
    else:
        emit(output_format, rows, ["name", "transfers", "description"],
             lambda row: [row["name"], slots(row), row["description"]])


@app.command(name="rm")
@site_option
@click.option("-n", "--name", "name", required=True, help="The app to remove (its name).")
def remove_app(name: str) -> None:
    """Forget an app (refused while jobs use it). Its class, if in SITE/apps/, comes
    back at the next `balsam app sync`: remove the file too."""
    open_site()
    found = api.App.objects.filter(name=name).first()
    if found is None:
        names = ", ".join(a.name for a in api.App.objects.order_by("name")) or "none"
        raise click.ClickException(f"no app named {name!r} (apps: {names})")
    found.delete()
    click.echo(f"removed app {name}")
