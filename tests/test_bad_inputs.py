"""Bad inputs to `balsam job create` and `Job.objects`, as a hostile new user types them:
workdirs, transfer slots and remote paths, tags, apps, and what only the Python API can be
handed (a NUL, a set, a NaN, the wrong types). Each gets one clear error and changes
nothing: the checks are in tests/refusals.py. Bad command lines, settings.yml and app
files are in tests/test_bad_site_inputs.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.errors import BalsamError, ValidationError
from tests.refusals import (
    LONG,
    Case,
    app_file,
    assert_refused,
    settings_text,
    snapshot,
    used_workdir,
)
from tests.test_bad_site_inputs import CASES as SITE_CASES

DEEP = "/".join(["d" * 200] * 21)  # 4,220 bytes: over PATH_MAX
INPUT = "input_file=laptop:/data/in.dat"


def create(workdir: str, **transfers: str) -> Callable[[], object]:
    return lambda: api.Job.objects.create(app="MySim", workdir=workdir,
                                          transfers=transfers or {"input_file": "laptop:/a"})


def cli_create(workdir: str | bytes, *more: str) -> tuple[str | bytes, ...]:
    return ("job", "create", "--app", "MySim", "--workdir", workdir, *more)


def keep_name_app(site: Path) -> None:
    """An app whose two stage-in slots both keep the remote file's name."""
    app_file("class Keep(ApplicationDefinition):\n"
             "    transfers = {'a': {'direction': 'in', 'local_path': '.'},\n"
             "                 'b': {'direction': 'in', 'local_path': './'}}\n")(site)
    api.App.sync()


def symlink(name: str, target: Callable[[Path], Path]) -> Callable[[Path], None]:
    return lambda site: (site / "data" / name).symlink_to(target(site))


def file_in_the_way(site: Path) -> None:
    (site / "data" / "plain").write_text("a file, not a folder")


CASES = [
    # -- workdirs ------------------------------------------------------------------------
    Case("workdir-dot", cli_create(".", "-s", INPUT), "SITE/data itself", create(".")),
    Case("workdir-dot-slash", cli_create("./", "-s", INPUT), "SITE/data itself", create("./")),
    Case("workdir-dot-dot-slash-dot", cli_create(".//./", "-s", INPUT), "SITE/data itself",
         create(".//./")),
    Case("workdir-up-and-back", cli_create("a/..", "-s", INPUT), "escapes its directory",
         create("a/..")),
    Case("workdir-absolute", cli_create("/tmp/x", "-s", INPUT), "must be relative",
         create("/tmp/x")),
    Case("workdir-parent", cli_create("../x", "-s", INPUT), "escapes its directory",
         create("../x")),
    Case("workdir-empty", cli_create("", "-s", INPUT), "non-empty string", create("")),
    Case("workdir-long-name", cli_create(f"e/{LONG}", "-s", INPUT), "300 bytes long",
         create(f"e/{LONG}")),
    Case("workdir-too-long", cli_create(DEEP, "-s", INPUT), "the limit is 4096",
         create(DEEP)),
    Case("workdir-not-utf8", cli_create(b"w\xff", "-s", INPUT), "not valid UTF-8",
         create(os.fsdecode(b"w\xff"))),
    Case("workdir-symlink-to-data", cli_create("loop", "-s", INPUT), "SITE/data itself",
         create("loop"), setup=symlink("loop", lambda site: site / "data")),
    Case("workdir-symlink-out", cli_create("out/w", "-s", INPUT), "leads out of SITE/data",
         create("out/w"), setup=symlink("out", lambda site: site.parent)),
    Case("workdir-file-in-the-way", cli_create("plain/w", "-s", INPUT), "Not a directory",
         create("plain/w"), setup=file_in_the_way),
    Case("workdir-is-a-file", cli_create("plain", "-s", INPUT), "a file is in the way",
         create("plain"), setup=file_in_the_way),
    Case("workdir-used", cli_create("taken", "-s", INPUT), "already used by another job",
         create("taken"), setup=used_workdir),
    # -- transfer slots and remote paths --------------------------------------------------
    Case("remote-long-name", cli_create("w", "-s", f"input_file=laptop:/d/{LONG}"),
         "300 bytes long", create("w", input_file=f"laptop:/d/{LONG}")),
    Case("remote-too-long", cli_create("w", "-s", f"input_file=laptop:/{DEEP}"),
         "the limit is 4096", create("w", input_file=f"laptop:/{DEEP}")),
    Case("remote-relative", cli_create("w", "-s", "input_file=laptop:data/in"),
         "must be absolute", create("w", input_file="laptop:data/in")),
    Case("remote-dot-dot", cli_create("w", "-s", "input_file=laptop:/a/../b"),
         "must not contain '..'", create("w", input_file="laptop:/a/../b")),
    Case("remote-unknown-alias", cli_create("w", "-s", "input_file=evil:/a"),
         "alias 'evil' is not in transfer_locations", create("w", input_file="evil:/a")),
    Case("remote-no-alias", cli_create("w", "-s", "input_file=/a"),
         "is not 'alias:/absolute/path'", create("w", input_file="/a")),
    Case("slot-twice", cli_create("w", "-s", INPUT, "-s", "input_file=laptop:/b"),
         "is given twice"),
    Case("slot-unknown", cli_create("w", "-s", INPUT, "-s", "nope=laptop:/b"),
         "no transfer slot 'nope'", create("w", input_file="laptop:/a", nope="laptop:/b")),
    Case("slot-no-equals", cli_create("w", "-s", "input_file"), "expected KEY=VALUE"),
    Case("slot-required-missing", cli_create("w"), "required transfer slot 'input_file'",
         lambda: api.Job.objects.create(app="MySim", workdir="w")),
    Case("slots-same-local-path", ("job", "create", "--app", "Keep", "--workdir", "w",
                                   "-s", "a=laptop:/x/in.dat", "-s", "b=laptop:/y/in.dat"),
         "slots 'a' and 'b' would both use local path 'in.dat'",
         lambda: api.Job.objects.create(app="Keep", workdir="w", transfers={
             "a": "laptop:/x/in.dat", "b": "laptop:/y/in.dat"}), setup=keep_name_app),
    Case("remote-root-keeps-no-name", ("job", "create", "--app", "Keep", "--workdir", "w",
                                       "-s", "a=laptop:/"),
         "has no name to keep", lambda: api.Job.objects.create(
             app="Keep", workdir="w", transfers={"a": "laptop:/"}), setup=keep_name_app),
    Case("app-unknown", ("job", "create", "--app", "Nope", "--workdir", "w"),
         "unknown app 'Nope'", lambda: api.Job.objects.create(app="Nope", workdir="w")),
    Case("tag-no-equals", cli_create("w", "-s", INPUT, "--tag", "colour"),
         "expected KEY=VALUE"),
    Case("tag-twice", cli_create("w", "-s", INPUT, "--tag", "a=1", "--tag", "a=2"),
         "is given twice"),
    Case("no-location-configured", cli_create("w", "-s", INPUT),
         "no transfer location is configured", create("w", input_file="laptop:/a"),
         setup=settings_text("transfers: null\n")),
    Case("no-transfer-locations-key", cli_create("w", "-s", INPUT),
         "no transfer location is configured", create("w", input_file="laptop:/a"),
         setup=settings_text("transfers: {max_retries: 2}\n")),
]


# what only the Python API can be handed (argv cannot carry a NUL, nor a set)
API_ONLY = [
    ("workdir-nul", create("a\0b"), "contains a NUL byte"),
    ("remote-nul", create("w", input_file="laptop:/a\0b"), "contains a NUL byte"),
    ("tags-not-json", lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"}, tags={"k": {1, 2}}),
     "keys and values must be strings"),
    ("tags-bytes", lambda: api.Job.objects.create(  # numbers become strings, as in Balsam
        app="MySim", workdir="w", transfers={"input_file": "laptop:/a"}, tags={"k": b"5"}),
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
     "is not an app id, name, class or App"),
    ("twice-in-batch", lambda: api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": "w", "transfers": {"input_file": "laptop:/a"}},
        {"app": "MySim", "workdir": "./w", "transfers": {"input_file": "laptop:/a"}}]),
     "used twice in this batch"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_and_api_refuse_and_change_nothing(site, case):
    assert_refused(site.site_path, case)


@pytest.mark.parametrize("call, message", [(c, m) for _, c, m in API_ONLY],
                         ids=[n for n, _, _ in API_ONLY])
def test_api_only_inputs_refused(site, call, message):
    api.Job.objects.create(app="MySim", workdir="taken", transfers={"input_file": "laptop:/a"})
    before = snapshot(site.site_path)
    with pytest.raises(ValidationError, match=re.escape(message)):
        call()
    assert snapshot(site.site_path) == before


def test_table_is_big_enough():
    cases = CASES + SITE_CASES
    assert len(cases) >= 40
    assert all(issubclass(c.error, BalsamError) for c in cases)
