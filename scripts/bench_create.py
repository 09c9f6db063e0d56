"""Job creation as one whole process, for `farm-bench --vs` side by side (issue 23): make a
fresh site, then `Job.objects.bulk_create` of N jobs (1 in + 1 out each) on it.

    .venv/bin/python scripts/bench_create.py --serve      # a PostgreSQL server; prints
                                                          # its URL and PGPASSWORD, runs
                                                          # until interrupted
    farm-bench -n 7 --timeout 600 \\
        --vs '.venv/bin/python scripts/bench_create.py --engine sqlite' \\
        -- .venv/bin/python scripts/bench_create.py --engine postgres --url URL

Each run makes its own site (a fresh folder; on PostgreSQL a fresh schema), so runs
don't see each other's rows; the folder is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from balsam_mp import api  # noqa: E402
from balsam_mp.site.layout import init_site  # noqa: E402


def create(engine: str, url: str | None, jobs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-create-"))
    try:
        name = f"create_{uuid.uuid4().hex[:12]}"
        site = init_site(work / "site", name, database_url=url if engine == "postgres" else None)
        api.use_site(site.site_path)
        api.App.sync()
        started = time.perf_counter()
        api.Job.objects.bulk_create([
            {"app": "MySim", "workdir": f"w/{n}",
             "transfers": {"input_file": f"laptop:/in/{n}.dat", "result": f"laptop:/out/{n}.dat"}}
            for n in range(jobs)])
        print(f"{engine}: bulk_create of {jobs:,} jobs {time.perf_counter() - started:.2f} s")
        api.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def serve() -> None:
    from balsam_mp.testing.postgres_server import PostgresServer

    server = PostgresServer().start()
    try:
        print(f"URL {server.create_database('bench_create')}")
        print(f"PGPASSWORD={server.password}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", default=os.environ.get("BALSAM_DATABASE_URL"),
                        help="the PostgreSQL database (from --serve)")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--serve", action="store_true", help="run a PostgreSQL server")
    args = parser.parse_args()
    if args.serve:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        serve()
    elif args.engine == "postgres" and not args.url:
        parser.error("--engine postgres needs --url (start a server with --serve)")
    else:
        create(args.engine, args.url, args.jobs)


if __name__ == "__main__":
    main()
