"""`balsam site report` and balsam_mp.analytics, on a real site that moved real files
through the Globus emulator."""

from __future__ import annotations

import datetime as dt
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from balsam_mp import analytics, api
from balsam_mp.errors import ValidationError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (signature, then the IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def moved(sitekit):
    """A site that staged 12 jobs in and out through the emulator, then stopped."""
    kit = sitekit()
    ids = kit.make_jobs(12)
    kit.start()
    kit.wait_jobs(ids, "STAGED_IN")
    kit.run_apps(ids)
    kit.wait_jobs(ids, "JOB_FINISHED")
    kit.balsam("site", "stop", "--timeout", "10")
    return kit, ids


@pytest.mark.engines
def test_site_report_draws_a_png_of_a_site_that_moved_files(moved, tmp_path):
    kit, ids = moved
    out = tmp_path / "report.png"
    done = kit.balsam("site", "report", "--since", "1h", "-o", str(out))
    assert done.stdout.startswith(f"wrote {out}: 12 job(s) finished")
    assert out.is_file() and 20_000 < out.stat().st_size < 5_000_000
    assert png_size(out) == (1000, 1200)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.png")]
    summary = json.loads(kit.balsam("site", "report", "-o", str(out), "--format",
                                    "json").stdout)
    assert summary["job_finished"] == summary["staged_in"] == 12
    assert summary["files"] == 24 and summary["bytes"] > 0  # one input, one output each


def test_analytics_follow_the_site(moved):
    kit, ids = moved
    times, counts = analytics.throughput_report(api.EventLog.objects.filter(job_id=ids))
    assert counts == list(range(1, 13)) and times == sorted(times)
    assert all(isinstance(t, dt.datetime) and t.tzinfo for t in times)
    staged = analytics.throughput_report(api.EventLog.objects.all(), "STAGED_IN")
    assert len(staged[0]) == 12 and max(staged[0]) < min(times)
    spans = analytics.task_timeline()
    assert {s.direction for s in spans} == {"in", "out"}
    for span in spans:
        assert span.claimed <= span.submitted <= span.finished and span.state == "succeeded"
        assert span.started is None or span.submitted <= span.started <= span.finished
    assert sum(s.files for s in spans) == 24 == sum(s.items for s in spans)
    series = analytics.transfer_throughput(interval=dt.timedelta(seconds=1))
    assert set(series) == {("in", "remote"), ("out", "remote")}
    assert [sum(s.files) for s in series.values()] == [12, 12]
    assert len({len(s.times) for s in series.values()}) == 1  # the same intervals
    only_in = analytics.transfer_throughput(api.TransferTask.objects.filter(direction="in"), 60)
    assert list(only_in) == [("in", "remote")]


@pytest.mark.parametrize("call", [
    lambda: analytics.throughput_report(api.Job.objects.all()),
    lambda: analytics.throughput_report("JOB_FINISHED"),
    lambda: analytics.transfer_throughput(interval=0),
    lambda: analytics.transfer_throughput(interval=float("nan")),
    lambda: analytics.task_timeline(api.EventLog.objects.all()),
])
def test_analytics_refuse_what_they_cannot_read(site, call):
    with pytest.raises(ValidationError):
        call()


@pytest.mark.engines
def test_analytics_of_an_empty_site(site, tmp_path):
    assert analytics.throughput_report(api.EventLog.objects) == ([], [])
    assert analytics.task_timeline() == [] and analytics.transfer_throughput() == {}
    out = tmp_path / "empty.png"
    done = balsam(site, "site", "report", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert png_size(out) == (1000, 1200)


def balsam(site, *args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, BALSAM_SITE_PATH=str(site.site_path))
    command = python or ("-m", "balsam_mp")
    return subprocess.run([sys.executable, *command, *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args, message", [
    (("--since", "1x"), "'1x' is not a duration such as 90s, 15m, 1h or 2d"),
    (("--since", "-1h"), "'-1h' is not a duration"),
    (("--since", "0m"), "'0m': the duration must be more than 0"),
    (("--since", "nan"), "'nan' is not a duration"),
    (("--since", "1" + "0" * 30 + "d"), "is too long a duration"),
    (("-o", "{tmp}/report.txt"), "must end in .png, .svg, .pdf"),
    (("-o", "{tmp}/nowhere/report.png"), "does not exist"),
])
def test_site_report_refuses_bad_input_in_one_line(site, tmp_path, args, message):
    result = balsam(site, "site", "report", *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not list(tmp_path.glob("**/*.png")) and not list(tmp_path.glob("**/*.txt"))


def test_a_span_back_before_year_one_is_everything(site, tmp_path):
    """--since 99999999d fits a timedelta but not now minus it (was an
    OverflowError traceback)."""
    out = tmp_path / "r.png"
    result = balsam(site, "site", "report", "--since", "99999999d", "-o", str(out),
                    "--format", "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert '"since": null' in result.stdout and out.stat().st_size > 0


def test_without_matplotlib_one_line_says_how_to_install_it(site, tmp_path):
    blocked = ("-c", "import sys; sys.modules['matplotlib'] = None; "
                     "from balsam_mp.cli import main; main(prog_name='balsam')")
    result = balsam(site, "site", "report", "-o", str(tmp_path / "r.png"), python=blocked)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == ("Error: balsam site report needs matplotlib: "
                                     "pip install 'balsam_mp[plots]'")
    assert not (tmp_path / "r.png").exists()


def test_site_report_says_where_it_cannot_write(site, tmp_path):
    out = tmp_path / "out"
    (out / "taken.png").mkdir(parents=True)  # a folder where the picture should go
    for target, message in ((out / "taken.png", "is a directory"),
                            (Path("/proc/report.png"), "cannot write in /proc")):
        result = balsam(site, "site", "report", "-o", str(target))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert list(out.iterdir()) == [out / "taken.png"]


def test_tasks_record_when_they_were_submitted_and_first_ran(site):
    """submitted_at when the service accepted the task; started_at the first time the
    poller sees it running (not "Queued"); a task's end is its last update."""
    from balsam_mp.db import outcomes
    from balsam_mp.db.results import Progress
    from tests.sitemoves import claim, finish, make

    make(2)
    task = claim("in")
    [span] = analytics.task_timeline()
    assert span.claimed <= span.submitted and span.started is None and span.finished is None
    outcomes.record_progress(task.task_id, Progress("ACTIVE", "Queued", 0, 0, 0.0))
    assert analytics.task_timeline()[0].started is None  # waiting for a slot
    outcomes.record_progress(task.task_id, Progress("ACTIVE", "OK", 1, 10, 5.0))
    started = analytics.task_timeline()[0].started
    assert started is not None and started >= span.submitted
    outcomes.record_progress(task.task_id, Progress("ACTIVE", "OK", 2, 20, 5.0))
    assert analytics.task_timeline()[0].started == started  # the first time only
    finish(task.task_id)
    [done] = analytics.task_timeline()
    assert done.state == "succeeded" and done.finished >= started and done.items == 2
