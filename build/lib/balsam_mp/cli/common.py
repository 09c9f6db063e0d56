"""Pieces every command group shares: --site, --format, output, and error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

from balsam_mp import api
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings


class BalsamGroup(click.Group):
    """Maps every BalsamError to one clear line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BalsamError as exc:
            raise click.ClickException(str(exc)) from None


def _remember_site(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["site"] = value


site_option = click.option(
    "--site", "site", type=click.Path(file_okay=False), expose_value=False,
    callback=_remember_site, is_eager=True,
    help="Site directory (default: $BALSAM_SITE_PATH, then the current directory upward).",
)

format_option = click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="Output format.",
)


def open_site() -> Settings:
    """Settings of the site named by --site (or found), with the API bound to it."""
    ctx = click.get_current_context()
    return api.use_site(ctx.find_root().ensure_object(dict).get("site"))


def emit(output_format: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
         render: Callable[[dict[str, Any]], Sequence[Any]] | None = None) -> None:
    """Print rows as JSON, or as an aligned text table."""
    if output_format == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    table = [list(columns)] + [
        [str(v) for v in (render(r) if render else [r[c] for c in columns])] for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
