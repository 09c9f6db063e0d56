"""Housekeeping figures (issue 13): how big site.db gets, and how long `site status` takes.

  1. 100,000 jobs, each with one stage-in and one stage-out item, created through the
     API: site.db size (after a WAL checkpoint), then again with every item done, the
     tasks that moved them (batches of 100) and the jobs' log rows.
  2. The same rows copied up to 1,000,000 items (90% done, the rest pending, active or
     awaiting their job): `balsam site status` wall time (whole command, median of 5)
     and the status query alone (median of 5).

Run: .venv/bin/python scripts/bench_status.py [--jobs N] [--items N]
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from balsam_mp import api
from balsam_mp.site.layout import init_site
from balsam_mp.site.status import status

APP = '''
from balsam_mp.api import ApplicationDefinition

class InOut(ApplicationDefinition):
    transfers = {"in": {"direction": "in", "local_path": "in.dat"},
                 "out": {"direction": "out", "local_path": "out.dat", "required": False}}
'''


def checkpointed_size(db: Path) -> int:
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


def finish_everything(db: Path) -> None:
    """What a drained site holds: items done in tasks of 100, jobs finished, log rows."""
    now = "2026-11-27T00:00:00.000000Z"
    with sqlite3.connect(db) as con:
        con.execute(f"""INSERT INTO transfer_task (direction, location_alias, remote_address,
            protocol, state, submission_id, task_id, remote_status, label, item_count,
            files_transferred, files_skipped, bytes_transferred, bytes_per_second,
            created_at, updated_at, deadline)
            SELECT direction, 'remote', 'x', 'globus', 'succeeded', 'sub-' || (id / 100),
                   'task-' || (id / 100), 'SUCCEEDED', 'balsam_mp', 100, 100, 0, 100000, 1e6,
                   '{now}', '{now}', '{now}'
            FROM transfer_item WHERE id % 100 = 0""")
        con.execute("""UPDATE transfer_item SET state = 'done', task_id = 'task-' || (id / 100),
            transfer_task_id = (SELECT t.id FROM transfer_task t
                                WHERE t.task_id = 'task-' || (transfer_item.id / 100))""")
        con.execute("UPDATE job SET state = 'JOB_FINISHED'")
        for source, target in (("READY", "STAGED_IN"), ("STAGED_IN", "POSTPROCESSED"),
                               ("POSTPROCESSED", "STAGED_OUT"), ("STAGED_OUT", "JOB_FINISHED")):
            con.execute(f"""INSERT INTO log_event (job_id, from_state, to_state, message,
                timestamp) SELECT id, '{source}', '{target}', '', '{now}' FROM job""")


def grow_to(db: Path, items: int) -> None:
    """Copy the rows until there are `items` items; the copies are in a realistic mix."""
    with sqlite3.connect(db) as con:
        while (count := con.execute("SELECT COUNT(*) FROM transfer_item").fetchone()[0]) \
                < items:
            offset = con.execute("SELECT MAX(id) FROM job").fetchone()[0]
            con.execute(f"""INSERT INTO job (id, app_id, workdir, state, state_data, tags,
                parameters, created_at, updated_at)
                SELECT id + {offset}, app_id, workdir || '-' || {offset}, state, state_data,
                       tags, parameters, created_at, updated_at
                FROM job LIMIT {(items - count) // 2}""")
            con.execute(f"""INSERT INTO transfer_item (job_id, slot, direction,
                location_alias, remote_path, local_path, recursive, state, transfer_task_id,
                task_id, attempts, created_at, updated_at)
                SELECT job_id + {offset}, slot, direction, location_alias, remote_path,
                       local_path, recursive,
                       CASE WHEN id % 20 = 1 THEN 'pending' WHEN id % 20 = 2 THEN 'active'
                            ELSE state END,
                       transfer_task_id, task_id, attempts, created_at, updated_at
                FROM transfer_item WHERE job_id + {offset} IN (SELECT id FROM job)""")


def median_time(run, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as tmp:
        site = init_site(Path(tmp) / "site").site_path
        (site / "apps" / "inout.py").write_text(APP)
        api.use_site(site)
        api.App.sync()
        db = api.current_settings().database_path
        for start in range(0, args.jobs, 20_000):
            api.Job.objects.bulk_create([
                {"app": "InOut", "workdir": f"j/{n}",
                 "transfers": {"in": f"laptop:/in/{n}.dat", "out": f"laptop:/out/{n}.dat"}}
                for n in range(start, min(args.jobs, start + 20_000))])
        api.close()
        created = checkpointed_size(db)
        finish_everything(db)
        drained = checkpointed_size(db)
        print(f"site.db per {args.jobs:,} jobs (1 in + 1 out each): {created / 1e6:.0f} MB "
              f"as created, {drained / 1e6:.0f} MB once all are finished (tasks and log "
              f"rows included)")
        grow_to(db, args.items)
        command = [sys.executable, "-m", "balsam_mp", "--site", str(site), "site", "status"]
        whole = median_time(lambda: subprocess.run(command, check=True, capture_output=True))
        api.use_site(site)
        settings = api.current_settings()
        query = median_time(lambda: status(settings))
        api.close()
        print(f"`balsam site status` at {args.items:,} items: {whole:.2f} s for the whole "
              f"command, {query:.2f} s in its queries (median of 5; "
              f"{checkpointed_size(db) / 1e6:.0f} MB database)")


if __name__ == "__main__":
    main()
