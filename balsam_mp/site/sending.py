"""What a claimed batch is sent as: its files and its task options. The submitter sends
with them, and so does a user's cancel that must first learn what a lost answer hid."""

from __future__ import annotations

from balsam_mp.db.claims import Claim
from balsam_mp.settings import Settings
from balsam_mp.transfer.base import FileSpec, TaskOptions, TransferBackend, task_label


def files_of(claim: Claim) -> list[FileSpec]:
    inbound = claim.direction == "in"
    return [FileSpec(remote, local, recursive) if inbound else FileSpec(local, remote, recursive)
            for _, remote, local, recursive in claim.items]


def options_of(settings: Settings, claim: Claim) -> TaskOptions:
    config = settings.transfers
    return TaskOptions(
        label=task_label(settings.site_name, claim.direction, claim.alias, len(claim.items)),
        deadline=claim.deadline, sync_level=config.sync_level,
        verify_checksum=config.verify_checksum, skip_source_errors=config.skip_source_errors,
        encrypt_data=config.encrypt_data)


def send(settings: Settings, backend: TransferBackend, address: str, claim: Claim) -> str:
    """Submit the claim with its stored submission id: the service answers a repeat with
    the task it made the first time. Returns the remote task id."""
    return backend.submit(claim.direction, address, files_of(claim), claim.submission_id,
                          options_of(settings, claim))
