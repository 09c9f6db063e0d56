"""PostgreSQL operations (issue 23) as a hostile operator tries them: each test is a case
that broke."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from balsam_mp import api, states
from balsam_mp.db.postgres import SLOTS_WAIT, schema_of
from balsam_mp.dburl import check_database_url, display_url
from balsam_mp.errors import SettingsError
from balsam_mp.site import pidfile
from tests.conftest import wait_for
from tests.test_pg_connections import limited_role_site


@pytest.mark.parametrize("value", [
    "host=db password=pa://ss dbname=x",  # a keyword string whose value holds `://`
    "dbname=x sslmode=require password=S3cret application_name=a://b",
])
def test_a_keyword_string_holding_a_scheme_mark_is_refused_with_its_password_masked(value):
    with pytest.raises(SettingsError, match="keyword string") as caught:
        check_database_url(value)
    secret = value.split("password=")[1].split()[0]
    assert secret not in str(caught.value)
    assert secret not in display_url(value)


def test_a_url_with_an_sslpassword_is_refused_and_never_shown():
    """sslpassword (the client key's passphrase) is a secret like password."""
    url = "postgresql://u@h/db?sslmode=verify-full&sslpassword=K3yPass"
    with pytest.raises(SettingsError, match="carries a password") as caught:
        check_database_url(url)
    assert "K3yPass" not in str(caught.value)
    assert "K3yPass" not in display_url(url)


def test_site_sync_works_for_a_role_limited_to_four_connections(tmp_path, postgres_server):
    """docs/postgresql.md: a role limited to 3 runs one site, 'give such a role 4 or
    more' for commands. `site sync` held its own connection while the supervisor's boot
    check asked for one more (the fifth): the sync was refused after 10 s."""
    with limited_role_site(tmp_path, postgres_server, 4) as (kit, _):
        api.close()  # the role's slots are the site's and the commands'
        kit.start()
        wait_for(lambda: len(getattr(pidfile.read(kit.site), "workers", None) or {}) == 2,
                 what="the site's workers")
        synced = kit.balsam("site", "sync", check=False)
        assert synced.returncode == 0, synced.stderr
        assert "restarting the workers" in synced.stdout


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_site_sync_opens_one_session(site, monkeypatch):
    """`site sync` checked the database in a session of its own, closed it, and synced
    the apps in another at once: the server frees a closed session's slot a moment
    later, so with the role's last slot the second was refused (a command's refusal is
    said at once), now and then."""
    from balsam_mp import db
    from balsam_mp.site import service

    api.close()
    opened, connect = [], db.connect
    monkeypatch.setattr(db, "connect", lambda *args, **kwargs: opened.append(args) or
                        connect(*args, **kwargs))
    assert service.sync(site.site_path).endswith("the site is not running")
    assert len(opened) == 1


def test_site_init_names_the_variable_that_holds_a_refused_url(tmp_path):
    """A URL from $BALSAM_DATABASE_URL was refused as if given as --database-url."""
    env = dict(os.environ, BALSAM_DATABASE_URL="postgresql://u:S3cret@h/db")
    result = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "init",
                             str(tmp_path / "s")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "BALSAM_DATABASE_URL: the URL carries a password" in result.stderr
    assert "--database-url" not in result.stderr and "S3cret" not in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_worker_refused_a_connection_at_boot_is_restarted_not_the_site_halted(
        tmp_path, postgres_server):
    """A worker whose connection fails as it boots (the server restarting, its session
    ended by pg_terminate_backend, no slot left for longer than its 10 s wait) exited
    as 'failed at boot': the supervisor halted the site for good, every standby too
    once it took over and met the same (seen with pg_terminate_backend in a loop)."""
    import psycopg

    from tests.sitekit import SiteKit

    role = name = f"boot_{os.getpid()}"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{postgres_server.password}' "
                          "CONNECTION LIMIT 3")
    postgres_server.admin(f'CREATE DATABASE "{name}" OWNER {role} TEMPLATE template0')
    url = postgres_server.url(name).replace("balsam@", f"{role}@")
    kit, held = None, []
    try:
        kit = SiteKit(tmp_path, database_url=url)
        jobs = kit.make_jobs(20, stage_out=False)
        kit_name = api.current_settings().site_name
        api.close()
        # two of the role's three slots taken: the lease holder gets the last one, and
        # the workers are refused until these end
        held = [psycopg.connect(url, password=postgres_server.password) for _ in range(2)]
        log = kit.site / "logs" / "supervisor.log"

        def release_once_restarted() -> None:
            """The slots free once a refused worker was restarted, however long the site
            took to start (a timer could free them before the refusal)."""
            try:
                wait_for(lambda: log.exists() and "restarting in" in log.read_text(),
                         timeout=SLOTS_WAIT + 20, what="a refused worker to be restarted")
            finally:
                for conn in held:
                    conn.close()
        releaser = threading.Thread(target=release_once_restarted, daemon=True)
        releaser.start()
        kit.start()  # ready once a worker's restart found a slot
        releaser.join(timeout=60)
        assert "restarting in" in log.read_text()
        assert "failed at boot" not in log.read_text()
        with psycopg.connect(postgres_server.url(name), password=postgres_server.password,
                             autocommit=True) as admin:  # the role's slots are the site's
            wait_for(lambda: admin.execute(
                f"SELECT count(*) FROM {schema_of(kit_name)}.job WHERE state = %s",
                (states.STAGED_IN,)).fetchone()[0] == len(jobs), timeout=90, interval=0.2,
                what="every job STAGED_IN")
        assert pidfile.read(kit.site).alive()
    finally:
        for conn in held:
            conn.close()
        if kit is not None:
            kit.close()
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_server.admin(f"DROP ROLE IF EXISTS {role}")


def test_a_client_that_had_the_sqlite_site_open_across_a_migrate_is_refused(
        tmp_path, empty_database):
    """A script (a notebook) with the SQLite site open while it migrates went on writing
    into the renamed backup, site.db.migrated-*: its jobs never reached PostgreSQL."""
    from tests.test_migrate import balsam, sqlite_site

    site = sqlite_site(tmp_path, jobs=3)
    script = (f"import sys\nfrom balsam_mp import api\napi.use_site({str(site)!r})\n"
              "print(api.Job.objects.count(), flush=True)\nsys.stdin.readline()\n"
              "api.Job.objects.bulk_create([{'app': 'MySim', 'workdir': 'late', "
              "'transfers': {'input_file': 'remote:/in/late.dat'}}])\n")
    env = {k: v for k, v in os.environ.items() if k != "BALSAM_DATABASE_URL"}
    client = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert client.stdout.readline().strip() == "3"  # the site is open
        moved = balsam(site, "site", "migrate", "--database-url", empty_database)
        assert moved.returncode == 0, moved.stderr
        _, err = client.communicate("\n", timeout=60)
    finally:
        client.kill()
        client.wait()
    assert client.returncode != 0 and "was moved or replaced since this process" in err
    backup, = site.glob("site.db.migrated-*Z")  # not its -wal, -shm
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("SELECT count(*) FROM job").fetchone()[0] == 3


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_the_lease_holders_session_is_named_as_the_sites(sitekit, postgres_server,
                                                         database_url):
    """The holder's session showed in pg_stat_activity as `balsam_mp client`: an
    administrator ending the clients' sessions ended the site's lease (a failover)."""
    import psycopg

    kit = sitekit()
    api.close()
    kit.start()
    with psycopg.connect(postgres_server.url(database_url.rsplit("/", 1)[1]),
                         password=postgres_server.password, autocommit=True) as admin:
        def sessions() -> list[str]:
            return sorted(row[0] for row in admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name "
                "LIKE 'balsam_mp%'").fetchall())

        wait_for(lambda: len(sessions()) == 3, what="the site's three sessions")
        assert sessions() == ["balsam_mp lease holder", "balsam_mp poller",
                              "balsam_mp submitter"]
