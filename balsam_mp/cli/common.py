"""Pieces every command group shares: --site, --format, output, and error mapping."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from balsam_mp import api, settings
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site.layout import SELECTORS


class BalsamGroup(click.Group):
    """Maps every BalsamError to one clear line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BalsamError as exc:
            raise click.ClickException(str(exc)) from None


class MainGroup(BalsamGroup):
    """The `balsam` command: a usage mistake is one line too (click prints three)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.exceptions.NoArgsIsHelpError as exc:  # `balsam`, `balsam job`: help
            click.echo(exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"Error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


MAX_ID = 2**63 - 1  # the largest row id the database can hold


class RowId(click.ParamType):
    """A row id: a positive integer the database can hold (a larger one is no id at all)."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        text = str(value)
        if not text.isdigit() or not 0 < int(text) <= MAX_ID:
            self.fail(f"{value!r} is not an id (a whole number from 1 to {MAX_ID})", param, ctx)
        return int(text)


class Seconds(click.ParamType):
    """A finite, non-negative number of seconds (click's float takes 'nan' and 'inf')."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds < 0:
            self.fail(f"{value!r} must be a finite number of seconds, 0 or more", param, ctx)
        return seconds


def _remember_site(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # kept on the root context: the last --site given wins, wherever it stands
    if value is not None:
        ctx.find_root().ensure_object(dict)["site"] = value


site_option = click.option(
    "--site", "site", type=click.Path(file_okay=False), expose_value=False,
    callback=_remember_site, is_eager=True,
    help="Site directory (default: $BALSAM_SITE_PATH, then the current directory upward); "
         "where no folder of that name exists, as in Balsam: a site's name, names "
         "separated by commas, `all` or `this`.",
)

def _remember_env(name: str):
    def remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None and not value.strip():  # "" would read as not given at all
            raise click.BadParameter("must not be empty", ctx, param)
        if value is not None:  # the API reads these as a client's own settings
            os.environ[name] = value
            ctx.find_root().ensure_object(dict)[name] = value  # typed: wins over the site dir
    return remember


database_options = [
    click.option("--database-url", metavar="URL", expose_value=False, is_eager=True,
                 callback=_remember_env("BALSAM_DATABASE_URL"),
                 help="A site's PostgreSQL database, for a client without the site "
                      "directory (default: $BALSAM_DATABASE_URL)."),
    click.option("--site-name", metavar="NAME", expose_value=False, is_eager=True,
                 callback=_remember_env("BALSAM_SITE_NAME"),
                 help="The site in that database (default: $BALSAM_SITE_NAME)."),
]

format_option = click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="Output format.",
)


def open_site(client_ok: bool = True) -> Settings:
    """Settings of the site named by --site (or found), with the API bound to it; a
    client without the directory names the site (--site-name, $BALSAM_SITE_NAME, or
    --site NAME where no folder of that name exists), except for the commands that run
    the site itself (`client_ok=False`)."""
    selector = site_selector()
    if selector == ALL or (selector and "," in selector):
        raise BalsamError(f"--site {selector} names several sites; this command works on "
                          "one: name it (--site NAME)")
    path = _site_option()
    typed = _typed_site_name()
    if path is not None and typed:
        raise BalsamError(f"--site {path} and --site-name {typed} name two ways to a site; "
                          "give one")
    if _selected_name() and _picked_name():
        raise BalsamError(f"--site {selector} and --site-name {_picked_name()} name two "
                          "sites; give one")
    if _selected_name():
        if not client_ok and getattr(_settings_here(), "site_name", None) != selector:
            raise BalsamError(f"--site {selector}: no folder of that name, and this command "
                              "runs in the site's own directory (--site PATH)")
        return _open_by_name(selector)
    name = named_site()
    if path is None and client_ok and name:
        # --site-name typed in a site directory (or with $BALSAM_SITE_PATH): another
        # site of the same database
        url = os.environ.get(settings.DATABASE_URL_ENV) or (_url_here() if typed else None)
        return api.use_database(url, name)
    if path is None and client_ok and os.environ.get(settings.DATABASE_URL_ENV):
        try:
            settings.find_site(None)
        except BalsamError as exc:  # a client that forgot to name its site
            raise BalsamError(f"{exc}; or name a site of ${settings.DATABASE_URL_ENV} "
                              "(--site-name, $BALSAM_SITE_NAME)") from None
    return api.use_site(path)


ALL, THIS = SELECTORS  # Balsam's --site selectors, beside a site's name


def site_selector() -> str | None:
    """--site's value when no folder of that name exists: as in Balsam, a site's name,
    names separated by commas, `all` or `this` (a value with a / is always a folder)."""
    value = _site_value()
    if value is None or "/" in value or value in (".", "..") or os.path.lexists(value):
        return None
    return value


def named_site() -> str | None:
    """The site named by --site-name (or --site NAME), or by $BALSAM_SITE_NAME without
    $BALSAM_SITE_PATH."""
    return _typed_site_name() or api.client_site_name()


def _picked_name() -> str | None:  # --site-name
    return click.get_current_context().find_root().ensure_object(dict).get(api.SITE_NAME_ENV)


def _selected_name() -> str | None:  # --site NAME, one site other than by a folder
    selector = site_selector()
    return None if selector in (None, ALL, THIS) or "," in selector else selector


def _typed_site_name() -> str | None:
    return _picked_name() or _selected_name()


def _settings_here() -> Settings | None:
    try:
        return settings.load(None)
    except BalsamError:
        return None


def _url_here() -> str | None:
    here = _settings_here()
    return here.database_url if here is not None else None


all_sites_option = click.option(
    "--all-sites", is_flag=True,
    help="Every site in the database (PostgreSQL), with a site column.")


def each_site(all_sites: bool) -> Iterator[str]:
    """The current site's name, or, with --all-sites (or --site all), every site's name
    in its database (or in $BALSAM_DATABASE_URL, for a client that names none), or the
    sites of --site NAME,NAME; the API is bound to each in turn."""
    selector = site_selector()
    if selector and "," in selector:
        names = list(dict.fromkeys(n.strip() for n in selector.split(",") if n.strip()))
        if not names:  # "--site ,": a typo, not "no site at all"
            raise BalsamError(f"--site {selector!r} names no site (give NAME[,NAME...], "
                              "all, this or a folder)")
        for name in names:
            _open_by_name(name)
            yield name
        return
    all_sites = all_sites or selector == ALL
    if all_sites and _typed_site_name():
        raise BalsamError("--all-sites lists every site; --site-name picks one: give one")
    url = os.environ.get(settings.DATABASE_URL_ENV)
    try:
        current: Settings | None = api.use_site(None) if selector == ALL else open_site()
    except BalsamError:
        if not (all_sites and url):
            raise
        current = None  # a client with a URL alone
    if current is not None and (not all_sites or not current.database_url):
        yield current.site_name
        return
    url = current.database_url if current is not None else url
    for name in api.site_names(url):
        api.use_database(url, name)
        yield name


def _open_by_name(name: str) -> Settings:
    here = _settings_here()
    if here is not None and here.site_name == name:
        return api.use_site(here.site_path)
    url = os.environ.get(settings.DATABASE_URL_ENV) or _url_here()
    if url is None:
        where = f"this site is {here.site_name!r}" if here else "no site directory here"
        raise BalsamError(f"--site {name}: no folder and no site of that name ({where}; a "
                          "SQLite site holds only itself)")
    try:
        return api.use_database(url, name)
    except BalsamError as exc:
        raise BalsamError(f"--site {name}: no folder of that name; as a site's name: "
                          f"{exc}") from None


def site_path(all_ok: bool = False) -> Path:
    """The site directory alone, for commands that must work with a broken settings.yml
    (--site NAME: this site's own name; `all_ok`: --site all is this site, on SQLite)."""
    if all_ok and site_selector() == ALL:
        return settings.find_site(None)
    if _selected_name() or site_selector() == ALL:
        return open_site(client_ok=False).site_path
    return settings.find_site(_site_option())


def _site_option() -> str | None:
    """--site as a folder (None when it is a selector)."""
    return None if site_selector() else _site_value()


def _site_value() -> str | None:
    return click.get_current_context().find_root().ensure_object(dict).get("site")


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
