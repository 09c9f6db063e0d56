"""PostgreSQL benchmarks (issue 14), against the emulator in metadata-only mode:

  (i) two sites on one database, a client in another process creating 10,000 jobs
      (1 in + 1 out each) for both while they drain them: time to all JOB_FINISHED, and
      how the work split between the sites
  (j) standby takeover: the same site on two "login nodes" (two supervisors here);
      SIGKILL every process of the active one, time until the standby's workers run
      (median of 5)

Items/s on PostgreSQL next to SQLite: scripts/bench_site.py --only b [--postgres].
Run: .venv/bin/python scripts/bench_postgres.py [--only ij] [--jobs N] [--default-limits]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
import benchkit  # noqa: E402 - a sibling module, not a package

from balsam_mp import api  # noqa: E402


def client(url: str, sites: list[str], jobs: int, done) -> None:
    """Another process, through the database alone (no site directory): creates the
    jobs in chunks, alternating sites, and plays the app (STAGED_IN -> POSTPROCESSED)
    until every job of both sites is JOB_FINISHED."""
    per_site, made = jobs // len(sites), dict.fromkeys(sites, 0)
    while True:
        finished = 0
        for site in sites:
            api.use_database(url, site=site)
            if made[site] < per_site:
                count = min(1000, per_site - made[site])
                api.Job.objects.bulk_create([
                    {"app": "MySim", "workdir": f"w/{n}",
                     "transfers": {"input_file": f"remote:/in/{n}.dat",
                                   "result": f"remote:/out/{n}.dat"}}
                    for n in range(made[site], made[site] + count)])
                made[site] += count
            # the app ran: one compare-and-set for all the jobs staged in so far
            api.Job.objects.filter(state="STAGED_IN").update(state="POSTPROCESSED")
            finished += api.Job.objects.filter(state="JOB_FINISHED").count()
        if finished == per_site * len(sites):
            done.put(time.monotonic())
            return
        time.sleep(0.05)


def bench_two_sites(work: Path, jobs: int, fast: bool = True) -> None:
    url = benchkit.database_url(f"bench_{work.name}".lower())  # one database, two sites
    benches = [benchkit.Bench(work, name=name, url=url, fast=fast)
               for name in ("alpha", "beta")]
    for bench in benches:
        bench.balsam("site", "start")
    api.close()
    queue = multiprocessing.get_context("spawn").Queue()
    started = time.monotonic()
    process = multiprocessing.get_context("spawn").Process(
        target=client, args=(url, [b.site.name for b in benches], jobs, queue))
    process.start()
    finished = queue.get(timeout=3600)
    process.join()
    split = []
    for bench in benches:
        api.use_site(bench.site)
        tasks = api.TransferTask.objects.filter(state="succeeded").count()
        split.append(f"{bench.site.name}: {api.Job.objects.count():,} jobs, {tasks} tasks")
        bench.close()
    print(f"(i) two sites, one database, a client creating {jobs:,} jobs (1 in + 1 out) "
          f"while both drain them: all JOB_FINISHED after {finished - started:.1f} s "
          f"({'; '.join(split)}; globus_requests_per_second "
          f"{'10,000' if fast else '20 (default)'}; load average {benchkit.load()})")


def bench_takeover(work: Path, rounds: int = 5) -> None:
    bench = benchkit.Bench(work)
    hosts = {name: dict(bench.env, BALSAM_HOSTNAME=name) for name in ("login1", "login2")}
    times = []
    active, standby = "login1", "login2"
    for host in (active, standby):
        subprocess.run([sys.executable, "-m", "balsam_mp", "site", "start"],
                                  env=hosts[host], check=True, capture_output=True)
    for _ in range(rounds):
        pids = json.loads((bench.site / f"site.{active}.pid").read_text())
        supervisor = psutil.Process(pids["pid"])
        victims = [supervisor, *supervisor.children(recursive=True)]
        for process in victims:
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while not _booted(bench.site, standby):
            time.sleep(0.01)
        times.append(time.monotonic() - killed)
        psutil.wait_procs(victims, timeout=10)
        subprocess.run([sys.executable, "-m", "balsam_mp", "site", "start"],
                                  env=hosts[active], check=True, capture_output=True)
        active, standby = standby, active
    for host in hosts.values():
        subprocess.run([sys.executable, "-m", "balsam_mp", "site", "stop"], env=host,
                                  capture_output=True)
    bench.emulator.stop()
    api.close()
    print(f"(j) standby takeover after SIGKILL of the active host: median "
          f"{statistics.median(times):.2f} s, max {max(times):.2f} s (n={rounds}; "
          f"load average {benchkit.load()})")


def _booted(site: Path, host: str) -> bool:
    path = site / f"site.{host}.pid"
    try:
        workers = json.loads(path.read_text()).get("workers") or {}
        return len(workers) == 2 and all(
            (site / ".run" / f"{name}.{host}.ready").read_text() == str(pid)
            for name, pid in workers.items())
    except (FileNotFoundError, ValueError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="ij", help="which benchmarks, e.g. 'j'")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs for (i)")
    parser.add_argument("--default-limits", action="store_true",
                        help="(i) at the default 20 Globus requests/s (else 10,000)")
    args = parser.parse_args()
    benchkit.DATABASE["server"] = server = benchkit.start_postgres()
    try:
        for key in args.only:
            with tempfile.TemporaryDirectory() as tmp:
                if key == "i":
                    bench_two_sites(Path(tmp), args.jobs, fast=not args.default_limits)
                elif key == "j":
                    bench_takeover(Path(tmp))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
