"""Job creation on PostgreSQL is a handful of statements, not one per row: the rows go
in by COPY (executemany sent a statement per row, each parsed by the server and firing
the NOTIFY trigger: 2.2 x SQLite's time for 10,000 jobs, see scripts/bench_postgres.py
(k)). Counted in the server's own log of this session's statements."""

from __future__ import annotations

import pytest

from balsam_mp import api

ON_POSTGRES = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


@ON_POSTGRES
def test_creating_a_thousand_jobs_is_a_few_statements(site, postgres_server):
    database = api.site.database()
    pid = database.connection().info.backend_pid
    log = postgres_server.folder / "server.log"
    before = log.stat().st_size
    database.execute_sql("SET log_statement = 'all'")  # the test server's role: superuser
    made = api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"w/{n}", "transfers": {
            "input_file": f"laptop:/in/{n}.dat", "result": f"laptop:/out/{n}.dat"}}
        for n in range(1000)])
    database.execute_sql("SET log_statement = 'none'")
    with log.open(errors="replace") as text:
        text.seek(before)
        statements = [line for line in text if f"[{pid}]" in line and
                      ("statement: " in line or "execute " in line)]
    assert len(made) == 1000 and api.TransferItem.objects.count() == 2000
    inserts = [line for line in statements if "INSERT INTO" in line]
    assert not inserts, f"{len(inserts)} INSERTs, e.g. {inserts[0]}"
    assert sum("COPY " in line for line in statements) == 3  # jobs, items, log rows
    assert len(statements) < 30, "".join(statements[:40])
