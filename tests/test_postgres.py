"""database_url: how a site finds PostgreSQL, what it refuses, and what a user sees when
the server, the password or the driver is missing. The shared behaviour (claims, jobs,
exactly once, chaos) is in the other test files, marked `engines`."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from pathlib import Path

import pytest

from balsam_mp import api, db, settings
from balsam_mp.dburl import display_url
from balsam_mp.errors import BalsamError, SettingsError
from balsam_mp.site.layout import init_site

URL = "postgresql://balsam@db.example.org:5432/balsam"


def load(tmp_path: Path, text: str) -> settings.Settings:
    (tmp_path / "settings.yml").write_text(text)
    return settings.load(tmp_path)


def test_database_url_from_the_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(settings.DATABASE_URL_ENV, raising=False)
    assert load(tmp_path, "").database == tmp_path.resolve() / "site.db"
    assert load(tmp_path, f"database_url: {URL}\n").database == URL
    monkeypatch.setenv(settings.DATABASE_URL_ENV, URL)
    assert load(tmp_path, "").database == URL
    assert load(tmp_path, f"database_url: {URL}\n").database == URL


@pytest.mark.parametrize("value, message", [
    ("postgresql://balsam:s3cret@host/db", "carries a password; remove it and put it in "
                                           "~/.pgpass"),
    ("postgresql://balsam@host/db?sslmode=require&password=s3cret", "carries a password"),
    ("mysql://balsam:s3cret@host/db", "carries a password"),
    ("mysql://balsam@host/db", "is not a postgresql:// URL"),
    ("POSTGRESQL://balsam@host/db", "is not a postgresql:// URL (written so, in lower case"),
    ("postgres://balsam@host/db", "is not a postgresql:// URL"),
    ("postgresql://balsam:s3cret@host:99999/db", "carries a password"),
    ("postgresql://balsam@host/db?PASSWORD=s3cret", "carries a password"),
    ("postgresql://balsam@host:99999/db", "not a valid URL"),
    ("postgresql://balsam@host:5432", "names no database"),
    (12, "must be a postgresql://user@host:port/dbname URL"),
])
def test_a_bad_database_url_is_refused(tmp_path, monkeypatch, value, message):
    monkeypatch.delenv(settings.DATABASE_URL_ENV, raising=False)
    with pytest.raises(SettingsError, match="settings.yml: database_url: ") as err:
        load(tmp_path, f"database_url: {value}\n")
    assert message in str(err.value)
    assert "s3cret" not in str(err.value)  # a password is never repeated back
    monkeypatch.setenv(settings.DATABASE_URL_ENV, str(value))
    with pytest.raises(SettingsError, match=f"{settings.DATABASE_URL_ENV}: "):
        load(tmp_path, "")


def test_the_file_and_the_environment_must_agree(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DATABASE_URL_ENV, URL + "2")
    with pytest.raises(SettingsError, match="differs from \\$BALSAM_DATABASE_URL"):
        load(tmp_path, f"database_url: {URL}\n")


def test_a_missing_driver_is_one_clear_message(monkeypatch):
    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg":
            raise ImportError("No module named 'psycopg'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(BalsamError, match=r"pip install 'balsam_mp\[postgres\]'"):
        db.connect(URL, site="s")


def test_an_unreachable_server_or_a_wrong_password(postgres_server, monkeypatch):
    url = postgres_server.url()
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(BalsamError, match="cannot connect to PostgreSQL: .*password"):
        db.connect(url, site="s")
    port = postgres_server.port
    with pytest.raises(BalsamError, match=f"127.0.0.1:{port + 1}/postgres: cannot connect"):
        db.connect(url.replace(str(port), str(port + 1)), site="s")
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    # several hosts: libpq tries them in turn (a standby server), the first is down here
    both = url.replace(f"127.0.0.1:{port}", f"127.0.0.1:1,127.0.0.1:{port}")
    db.connect(settings.check_database_url(both), site="multi_host", create=True).close()
    with pytest.raises(SettingsError, match="not a valid URL"):
        settings.check_database_url(both.replace(":1,", ":x,"))
    with pytest.raises(BalsamError, match="cannot connect to PostgreSQL: .*foo"):
        db.connect(url + "?foo=1", site="s")  # libpq refuses the parameter: one line


def test_the_password_comes_from_pgpass(postgres_server, tmp_path, monkeypatch):
    """libpq's own ~/.pgpass (0600), with no $PGPASSWORD at all."""
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("HOME", str(tmp_path))
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:*:balsam:{postgres_server.password}\n")
    pgpass.chmod(0o600)
    with pytest.raises(BalsamError, match="no site 's' in this database .*--database-url"):
        db.connect(postgres_server.url(), site="s")  # connected: the password was read
    api.close()


def test_init_with_a_database_url_makes_the_tables_once(postgres_server, tmp_path):
    url = postgres_server.create_database("init_twice")
    init_site(tmp_path / "one", database_url=url)
    assert settings.load(tmp_path / "one").database_url == url
    api.use_site(tmp_path / "one")
    api.App.sync()
    api.close()
    # a second directory for the same site would republish its paths and aliases: two
    # login nodes share one directory; nothing is written
    with pytest.raises(BalsamError, match="site 'one' already exists in this database"):
        init_site(tmp_path / "two", "one", database_url=url)
    assert not (tmp_path / "two").exists() and not list(tmp_path.glob(".two*"))
    api.use_site(tmp_path / "one")
    assert [a.name for a in api.App.objects.all()] == ["MySim"]
    api.close()
    with pytest.raises(BalsamError, match="cannot connect"):  # no server there: no folder
        init_site(tmp_path / "three", database_url="postgresql://balsam@127.0.0.1:1/x")
    assert not (tmp_path / "three").exists()
    postgres_server.drop_database("init_twice")


def test_site_init_refuses_a_url_with_a_password(tmp_path):
    result = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "init",
                             str(tmp_path / "s"), "--database-url",
                             "postgresql://u:pw@h/d"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "--database-url: the URL carries a password" in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_url_in_messages_never_shows_a_password():
    assert display_url("postgresql://u:pw@h:1/d") == "postgresql://u:***@h:1/d"
    assert display_url(URL) == URL
    assert display_url("postgresql://u@h/d?password=pw&sslmode=require") == \
        "postgresql://u@h/d?password=***&sslmode=require"


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_status_reads_the_database_url_from_a_broken_file(site):
    api.Job.objects.create(app="MySim", workdir="w", transfers={"input_file": "laptop:/in"})
    api.close()
    settings_file = site.site_path / "settings.yml"
    broken = settings_file.read_text().replace("transfer_batch_size: auto",
                                               "transfer_batch_size: -5")
    assert "-5" in broken
    settings_file.write_text(broken)
    result = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "status", "--format",
                             "json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert f"using database_url {site.database_url} and site_name 'site'" in \
        report["settings_error"]
    assert report["site"] == "site"
    assert report["items"] == [{"direction": "in", "state": "pending", "count": 1}]
