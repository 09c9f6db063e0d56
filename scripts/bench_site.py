"""Site benchmarks (issues 5 and 15).

Against the emulator in zero-latency metadata-only mode, `globus_requests_per_second`
raised from 20 to 10,000 (the point is the site's own overhead):
  (a) 2,000 jobs x 1 stage-in: wall time from `site start` to all STAGED_IN
  (b) 100,000 items at batch size 100: items/s through claim -> submit -> poll -> job
  (c) latency from job creation to task submission, single job, idle site (median of 20)
  (d) Globus API calls per 1,000 items at batch size 100
  (e) peak RSS of supervisor + workers with 1,000,000 items in the database
At default settings (the emulator's instant profile, real copies of 1 kB files):
  (f) (a) again, with `transfer_batch_size` auto and 100
Under the emulator's realistic profile (real copies; Globus' limits enforced):
  (g) 2,000 one-file jobs created at once into a running site: time to all STAGED_IN,
      next to the profile's own lower bound
  (h) 10 new jobs per second for 60 s: median and p95 from creation to STAGED_IN
each with auto and with batch size 100. At default settings again, with a user's login:
  (k) 1,000 one-file jobs created at once on a healthy endpoint while a second endpoint,
      whose consent is missing, holds 100 jobs: time to all 1,000 STAGED_IN, next to the
      same run without the second endpoint (target: within 10%)
Every figure is printed with the load average.
Run: .venv/bin/python scripts/bench_site.py [--only abcdefghk] [--items N] [--postgres]
(--postgres: the site on a PostgreSQL server started for the run, see
balsam_mp/testing/postgres_server.py, instead of SQLite.)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from benchkit import DATABASE, FILE_SIZE, Bench, load, start_postgres  # noqa: E402

from balsam_mp import api  # noqa: E402
from balsam_mp.db.models import Job, LogEvent  # noqa: E402
from balsam_mp.testing.globus_emulator.profiles import PROFILES  # noqa: E402


def bench_a(work: Path) -> None:
    bench = Bench(work)
    bench.jobs(2000)
    started = time.monotonic()
    bench.balsam("site", "start")
    done = bench.wait_staged_in(2000)
    print(f"(a) 2,000 jobs x 1 stage-in: {done - started:.2f} s from `site start` to all "
          f"STAGED_IN (Balsam: ~45 s; load average {load()})")
    bench.close()


def bench_bd(work: Path, items: int = 100_000) -> None:
    bench = Bench(work, batch_size="100")
    created = bench.jobs(items)
    bench.balsam("site", "start")
    started = time.monotonic()
    done = bench.wait_staged_in(items)
    counts = bench.emulator.counts()
    calls = sum(v for k, v in counts.items() if k != "token")
    print(f"(b) {items:,} items: {items / (done - started):,.0f} items/s claim -> submit -> "
          f"poll -> job advanced ({done - started:.1f} s; creating the jobs took "
          f"{created:.1f} s; load average {load()})")
    print(f"(d) Globus API calls per 1,000 items at batch size 100: {calls * 1000 / items:.1f} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    bench.close()


def bench_c(work: Path) -> None:
    bench = Bench(work)
    bench.balsam("site", "start")
    time.sleep(3)  # let the site go idle: its poll interval has grown to service_period
    latencies = []
    for n in range(20):
        created = time.monotonic()
        job = api.Job.objects.create(app="MySim", workdir=f"lat/{n}",
                                     transfers={"input_file": f"remote:/in/{n}.dat"})
        while api.TransferItem.objects.filter(job_id=job.id, state__in=[
                "active", "done"]).count() == 0:
            time.sleep(0.002)
        latencies.append(time.monotonic() - created)
        time.sleep(1.5)  # idle again before the next job
    print(f"(c) job creation -> task submitted, idle site: median "
          f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"(n=20; load average {load()})")
    bench.close()


def bench_e(work: Path, jobs: int) -> None:
    bench = Bench(work)
    bench.jobs(jobs, app="Wide")  # 10 stage-in items per job
    bench.balsam("site", "start")
    peak, deadline = 0, time.monotonic() + 30
    while time.monotonic() < deadline:
        rss = sum(p.memory_info().rss for p in bench.processes())
        peak = max(peak, rss)
        time.sleep(0.2)
    done = api.TransferItem.objects.filter(state="done").count()
    print(f"(e) {jobs * 10:,} items in the database: peak RSS of supervisor + workers "
          f"{peak / 2**20:.0f} MB over 30 s ({done:,} items done meanwhile; load average {load()})")
    bench.close()


def bench_f(work: Path, batch_size: str) -> None:
    bench = Bench(work, fast=False, emulator_args=(), batch_size=batch_size)
    bench.files(2000)
    bench.jobs(2000)
    started = time.monotonic()
    bench.balsam("site", "start")
    done = bench.wait_staged_in(2000)
    print(f"(f) default settings, real copies, batch size {batch_size}: 2,000 jobs x 1 "
          f"stage-in in {done - started:.2f} s from `site start` to all STAGED_IN "
          f"(target <= 2.5 s; {bench.emulator.counts().get('submit_transfer')} tasks; "
          f"load average {load()})")
    bench.close()


def realistic(work: Path, batch_size: str) -> Bench:
    return Bench(work, fast=False, emulator_args=("--profile", "realistic"),
                 batch_size=batch_size)


def rate_limited(bench: Bench) -> int:
    return bench.emulator.stats()["injected"].get("rate_limited", 0)


def bench_g(work: Path, batch_size: str) -> None:
    bench = realistic(work, batch_size)
    bench.files(2000)
    bench.balsam("site", "start")
    time.sleep(2)  # an idle, running site
    bench.jobs(2000)  # one transaction: the site sees them all at once
    bench.wait_staged_in(2000)
    created = min(at for (at,) in Job.select(Job.created_at).tuples())
    staged = max(at for (at,) in LogEvent.select(LogEvent.timestamp).where(
        LogEvent.to_state == "STAGED_IN").tuples())
    took = (staged - created).total_seconds()  # from their commit, as the site saw it
    bound = PROFILES["realistic"].lower_bound(2000, FILE_SIZE)
    print(f"(g) realistic, batch size {batch_size}: 2,000 jobs created at once, all "
          f"STAGED_IN after {took:.2f} s = {took / bound:.2f} x the "
          f"profile's bound of {bound:.2f} s (target <= 1.5 x; "
          f"{bench.emulator.counts().get('submit_transfer')} tasks, "
          f"{rate_limited(bench)} x 429; load average {load()})")
    bench.close()


def bench_h(work: Path, batch_size: str, rate: float = 10, seconds: float = 60) -> None:
    bench = realistic(work, batch_size)
    count = int(rate * seconds)
    bench.files(count)
    bench.balsam("site", "start")
    time.sleep(2)
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        api.Job.objects.create(app="MySim", workdir=f"s/{n}",
                               transfers={"input_file": f"remote:/in/{n}.dat"})
    bench.wait_staged_in(count)
    created = dict(Job.select(Job.id, Job.created_at).tuples())
    latencies = sorted((at - created[job]).total_seconds() for job, at in LogEvent.select(
        LogEvent.job, LogEvent.timestamp).where(LogEvent.to_state == "STAGED_IN").tuples())
    median = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    knobs = PROFILES["realistic"].knobs
    one = knobs["startup_delay"] + knobs["file_overhead"] + FILE_SIZE / knobs["bandwidth"]
    print(f"(h) realistic, batch size {batch_size}: {rate:g} jobs/s for {seconds:g} s, "
          f"creation -> STAGED_IN median {median:.2f} s = {median / one:.2f} x one start-up "
          f"plus one file ({one:.2f} s; target <= 1.5 x), p95 {p95:.2f} s "
          f"({bench.emulator.counts().get('submit_transfer')} tasks, "
          f"{rate_limited(bench)} x 429; load average {load()})")
    bench.close()


OTHER_EP = "5e1f0000-0000-4000-8000-0000000000b3"


def consent_run(work: Path, blocked: bool) -> float:
    """Seconds from the 1,000 jobs' creation to their last STAGED_IN; `blocked`: with an
    endpoint `other` that lacks its consent, and 100 jobs waiting on it."""
    other = work / "other"
    (other / "in").mkdir(parents=True)
    args = ("--endpoint", f"{OTHER_EP}={other}") if blocked else ()
    bench = Bench(work, fast=False, emulator_args=args)
    if blocked:
        settings = bench.site / "settings.yml"
        settings.write_text(settings.read_text().replace(
            "    remote: globus://", f"    other: globus://{OTHER_EP}\n    remote: globus://"))
        bench.emulator.require_consent(OTHER_EP)
        api.use_site(bench.site)  # the API reads the new alias
    bench.env = user_login(bench, work)
    bench.files(1000)
    if blocked:
        api.Job.objects.bulk_create([{"app": "MySim", "workdir": f"o/{n}", "transfers": {
            "input_file": f"other:/in/{n}.dat"}} for n in range(100)])
    bench.balsam("site", "start")
    time.sleep(3)  # the site has met the missing consent (its claims wait on it)
    bench.jobs(1000)
    bench.wait_staged_in(1000)
    created = min(at for (at,) in Job.select(Job.created_at).where(
        Job.workdir.startswith("j/")).tuples())
    staged = max(at for (at,) in LogEvent.select(LogEvent.timestamp).where(
        LogEvent.to_state == "STAGED_IN").tuples())
    waiting = api.Job.objects.filter(state="READY").count()
    bench.close()
    assert waiting == (100 if blocked else 0), waiting
    return (staged - created).total_seconds()


def user_login(bench: Bench, home: Path) -> dict:
    """A globus CLI login (no service account), which holds no data_access consent."""
    bench.emulator.cli_login(home)
    return {k: v for k, v in bench.env.items() if not k.startswith("GLOBUS_CLIENT")}


def bench_k(work: Path) -> None:
    alone = consent_run(work / "alone", blocked=False)
    beside = consent_run(work / "beside", blocked=True)
    print(f"(k) default settings: 1,000 one-file jobs on a healthy endpoint, all STAGED_IN "
          f"{beside:.2f} s after their creation beside an endpoint missing its consent "
          f"(100 jobs waiting on it), {alone:.2f} s without it: {beside / alone:.2f} x "
          f"(target <= 1.10; load average {load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="abcdefghk", help="which benchmarks, e.g. 'ac'")
    parser.add_argument("--items", type=int, default=100_000, help="items for (b) and (d)")
    parser.add_argument("--postgres", action="store_true", help="run the site on PostgreSQL")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
          f"; load average {load()}")
    if args.postgres:
        DATABASE["server"] = start_postgres()
        print(f"engine: PostgreSQL ({DATABASE['server'].bindir})")
    try:
        run(args)
    finally:
        if DATABASE["server"]:
            DATABASE["server"].stop()


def run(args: argparse.Namespace) -> None:
    runs = {"a": bench_a, "c": bench_c, "k": bench_k}
    shaped = {"f": bench_f, "g": bench_g, "h": bench_h}
    for key in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            if key in runs:
                runs[key](Path(tmp))
            elif key in shaped:
                for batch_size in ("auto", "100"):
                    with tempfile.TemporaryDirectory() as each:
                        shaped[key](Path(each), batch_size)
            elif key == "b" or (key == "d" and "b" not in args.only):
                bench_bd(Path(tmp), args.items)
            elif key == "e":
                bench_e(Path(tmp), 10_000)
                with tempfile.TemporaryDirectory() as big:
                    bench_e(Path(big), 100_000)


if __name__ == "__main__":
    main()
