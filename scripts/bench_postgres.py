"""PostgreSQL benchmarks (issue 14), against the emulator in metadata-only mode:

  (i) two sites on one database, a client in another process creating 10,000 jobs
      (1 in + 1 out each) for both while they drain them: time to all JOB_FINISHED, and
      how the work split between the sites
  (j) standby takeover: the same site on two "login nodes" (two supervisors here);
      SIGKILL every process of the active one, time until the standby's workers run
      (median of 5); then SIGSTOP every process of the active one (a hung host whose
      sessions stay open): time until the standby's workers run, and after SIGCONT
      until the woken host stands by (median of 3)
  (k) job creation side by side: `Job.objects.bulk_create` of 10,000 jobs (1 in + 1 out
      each, so 20,000 transfer items) on SQLite, then on PostgreSQL, in this process;
      median of 3 rounds each, every round into a fresh site

Items/s on PostgreSQL next to SQLite: scripts/bench_site.py --only b [--postgres].
Run: .venv/bin/python scripts/bench_postgres.py [--only ijk] [--jobs N] [--default-limits]
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
from balsam_mp.site.leader import RENEW_EVERY  # noqa: E402
from balsam_mp.site.lease import LEASE_SECONDS  # noqa: E402


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


def bench_create(work: Path, jobs: int, rounds: int = 3) -> None:
    from balsam_mp.site.layout import init_site

    specs = [{"app": "MySim", "workdir": f"w/{n}",
              "transfers": {"input_file": f"laptop:/in/{n}.dat",
                            "result": f"laptop:/out/{n}.dat"}} for n in range(jobs)]
    from balsam_mp.api import jobs as creation

    seconds: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    database: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}  # its transaction
    commit = creation._commit

    def timed(*args):
        started = time.perf_counter()
        try:
            return commit(*args)
        finally:
            database[engine].append(time.perf_counter() - started)

    creation._commit = timed
    for n in range(rounds):
        for engine in seconds:
            url = benchkit.database_url(f"create_{work.name}_{n}".lower()) \
                if engine == "PostgreSQL" else None
            site = init_site(work / f"{engine}{n}", f"create{n}", database_url=url)
            api.use_site(site.site_path)
            api.App.sync()
            started = time.perf_counter()
            api.Job.objects.bulk_create([dict(spec) for spec in specs])
            seconds[engine].append(time.perf_counter() - started)
            api.close()
    creation._commit = commit
    sqlite, postgres = (statistics.median(v) for v in seconds.values())
    in_sqlite, in_postgres = (statistics.median(v) for v in database.values())
    pairs = zip(*seconds.values(), strict=True)
    print(f"(k) bulk_create of {jobs:,} jobs (1 in + 1 out each), median of {rounds}: "
          f"SQLite {sqlite:.2f} s, PostgreSQL {postgres:.2f} s = {postgres / sqlite:.2f} x; "
          f"of which the transaction that writes the rows: {in_sqlite:.2f} s and "
          f"{in_postgres:.2f} s = {in_postgres / in_sqlite:.2f} x "
          f"(rounds: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in pairs)}; "
          f"load average {benchkit.load()})")


def bench_takeover(work: Path, kills: int = 5, freezes: int = 3) -> None:
    bench = benchkit.Bench(work)
    hosts = {name: dict(bench.env, BALSAM_HOSTNAME=name) for name in ("login1", "login2")}
    for env in hosts.values():
        _balsam(env, "site", "start")
    active = "login1"
    killed, frozen, woken = [], [], []
    for round_ in range(kills + freezes):
        standby = "login2" if active == "login1" else "login1"
        pids = json.loads((bench.site / f"site.{active}.pid").read_text())
        supervisor = psutil.Process(pids["pid"])
        victims = [supervisor, *supervisor.children(recursive=True)]
        freeze = round_ >= kills
        for process in victims:
            process.send_signal(signal.SIGSTOP if freeze else signal.SIGKILL)
        began = time.monotonic()
        while not _booted(bench.site, standby):
            time.sleep(0.01)
        (frozen if freeze else killed).append(time.monotonic() - began)
        if freeze:  # woken: it finds the lease gone and stands by, writing nothing
            for process in victims:
                process.send_signal(signal.SIGCONT)
            began = time.monotonic()
            while not _standing_by(bench.site, active):
                time.sleep(0.01)
            woken.append(time.monotonic() - began)
        else:
            psutil.wait_procs(victims, timeout=10)
            _balsam(hosts[active], "site", "start")
        active = standby
    for env in hosts.values():
        _balsam(env, "site", "stop")
    bench.emulator.stop()
    api.close()
    print(f"(j) standby takeover after SIGKILL of the active host: median "
          f"{statistics.median(killed):.2f} s, max {max(killed):.2f} s (n={kills}); after "
          f"SIGSTOP: median {statistics.median(frozen):.2f} s, max {max(frozen):.2f} s "
          f"(n={freezes}; lease {LEASE_SECONDS:g} s renewed every {RENEW_EVERY:g} s), the "
          f"woken host on standby {statistics.median(woken):.2f} s after SIGCONT (load "
          f"average {benchkit.load()})")


def _balsam(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env, check=True,
                   capture_output=True)


def _standing_by(site: Path, host: str) -> bool:
    try:
        info = json.loads((site / f"site.{host}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return bool(info.get("standby")) and not info.get("workers")


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
    parser.add_argument("--only", default="ijk", help="which benchmarks, e.g. 'j'")
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
                elif key == "k":
                    bench_create(Path(tmp), args.jobs)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
