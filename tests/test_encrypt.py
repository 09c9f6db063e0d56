"""encrypt_data, as Balsam asks Globus: on by default, a setting, recorded by the emulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from balsam_mp import settings
from balsam_mp.errors import SettingsError
from balsam_mp.transfer.base import FileSpec, TaskOptions
from balsam_mp.transfer.globus import GlobusBackend
from tests.conftest import REMOTE_EP, SITE_EP, wait_for
from tests.test_backends import globus_client


def load(tmp_path: Path, transfers: str) -> settings.Settings:
    (tmp_path / "settings.yml").write_text(f"transfers:\n{transfers}")
    return settings.load(tmp_path)


def test_the_settings_default_to_encrypted_and_validate(tmp_path):
    loaded = load(tmp_path, "  max_retries: 1\n")
    assert loaded.transfers.encrypt_data is True
    assert loaded.transfers.fault_timeout == 600
    assert load(tmp_path, "  encrypt_data: false\n").transfers.encrypt_data is False
    with pytest.raises(SettingsError, match=r"transfers.encrypt_data: must be true or false"):
        load(tmp_path, "  encrypt_data: 'yes'\n")
    with pytest.raises(SettingsError, match=r"transfers.fault_timeout: .*out of range"):
        load(tmp_path, "  fault_timeout: 0\n")


@pytest.mark.parametrize("encrypt", [True, False])
def test_the_task_document_records_encrypt_data(emulator, endpoint_dirs, encrypt):
    (endpoint_dirs[REMOTE_EP] / "f.dat").write_text("f")
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(endpoint_dirs[SITE_EP]), "/")
    task_id = backend.submit("in", REMOTE_EP, [FileSpec("/f.dat", str(
        endpoint_dirs[SITE_EP] / "f.dat"))], backend.get_submission_id(), TaskOptions(
        "t", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1), encrypt_data=encrypt))
    wait_for(lambda: backend.poll([task_id])[task_id].finished)
    assert backend.client.get_task(task_id)["encrypt_data"] is encrypt
