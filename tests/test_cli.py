"""The `balsam` command as a user runs it: real process, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def balsam(*args: str, cwd: Path | None = None, site: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k != "BALSAM_SITE_PATH"}
    if site is not None:
        env["BALSAM_SITE_PATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_init_sync_create_list(tmp_path):
    site = tmp_path / "s"
    assert balsam("site", "init", str(site), "--name", "theta").returncode == 0
    assert (site / "settings.yml").is_file() and (site / "data").is_dir()
    assert (site / "logs").is_dir() and (site / "site.db").is_file()
    assert balsam("app", "sync", cwd=site).returncode == 0
    listed = balsam("app", "ls", "--format", "json", site=site)
    assert json.loads(listed.stdout)[0]["transfers"]["input_file"]["direction"] == "in"

    made = balsam("--site", str(site), "job", "create", "--app", "MySim", "--workdir", "e/1",
                  "-s", "input_file=laptop:/data/in.dat", "--tag", "system=H2O")
    assert made.returncode == 0, made.stderr
    jobs = json.loads(balsam("job", "ls", "--format", "json", "--tag", "system=H2O",
                             site=site).stdout)
    assert [(j["workdir"], j["state"]) for j in jobs] == [("e/1", "READY")]
    assert "e/1" in balsam("job", "ls", "--state", "READY", cwd=site / "data").stdout
    # on SQLite every site of the database is this one
    everywhere = json.loads(balsam("job", "ls", "--all-sites", "--format", "json",
                                   site=site).stdout)
    assert [(j["site"], j["workdir"]) for j in everywhere] == [("theta", "e/1")]
    items = json.loads(balsam("transfer", "ls", "--all-sites", "--format", "json",
                              site=site).stdout)
    assert [(i["site"], i["state"]) for i in items] == [("theta", "pending")]
    reports = json.loads(balsam("site", "status", "--all-sites", "--format", "json",
                                site=site).stdout)
    assert [(r["site"], r["running"]) for r in reports] == [("theta", False)]
    other = balsam("--site-name", "aurora", "job", "ls", site=site)
    assert other.returncode == 1 and "named without a database" in other.stderr
    for option in ("--site-name", "--database-url"):  # not silently the site here
        empty = balsam(option, " ", "job", "ls", site=site)
        assert empty.returncode != 0 and "must not be empty" in empty.stderr, option


def test_errors_are_one_line_and_exit_non_zero(tmp_path):
    site = tmp_path / "s"
    balsam("site", "init", str(site))
    balsam("app", "sync", site=site)
    cases = [
        (("job", "create", "--app", "Nope", "--workdir", "w"), "unknown app 'Nope'"),
        (("job", "create", "--app", "MySim", "--workdir", "w", "-s", "input_file=evil:/x"),
         "alias 'evil'"),
        (("job", "create", "--app", "MySim", "--workdir", "w", "-s", "input_file"),
         "expected KEY=VALUE"),
        (("site", "init", str(site)), "already a balsam site"),
    ]
    for args, message in cases:
        result = balsam(*args, site=site)
        assert result.returncode == 1, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr
    assert json.loads(balsam("job", "ls", "--format", "json", site=site).stdout) == []

    (site / "settings.yml").write_text("transfers: {transfer_batch_size: -5}\n")
    broken = balsam("job", "ls", site=site)
    assert broken.returncode == 1 and "transfers.transfer_batch_size" in broken.stderr

    nowhere = balsam("job", "ls", cwd=tmp_path)
    assert nowhere.returncode == 1 and "no balsam site" in nowhere.stderr
