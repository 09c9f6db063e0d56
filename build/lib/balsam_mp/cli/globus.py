"""`balsam site globus-login` and `balsam site globus-whoami`."""

from __future__ import annotations

import json

import click

from balsam_mp import auth
from balsam_mp.cli.common import format_option, open_site, site_option


@click.command("globus-login")
@site_option
@click.option("-e", "--endpoint", "endpoints", multiple=True, metavar="ENDPOINT_ID",
              help="Also ask data_access consent for this endpoint (repeatable).")
@click.option("--force", is_flag=True, help="Log in again even if stored tokens are valid.")
@click.option("--status", is_flag=True, help="Only report which credentials are used.")
@format_option
def globus_login(endpoints: tuple[str, ...], force: bool, status: bool,
                 output_format: str) -> None:
    """Log in to Globus and consent to the site's endpoints."""
    settings = open_site()
    if status:
        return _report(auth.credential_status(settings), output_format)
    stored = auth.login(settings, list(endpoints), force=force)
    click.echo(f"logged in; tokens stored in {stored}")


@click.command("globus-whoami")
@site_option
@format_option
def globus_whoami(output_format: str) -> None:
    """Which Globus credentials the site uses, whether they work, what consent is missing."""
    _report(auth.credential_status(open_site()), output_format)


def _report(report: dict, output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"source:  {report['source']} ({report['detail']})")
        click.echo(f"valid:   {'yes' if report['valid'] else 'no'}")
        if report["error"]:
            click.echo(f"error:   {report['error']}")
        missing = ", ".join(report["missing_consents"]) or "none"
        click.echo(f"missing consents: {missing}")
        if report.get("fix"):
            click.echo(f"fix:     {report['fix']}")
    if not report["valid"] or report["missing_consents"]:
        raise SystemExit(1)
