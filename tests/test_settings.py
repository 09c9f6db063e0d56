"""settings.yml: Balsam's keys load as they are; every mistake names file, key and value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from balsam_mp import settings
from balsam_mp.errors import SettingsError, SiteNotFound

UUID = "08925f04-569f-11e7-bef8-22000b9a448b"

BALSAM_SETTINGS = f"""
site_id: 12
logging:
    level: DEBUG
filter_tags: {{}}
launcher:
    idle_ttl_sec: 30
scheduler:
    sync_period: 2
processing:
    num_workers: 2
transfers:
    transfer_locations:
        theta_dtn: globus://{UUID}
    globus_endpoint_id: {UUID}
    globus_endpoint_site_path: /home/me/site
    max_concurrent_transfers: 5
    transfer_batch_size: 100
    num_items_query_limit: 2000
    service_period: 5
elastic_queue: null
queue_maintainer: null
file_cleaner:
    cleanup_batch_size: 180
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "settings.yml").write_text(text)
    return tmp_path


def test_defaults_of_an_empty_file(tmp_path):
    loaded = settings.load(write(tmp_path, ""))
    assert loaded.transfers.transfer_batch_size == "auto"
    assert loaded.transfers.globus_requests_per_second == 20  # per identity, shared
    assert loaded.transfers.max_retries == 3
    assert loaded.database_path == tmp_path.resolve() / "site.db"
    assert loaded.site_name == tmp_path.name


def test_a_whole_balsam_settings_file_loads(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        loaded = settings.load(write(tmp_path, BALSAM_SETTINGS))
    assert loaded.transfers.transfer_locations == {"theta_dtn": f"globus://{UUID}"}
    assert loaded.transfers.service_period == 5
    assert loaded.transfers.transfer_batch_size == 100  # an explicit number stays
    assert loaded.location("theta_dtn") == ("globus", UUID)
    ignored = [r for r in caplog.records if "ignoring sections" in r.message]
    assert len(ignored) == 1 and "scheduler" in ignored[0].message


@pytest.mark.parametrize("text, key, what", [
    ("bogus: 1", "bogus", "unknown key"),
    ("transfers: {max_retry: 2}", "transfers.max_retry", "unknown key"),
    ("transfers: {transfer_batch_size: ten}", "transfer_batch_size", "an integer or auto"),
    ("transfers: {transfer_batch_size: AUTO}", "transfers.transfer_batch_size", "or auto"),
    ("transfers: {transfer_batch_size: true}", "transfers.transfer_batch_size", "integer"),
    ("transfers: {transfer_batch_size: 0}", "transfers.transfer_batch_size", "out of range"),
    ("transfers: {max_concurrent_transfers: -1}", "max_concurrent_transfers", "out of range"),
    ("transfers: {skip_source_errors: 'yes'}", "skip_source_errors", "true or false"),
    ("transfers: {transfer_locations: {a: /data}}", "transfer_locations.a", "protocol://"),
    ("transfers: {transfer_locations: {a: 'scp://host'}}", "transfer_locations.a",
     "unknown protocol 'scp'"),
    ("transfers: {transfer_locations: {a: 'globus://not-a-uuid'}}", "transfer_locations.a",
     "not an endpoint UUID"),
    ("transfers: {globus_endpoint_id: alcf#dtn}", "globus_endpoint_id", "not a UUID"),
    ("transfers: {sync_level: fast}", "sync_level", "not one of"),
    ("transfers: {globus_endpoint_site_path: relative/path}", "globus_endpoint_site_path",
     "must be absolute"),
    ("transfers: [1, 2]", "transfers", "must be a mapping"),
    ("transfers: {transfer_locations: {}}", "transfer_locations", "non-empty"),
])
def test_each_mistake_names_file_key_and_problem(tmp_path, text, key, what):
    with pytest.raises(SettingsError) as err:
        settings.load(write(tmp_path, text))
    message = str(err.value)
    assert str(tmp_path / "settings.yml") in message
    assert key in message and what in message


def test_malformed_yaml(tmp_path):
    with pytest.raises(SettingsError, match="malformed YAML"):
        settings.load(write(tmp_path, "transfers: {a: [1, 2}"))


def test_site_lookup_order(tmp_path, monkeypatch):
    site = write(tmp_path, "")
    nested = site / "data" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.delenv("BALSAM_SITE_PATH", raising=False)
    monkeypatch.chdir(nested)
    assert settings.find_site() == site.resolve()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("BALSAM_SITE_PATH", str(other))
    with pytest.raises(SiteNotFound, match="no settings.yml"):
        settings.find_site()
    assert settings.find_site(site) == site.resolve()
