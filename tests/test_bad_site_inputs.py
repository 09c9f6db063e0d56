"""Bad command lines, settings.yml files and app files, as a hostile new user writes them:
unknown options and ids, `site init` and `site stop` misused, settings that are not finite,
not typed right, given twice, not UTF-8 or not YAML, and app files whose slots overlap or
that cannot be imported. Each gets one clear error and changes nothing: the checks are in
tests/refusals.py. Bad inputs to a job are in tests/test_bad_inputs.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.errors import SettingsError, SiteNotFound
from tests.refusals import LONG, Case, app_file, assert_refused, settings_text


def settings_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda site: (site / "settings.yml").write_bytes(data)


def use_site_again() -> object:
    return api.use_site(os.environ["BALSAM_SITE_PATH"])


def app_sync() -> object:
    return api.App.sync()


NAN = "transfers: {service_period: .nan}\n"
CASES = [
    # -- command line ---------------------------------------------------------------------
    Case("option-unknown", ("job", "ls", "--colour", "red"), "No such option"),
    Case("state-unknown", ("job", "ls", "--state", "DONE"), "'DONE' is not a job state"),
    Case("ls-tag-no-equals", ("job", "ls", "--tag", "colour"), "expected KEY=VALUE"),
    Case("site-missing", ("job", "ls", "--site", "/nonexistent/site"), "is not a balsam site",
         lambda: api.use_site("/nonexistent/site"), SiteNotFound),
    Case("site-after-subcommand-wins", ("job", "ls", "--site", "/tmp"),
         "/tmp is not a balsam site"),
    Case("transfer-retry-nothing", ("transfer", "retry"), "give item ids or --failed"),
    Case("transfer-ls-job-not-int", ("transfer", "ls", "--job", "one"), "is not an id"),
    Case("site-stop-not-running", ("site", "stop"), "is not running"),
    Case("site-stop-timeout-nan", ("site", "stop", "--timeout", "nan"), "finite number"),
    Case("site-stop-timeout-negative", ("site", "stop", "--timeout", "-1"), "finite number"),
    Case("transfer-retry-unknown", ("transfer", "retry", "99"), "no transfer item with id 99"),
    Case("transfer-cancel-unknown", ("transfer", "cancel", "abc"),
         "no transfer task with id abc"),
    Case("site-init-existing", ("site", "init", "{site}"), "already a balsam site"),
    Case("site-init-cannot-create", ("site", "init", "/proc/new-site"), "cannot create a site"),
    Case("site-init-bad-name", ("site", "init", "{tmp}/n", "--name", "a\x01b"),
         "must be 1 to 64 characters"),
    Case("site-init-empty-name", ("site", "init", "{tmp}/n", "--name", ""),
         "site name '' must be 1 to 64 characters"),
    Case("site-init-name-with-space", ("site", "init", "{tmp}/n", "--name", "bad name!"),
         "site name 'bad name!' must be"),
    # -- settings.yml ---------------------------------------------------------------------
    Case("settings-nan", ("job", "ls"), "transfers.service_period: must be a finite number",
         use_site_again, SettingsError, settings_text(NAN)),
    Case("settings-inf", ("site", "sync"), "transfers.retry_backoff_max: must be a finite",
         use_site_again, SettingsError,
         settings_text("transfers: {retry_backoff_max: .inf}\n")),
    Case("settings-int-nan", ("job", "ls"), "transfers.max_retries: must be an integer",
         use_site_again, SettingsError, settings_text("transfers: {max_retries: .nan}\n")),
    Case("settings-minus-inf", ("site", "start"), "transfers.claim_lease: must be a finite",
         use_site_again, SettingsError, settings_text("transfers: {claim_lease: -.inf}\n")),
    Case("settings-huge-int", ("job", "ls"), "transfers.max_retries: " + "9" * 40,
         use_site_again, SettingsError,
         settings_text(f"transfers: {{max_retries: {'9' * 400}}}\n")),
    Case("settings-float-for-int", ("job", "ls"), "must be an integer, got 2.5",
         use_site_again, SettingsError, settings_text("transfers: {max_retries: 2.5}\n")),
    Case("settings-duplicate-key", ("site", "sync"), "key 'max_retries' is given twice",
         use_site_again, SettingsError,
         settings_text("transfers:\n  max_retries: 1\n  max_retries: 5\n")),
    Case("settings-duplicate-section", ("job", "ls"), "key 'transfers' is given twice",
         use_site_again, SettingsError, settings_text("transfers: {}\ntransfers: {}\n")),
    Case("settings-not-utf8", ("job", "ls"), "not UTF-8 text", use_site_again, SettingsError,
         settings_bytes(b"site_name: caf\xe9\n")),
    Case("settings-local-root-missing", ("site", "sync"), "local root '/nonexistent/root' "
         "does not exist", use_site_again, SettingsError,
         settings_text("transfers: {transfer_locations: {a: 'local:///nonexistent/root'}}\n")),
    Case("settings-local-root-file", ("job", "ls"), "is not a directory", use_site_again,
         SettingsError, lambda site: settings_text(
             f"transfers: {{transfer_locations: {{a: 'local://{site}/settings.yml'}}}}\n")(site)),
    Case("settings-transfers-number", ("job", "ls"), "transfers: must be a mapping",
         use_site_again, SettingsError, settings_text("transfers: 5\n")),
    Case("settings-database-dir", ("job", "ls"), "is a directory", use_site_again,
         SettingsError, settings_text("database_path: data\n")),
    Case("settings-database-folder-missing", ("job", "ls"), "does not exist", use_site_again,
         SettingsError, settings_text("database_path: /nonexistent/site.db\n")),
    Case("settings-database-missing", ("site", "sync"), "database_path: /tmp/no-such.db does "
         "not exist", setup=settings_text("database_path: /tmp/no-such.db\n")),
    Case("settings-database-missing-start", ("site", "start"), "/tmp/no-such.db does not "
         "exist", setup=settings_text("database_path: /tmp/no-such.db\n")),
    Case("settings-unknown-key", ("job", "ls"), "bogus: unknown key", use_site_again,
         SettingsError, settings_text("bogus: 1\n")),
    Case("settings-malformed", ("job", "ls"), "malformed YAML", use_site_again, SettingsError,
         settings_text("transfers: {a: [1, 2}\n")),
    Case("settings-top-level-list", ("job", "ls"), "expected a mapping at the top level",
         use_site_again, SettingsError, settings_text("- 1\n- 2\n")),
    # -- app files ------------------------------------------------------------------------
    Case("app-slots-same-path", ("app", "sync"), "slots 'a' and 'b' overlap", app_sync,
         setup=app_file("class Bad(ApplicationDefinition):\n    transfers = {\n"
                        "        'a': {'direction': 'in', 'local_path': 'in.dat'},\n"
                        "        'b': {'direction': 'in', 'local_path': './in.dat'}}\n")),
    Case("app-slot-inside-slot", ("app", "sync"), "'d' contains 'd/x'", app_sync,
         setup=app_file("class Bad(ApplicationDefinition):\n    transfers = {\n"
                        "        'a': {'direction': 'out', 'local_path': 'd'},\n"
                        "        'b': {'direction': 'out', 'local_path': 'd/x'}}\n")),
    Case("app-local-path-long", ("app", "sync"), "300 bytes long", app_sync,
         setup=app_file("class Bad(ApplicationDefinition):\n    transfers = "
                        f"{{'a': {{'direction': 'in', 'local_path': '{LONG}'}}}}\n")),
    Case("app-local-path-nul", ("app", "sync"), "contains a NUL byte", app_sync,
         setup=app_file("class Bad(ApplicationDefinition):\n"
                        "    transfers = {'a': {'direction': 'in', 'local_path': 'a\\0b'}}\n")),
    Case("app-direction", ("app", "sync"), "direction must be 'in' or 'out'", app_sync,
         setup=app_file("class Bad(ApplicationDefinition):\n"
                        "    transfers = {'a': {'direction': 'sideways'}}\n")),
    Case("app-file-exits", ("app", "sync"), "cannot import: SystemExit", app_sync,
         setup=app_file("raise SystemExit(3)\n")),
    Case("app-file-syntax", ("app", "sync"), "cannot import: SyntaxError", app_sync,
         setup=app_file("def (:\n")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_and_api_refuse_and_change_nothing(site, case):
    assert_refused(site.site_path, case)


@pytest.mark.parametrize("host", ["../../elsewhere", "a/b", "login 02", "-x", "x" * 201])
@pytest.mark.parametrize("command", [("site", "start"), ("site", "status"), ("site", "stop")])
def test_a_host_name_that_is_no_host_name_is_refused(site, monkeypatch, host, command):
    """$BALSAM_HOSTNAME names this host's pidfile (site.<host>.pid on PostgreSQL): a
    name that could leave the site folder, or is none, is refused before anything runs."""
    monkeypatch.setenv("BALSAM_HOSTNAME", host)
    assert_refused(site.site_path, Case(f"host-{host}", command, "$BALSAM_HOSTNAME="))
