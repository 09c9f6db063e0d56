"""Setting up a site on PostgreSQL: `site init` keeps an exported URL in settings.yml (so
cron starts the site without the variable), an administrator's schema needs no CREATE on
the database, keyword strings are refused, and no message ever shows a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from balsam_mp import api, settings
from balsam_mp.dburl import check_database_url, display_url, hide_secrets
from balsam_mp.errors import BalsamError, SettingsError
from balsam_mp.site.layout import init_site

ON_POSTGRES = pytest.mark.parametrize("engine", ["postgres"], indirect=True)
# passwords a parser reads wrongly: `/` ends the host part, `@` and `:` split it again,
# `%` starts an escape, `?` a query
PASSWORDS = ["S3cr/Et9x", "Pq7@Ss8:W0rdQ", "50%Off!Zq", "Aq9?Bz8=Cw7&password=Zzq",
             "Xy1/Yz2@Zx3%41"]


def balsam(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def clean_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (settings.DATABASE_URL_ENV, "BALSAM_SITE_PATH", "BALSAM_SITE_NAME")}
    return dict(env, HOME=str(tmp_path / "home"), **extra)


@ON_POSTGRES
def test_init_from_the_exported_url_writes_it_and_cron_starts_without_it(tmp_path,
                                                                         database_url):
    site = tmp_path / "site"
    made = balsam("site", "init", str(site), "--name", "cron",
                  env=clean_env(tmp_path, BALSAM_DATABASE_URL=database_url))
    assert made.returncode == 0, made.stderr
    assert f"database_url {database_url} (from $BALSAM_DATABASE_URL) written into " \
           f"{site / 'settings.yml'}" in made.stdout
    assert settings.load(site).database_url == database_url
    after_reboot = clean_env(tmp_path, BALSAM_SITE_PATH=str(site))  # cron: no variable
    try:
        started = balsam("site", "start", env=after_reboot)
        assert started.returncode == 0 and "started (pid" in started.stdout, started.stderr
    finally:
        assert balsam("site", "stop", env=after_reboot).returncode == 0


@ON_POSTGRES
def test_an_administrators_schema_needs_no_create_on_the_database(tmp_path, postgres_server,
                                                                  database_url):
    role = f"noc_{os.getpid()}"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{postgres_server.password}'")
    try:
        with psycopg.connect(postgres_server.url(database_url.rsplit("/", 1)[1]),
                             password=postgres_server.password, autocommit=True) as admin:
            admin.execute("REVOKE CREATE ON DATABASE "
                          f'"{database_url.rsplit("/", 1)[1]}" FROM PUBLIC')
            admin.execute(f"CREATE SCHEMA site_adm AUTHORIZATION {role}")
            assert not admin.execute(f"SELECT has_database_privilege('{role}', "
                                     "current_database(), 'CREATE')").fetchone()[0]
        url = database_url.replace("balsam@", f"{role}@")
        with pytest.raises(BalsamError, match="permission denied for database"):
            init_site(tmp_path / "other", "other", database_url=url)  # no schema: its right
        made = init_site(tmp_path / "adm", "adm", database_url=url)
        api.use_site(made.site_path)
        api.App.sync()
        assert [job.state for job in api.Job.objects.bulk_create(
            [{"app": "MySim", "workdir": "a", "transfers": {"input_file": "laptop:/in"}}])] \
            == ["READY"]
    finally:
        api.close()
        with psycopg.connect(postgres_server.url(database_url.rsplit("/", 1)[1]),
                             password=postgres_server.password, autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS site_adm CASCADE")
        postgres_server.admin(f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("keywords", [
    "host=db.example.org dbname=balsam user=me password=S3cr/et",
    "host=db.example.org password='S3cr/et with space' dbname=balsam",
    "dbname=balsam",
])
def test_a_keyword_string_is_refused_with_its_password_masked(tmp_path, keywords):
    with pytest.raises(SettingsError, match="is a libpq keyword string; write it as a URL") \
            as refused:
        check_database_url(keywords, "database_url")
    assert "S3cr" not in str(refused.value)
    cli = balsam("site", "init", str(tmp_path / "s"), "--database-url", keywords,
                 env=clean_env(tmp_path))
    assert cli.returncode != 0 and "libpq keyword string" in cli.stderr
    assert "S3cr" not in cli.stdout + cli.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_is_never_shown(tmp_path, monkeypatch, password):
    url = f"postgresql://me:{password}@db.example.org:5432/balsam"
    pieces = [p for p in (password, *password.replace("@", "/").replace(":", "/")
                          .replace("%", "/").replace("?", "/").split("/")) if len(p) >= 3]
    shown = [display_url(url)]
    with pytest.raises(SettingsError, match="carries a password") as refused:
        check_database_url(url, "database_url")
    shown.append(str(refused.value))
    monkeypatch.setenv(settings.DATABASE_URL_ENV, url)
    (tmp_path / "settings.yml").write_text("")
    with pytest.raises(SettingsError) as refused:
        settings.load(tmp_path)
    shown.append(str(refused.value))
    for args in (("site", "init", str(tmp_path / "s"), "--database-url", url),
                 ("job", "ls")):
        cli = balsam(*args, env=clean_env(tmp_path, BALSAM_DATABASE_URL=url))
        assert cli.returncode != 0
        shown.append(cli.stdout + cli.stderr)
    try:  # what the driver itself says of such a URL, as our messages pass it on
        psycopg.connect(url.replace("db.example.org", "127.0.0.1"), connect_timeout=2)
    except psycopg.Error as exc:
        shown.append(hide_secrets(str(exc), url))
    for text in shown:
        for piece in pieces:
            assert piece not in text.replace("balsam", ""), (piece, text)
