"""Globus login end to end against the emulator's Auth routes, and the other sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from globus_sdk.token_storage import SQLiteTokenStorage, TokenStorageData

from balsam_mp import auth, settings
from balsam_mp.errors import BalsamError
from balsam_mp.site.layout import init_site
from tests.conftest import REMOTE_EP, SITE_EP

CLIENT_ID = "11111111-2222-4333-8444-555555555555"
THIRD_EP = "5e1f0000-0000-4000-8000-000000000003"


@pytest.fixture
def globus_site(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key in ("GLOBUS_CLIENT_ID", "GLOBUS_CLIENT_SECRET", "BALSAM_MP_HOME"):
        monkeypatch.delenv(key, raising=False)
    site = init_site(tmp_path / "site").site_path
    text = (site / "settings.yml").read_text()
    text = text.replace("globus_client_id: null", f"globus_client_id: {CLIENT_ID}")
    text = text.replace("globus_endpoint_id: null", f"globus_endpoint_id: {SITE_EP}")
    text = text.replace("    laptop: local://", f"    laptop: local://\n    remote: globus://{REMOTE_EP}")
    (site / "settings.yml").write_text(text)
    return site


def balsam(site, *args, stdin=None):
    return subprocess.Popen([sys.executable, "-m", "balsam_mp", "--site", str(site), *args],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def test_login_flow_end_to_end(globus_site, emulator, tmp_path):
    emulator.require_consent(REMOTE_EP)
    login = balsam(globus_site, "site", "globus-login", "-e", THIRD_EP, stdin=subprocess.PIPE)
    url = next(line.strip() for line in login.stdout if line.startswith("http://127.0.0.1"))
    assert "/v2/oauth2/authorize" in url and REMOTE_EP in urllib.request.unquote(url)
    with urllib.request.urlopen(url) as page:  # the browser step: consent, get the code
        code = json.loads(page.read())["code"]
    out, err = login.communicate(code + "\n", timeout=60)
    assert login.returncode == 0, err
    tokens = tmp_path / "home/.balsam_mp/globus_tokens.json"
    assert tokens.stat().st_mode & 0o777 == 0o600
    assert tokens.parent.stat().st_mode & 0o777 == 0o700

    whoami = balsam(globus_site, "site", "globus-whoami", "--format", "json")
    report = json.loads(whoami.communicate(timeout=60)[0])
    assert whoami.returncode == 0
    assert report["source"] == "balsam-login" and report["valid"]
    assert report["missing_consents"] == []

    # an expired access token is refreshed from the stored refresh token
    before = tokens.read_text()
    emulator.expire_tokens()
    source = auth.find_credentials(settings.load(globus_site))
    assert source.transfer_client().get_submission_id()["value"]
    assert emulator.counts()["token"] >= 2 and tokens.read_text() != before


def test_whoami_names_the_missing_consent_and_the_fix(globus_site, emulator):
    emulator.grant_consent(REMOTE_EP, "nobody")
    tokens = emulator.tokens(CLIENT_ID, "openid urn:globus:auth:scope:transfer.api.globus.org:all")
    storage = SQLiteTokenStorage(os.path.expanduser("~/.globus/cli/storage.db"),
                                 namespace="user/production")
    storage.store_token_data_by_resource_server({"transfer.api.globus.org": TokenStorageData(
        resource_server="transfer.api.globus.org", identity_id=None, scope=tokens["scope"],
        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        expires_at_seconds=int(time.time()) + 3600, token_type="Bearer")})
    storage.close()
    emulator.require_consent(REMOTE_EP)
    whoami = balsam(globus_site, "site", "globus-login", "--status")
    out, err = whoami.communicate(timeout=60)
    assert whoami.returncode == 1
    assert "source:  globus-cli" in out and REMOTE_EP in out
    assert f"fix:     balsam site globus-login -e {REMOTE_EP}" in out


def test_globus_cli_tokens_are_used_and_refreshed(globus_site, emulator):
    tokens = emulator.tokens()
    path = os.path.expanduser("~/.globus/cli/storage.db")
    os.makedirs(os.path.dirname(path))
    storage = SQLiteTokenStorage(path, namespace="user/production")
    storage.store_token_data_by_resource_server({"transfer.api.globus.org": TokenStorageData(
        resource_server="transfer.api.globus.org", identity_id=None, scope=tokens["scope"],
        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"],
        expires_at_seconds=int(time.time()) - 10, token_type="Bearer")})  # already expired
    storage.close()
    source = auth.find_credentials(settings.load(globus_site))
    assert source.name == "globus-cli"
    assert source.transfer_client().get_endpoint(SITE_EP)["id"] == SITE_EP
    assert emulator.counts()["token"] == 1  # refreshed before use


def test_client_credentials_come_first(globus_site, emulator, monkeypatch):
    emulator.add_client("svc-client", "s3cret")
    monkeypatch.setenv("GLOBUS_CLIENT_ID", "svc-client")
    monkeypatch.setenv("GLOBUS_CLIENT_SECRET", "s3cret")
    source = auth.find_credentials(settings.load(globus_site))
    assert source.name == "client-credentials"
    assert source.transfer_client().get_submission_id()["value"]
    monkeypatch.setenv("GLOBUS_CLIENT_SECRET", "wrong")
    report = auth.credential_status(settings.load(globus_site))
    assert not report["valid"] and report["error"]


def test_missing_client_id_and_no_credentials(globus_site):
    text = (globus_site / "settings.yml").read_text()
    (globus_site / "settings.yml").write_text(
        text.replace(f"globus_client_id: {CLIENT_ID}", "globus_client_id: null"))
    login = balsam(globus_site, "site", "globus-login")
    out, err = login.communicate(timeout=60)
    assert login.returncode == 1 and "transfers.globus_client_id is not set" in err
    assert "app.globus.org/settings/developers" in err
    with pytest.raises(BalsamError, match="no Globus credentials"):
        auth.find_credentials(settings.load(globus_site))
