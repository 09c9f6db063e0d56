"""Bad inputs, as a hostile new user types them: each gets one clear error and changes nothing.

Every row runs the real `balsam` command (a new process) on a fresh site, and asserts a
non-zero exit, exactly one line on stderr that says what is wrong, no traceback, and an
unchanged site: the row counts and contents of every table, and the listing of SITE/data.
Rows with an API form run it too and assert the exception type.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.errors import BalsamError, SettingsError, SiteNotFound, ValidationError

LONG = "n" * 300  # one name longer than any file system takes
DEEP = "/".join(["d" * 200] * 21)  # 4,220 bytes: over PATH_MAX
INPUT = "input_file=laptop:/data/in.dat"


@dataclass
class Case:
    name: str
    cli: tuple[str | bytes, ...]
    message: str  # a fragment of the one line on stderr (and of the API's message)
    api: Callable[[], object] | None = None
    error: type[BaseException] = ValidationError
    setup: Callable[[Path], None] | None = None


def create(workdir: str, **transfers: str) -> Callable[[], object]:
    return lambda: api.Job.objects.create(app="MySim", workdir=workdir,
                                          transfers=transfers or {"input_file": "laptop:/a"})


def cli_create(workdir: str | bytes, *more: str) -> tuple[str | bytes, ...]:
    return ("job", "create", "--app", "MySim", "--workdir", workdir, *more)


def settings_text(text: str) -> Callable[[Path], None]:
    def write(site: Path) -> None:
        (site / "settings.yml").write_text(text)
    return write


def settings_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda site: (site / "settings.yml").write_bytes(data)


def app_file(source: str) -> Callable[[Path], None]:
    return lambda site: (site / "apps" / "bad.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n" + source)


def keep_name_app(site: Path) -> None:
    """An app whose two stage-in slots both keep the remote file's name."""
    app_file("class Keep(ApplicationDefinition):\n"
             "    transfers = {'a': {'direction': 'in', 'local_path': '.'},\n"
             "                 'b': {'direction': 'in', 'local_path': './'}}\n")(site)
    api.App.sync()


def symlink(name: str, target: Callable[[Path], Path]) -> Callable[[Path], None]:
    return lambda site: (site / "data" / name).symlink_to(target(site))


def used_workdir(site: Path) -> None:
    api.Job.objects.create(app="MySim", workdir="taken",
                           transfers={"input_file": "laptop:/a"})


def file_in_the_way(site: Path) -> None:
    (site / "data" / "plain").write_text("a file, not a folder")


def use_site_again() -> object:
    return api.use_site(os.environ["BALSAM_SITE_PATH"])


def app_sync() -> object:
    return api.App.sync()


NAN = "transfers: {service_period: .nan}\n"
CASES = [
    # -- workdirs ------------------------------------------------------------------------
    Case("workdir-dot", cli_create(".", "-t", INPUT), "SITE/data itself", create(".")),
    Case("workdir-dot-slash", cli_create("./", "-t", INPUT), "SITE/data itself", create("./")),
    Case("workdir-dot-dot-slash-dot", cli_create(".//./", "-t", INPUT), "SITE/data itself",
         create(".//./")),
    Case("workdir-up-and-back", cli_create("a/..", "-t", INPUT), "escapes its directory",
         create("a/..")),
    Case("workdir-absolute", cli_create("/tmp/x", "-t", INPUT), "must be relative",
         create("/tmp/x")),
    Case("workdir-parent", cli_create("../x", "-t", INPUT), "escapes its directory",
         create("../x")),
    Case("workdir-empty", cli_create("", "-t", INPUT), "non-empty string", create("")),
    Case("workdir-long-name", cli_create(f"e/{LONG}", "-t", INPUT), "300 bytes long",
         create(f"e/{LONG}")),
    Case("workdir-too-long", cli_create(DEEP, "-t", INPUT), "the limit is 4096",
         create(DEEP)),
    Case("workdir-not-utf8", cli_create(b"w\xff", "-t", INPUT), "not valid UTF-8",
         create(os.fsdecode(b"w\xff"))),
    Case("workdir-symlink-to-data", cli_create("loop", "-t", INPUT), "SITE/data itself",
         create("loop"), setup=symlink("loop", lambda site: site / "data")),
    Case("workdir-symlink-out", cli_create("out/w", "-t", INPUT), "leads out of SITE/data",
         create("out/w"), setup=symlink("out", lambda site: site.parent)),
    Case("workdir-file-in-the-way", cli_create("plain/w", "-t", INPUT), "Not a directory",
         create("plain/w"), setup=file_in_the_way),
    Case("workdir-is-a-file", cli_create("plain", "-t", INPUT), "a file is in the way",
         create("plain"), setup=file_in_the_way),
    Case("workdir-used", cli_create("taken", "-t", INPUT), "already used by another job",
         create("taken"), setup=used_workdir),
    # -- transfer slots and remote paths --------------------------------------------------
    Case("remote-long-name", cli_create("w", "-t", f"input_file=laptop:/d/{LONG}"),
         "300 bytes long", create("w", input_file=f"laptop:/d/{LONG}")),
    Case("remote-too-long", cli_create("w", "-t", f"input_file=laptop:/{DEEP}"),
         "the limit is 4096", create("w", input_file=f"laptop:/{DEEP}")),
    Case("remote-relative", cli_create("w", "-t", "input_file=laptop:data/in"),
         "must be absolute", create("w", input_file="laptop:data/in")),
    Case("remote-dot-dot", cli_create("w", "-t", "input_file=laptop:/a/../b"),
         "must not contain '..'", create("w", input_file="laptop:/a/../b")),
    Case("remote-unknown-alias", cli_create("w", "-t", "input_file=evil:/a"),
         "alias 'evil' is not in transfer_locations", create("w", input_file="evil:/a")),
    Case("remote-no-alias", cli_create("w", "-t", "input_file=/a"),
         "is not 'alias:/absolute/path'", create("w", input_file="/a")),
    Case("slot-twice", cli_create("w", "-t", INPUT, "-t", "input_file=laptop:/b"),
         "is given twice"),
    Case("slot-unknown", cli_create("w", "-t", INPUT, "-t", "nope=laptop:/b"),
         "no transfer slot 'nope'", create("w", input_file="laptop:/a", nope="laptop:/b")),
    Case("slot-no-equals", cli_create("w", "-t", "input_file"), "expected KEY=VALUE"),
    Case("slot-required-missing", cli_create("w"), "required transfer slot 'input_file'",
         lambda: api.Job.objects.create(app="MySim", workdir="w")),
    Case("slots-same-local-path", ("job", "create", "--app", "Keep", "--workdir", "w",
                                   "-t", "a=laptop:/x/in.dat", "-t", "b=laptop:/y/in.dat"),
         "slots 'a' and 'b' would both use local path 'in.dat'",
         lambda: api.Job.objects.create(app="Keep", workdir="w", transfers={
             "a": "laptop:/x/in.dat", "b": "laptop:/y/in.dat"}), setup=keep_name_app),
    Case("remote-root-keeps-no-name", ("job", "create", "--app", "Keep", "--workdir", "w",
                                       "-t", "a=laptop:/"),
         "has no name to keep", lambda: api.Job.objects.create(
             app="Keep", workdir="w", transfers={"a": "laptop:/"}), setup=keep_name_app),
    Case("app-unknown", ("job", "create", "--app", "Nope", "--workdir", "w"),
         "unknown app 'Nope'", lambda: api.Job.objects.create(app="Nope", workdir="w")),
    Case("tag-no-equals", cli_create("w", "-t", INPUT, "--tag", "colour"),
         "expected KEY=VALUE"),
    Case("tag-twice", cli_create("w", "-t", INPUT, "--tag", "a=1", "--tag", "a=2"),
         "is given twice"),
    Case("no-location-configured", cli_create("w", "-t", INPUT),
         "no transfer location is configured", create("w", input_file="laptop:/a"),
         setup=settings_text("transfers: null\n")),
    Case("no-transfer-locations-key", cli_create("w", "-t", INPUT),
         "no transfer location is configured", create("w", input_file="laptop:/a"),
         setup=settings_text("transfers: {max_retries: 2}\n")),
    # -- command line ---------------------------------------------------------------------
    Case("option-unknown", ("job", "ls", "--colour", "red"), "No such option"),
    Case("state-unknown", ("job", "ls", "--state", "DONE"), "'DONE' is not one of"),
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
         "must be printable"),
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

# what only the Python API can be handed (argv cannot carry a NUL, nor a set)
API_ONLY = [
    ("workdir-nul", create("a\0b"), "contains a NUL byte"),
    ("remote-nul", create("w", input_file="laptop:/a\0b"), "contains a NUL byte"),
    ("tags-not-json", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"}, tags={"k": {1, 2}}),
     "keys and values must be strings"),
    ("tags-number", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"}, tags={"k": 5}),
     "keys and values must be strings"),
    ("parameters-not-json", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"},
        parameters={"when": object()}), "is not JSON"),
    ("parameters-nan", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"},
        parameters={"x": [1.0, float("nan")]}), "parameters.x[1]: nan is not a JSON number"),
    ("parameters-list", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"}, parameters=[1]),
     "parameters must be a mapping"),
    ("transfers-list", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers=["laptop:/a"]), "transfers must be a mapping"),
    ("workdir-key-missing", lambda: api.Job.objects.bulk_create([{"app": "MySim"}]),
     "workdir is missing"),
    ("dict-for-list", lambda: api.Job.objects.bulk_create(
        {"app": "MySim", "workdir": "w"}), "bulk_create takes a list"),
    ("job-not-a-dict", lambda: api.Job.objects.bulk_create(["w"]), "is not a Job or a dict"),
    ("workdir-not-str", lambda: api.Job.objects.create(app="MySim", workdir=5),
     "must be a non-empty string"),
    ("app-not-str", lambda: api.Job.objects.create(app=["MySim"], workdir="w"),
     "app must be an app's name"),
    ("twice-in-batch", lambda: api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": "w", "transfers": {"input_file": "laptop:/a"}},
        {"app": "MySim", "workdir": "./w", "transfers": {"input_file": "laptop:/a"}}]),
     "used twice in this batch"),
]


def snapshot(site: Path) -> tuple:
    """Every table's rows, and every path under SITE/data with its kind."""
    with sqlite3.connect(site / "site.db") as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                for t in tables}
    listing = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(site / "data")):
        for name in sorted(dirs + files):
            path = Path(root, name)
            kind = "l" if path.is_symlink() else "d" if path.is_dir() else "f"
            listing.update(f"{kind} {path.relative_to(site)}\n".encode(errors="surrogateescape"))
    return {t: len(r) for t, r in rows.items()}, hash(repr(rows)), listing.hexdigest()


def run_balsam(site: Path, args: tuple) -> subprocess.CompletedProcess:
    env = dict(os.environ, BALSAM_SITE_PATH=str(site))
    argv = [a.replace("{site}", str(site)).replace("{tmp}", str(site.parent))
            if isinstance(a, str) else a for a in args]
    return subprocess.run([sys.executable, "-m", "balsam_mp", *argv], env=env,
                          capture_output=True, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_and_api_refuse_and_change_nothing(site, case):
    path = site.site_path
    if case.setup is not used_workdir:
        used_workdir(path)  # a site with a job in it
    if case.setup is not None:
        case.setup(path)
    before = snapshot(path)
    result = run_balsam(path, case.cli)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert case.message in lines[0]
    assert snapshot(path) == before
    assert not (path / "site.pid").exists()
    if case.api is not None:
        if case.error is ValidationError:
            api.use_site(path)  # read the settings this case wrote
        with pytest.raises(case.error) as err:
            case.api()
        assert case.message in str(err.value)
        assert snapshot(path) == before


@pytest.mark.parametrize("call, message", [(c, m) for _, c, m in API_ONLY],
                         ids=[n for n, _, _ in API_ONLY])
def test_api_only_inputs_refused(site, call, message):
    api.Job.objects.create(app="MySim", workdir="taken", transfers={"input_file": "laptop:/a"})
    before = snapshot(site.site_path)
    with pytest.raises(ValidationError, match=re.escape(message)):
        call()
    assert snapshot(site.site_path) == before


def test_table_is_big_enough():
    assert len(CASES) >= 40
    assert all(issubclass(c.error, BalsamError) for c in CASES)
