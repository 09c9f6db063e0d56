"""`balsam site globus-login` and `balsam site globus-whoami`."""

from __future__ import annotations

import json

import click
import globus_sdk

from balsam_mp import auth
from balsam_mp.cli.common import format_option, open_site, site_option
from balsam_mp.errors import BalsamError


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
    try:
        stored = auth.login(settings, list(endpoints), force=force)
    except globus_sdk.GlobusAPIError as exc:  # e.g. a wrong or expired code pasted in
        raise BalsamError(f"Globus refused the login ({exc.http_status} {exc.code}: "
                          f"{exc.message}); run `balsam site globus-login` again and paste "
                          "the code the browser shows") from None
    except globus_sdk.NetworkError as exc:
        raise BalsamError(f"cannot reach Globus Auth: {exc}") from None
    except EOFError:
        raise BalsamError("no authorization code was entered") from None
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
