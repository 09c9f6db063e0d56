"""One transfer backend per protocol, built from settings, shared by the aliases using it."""

from __future__ import annotations

from dataclasses import dataclass

from balsam_mp import auth
from balsam_mp.errors import SettingsError
from balsam_mp.settings import Settings
from balsam_mp.transfer.base import TransferBackend
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import LocalBackend


@dataclass(frozen=True)
class Location:
    alias: str
    protocol: str
    address: str
    backend: TransferBackend


def build_locations(settings: Settings) -> dict[str, Location]:
    """alias -> Location. Globus credentials are looked up only if an alias needs them."""
    shared: dict[str, TransferBackend] = {}
    locations = {}
    for alias in settings.transfers.transfer_locations:
        protocol, address = settings.location(alias)
        if protocol not in shared:
            shared[protocol] = _backend(settings, protocol)
        locations[alias] = Location(alias, protocol, address, shared[protocol])
    return locations


def _backend(settings: Settings, protocol: str) -> TransferBackend:
    if protocol == "local":
        return LocalBackend(settings.site_path / "local_tasks", settings.data_path)
    endpoint = settings.transfers.globus_endpoint_id
    if not endpoint:
        raise SettingsError(
            f"{settings.site_path / 'settings.yml'}: transfers.globus_endpoint_id: required "
            "when transfer_locations has a globus:// alias"
        )
    credentials = auth.find_credentials(settings)
    client = credentials.transfer_client(auth.globus_auth.site_endpoints(settings))
    return GlobusBackend(client, endpoint, str(settings.site_path),
                         settings.transfers.globus_endpoint_site_path,
                         settings.transfers.globus_requests_per_second)


def backend_of_task(locations: dict[str, Location], alias: str,
                    protocol: str) -> TransferBackend | None:
    """The backend that follows a submitted task: its alias's, or, when the alias has left
    transfer_locations since, the one of its protocol (its files are already moving)."""
    if alias in locations:
        return locations[alias].backend
    return next((loc.backend for loc in locations.values() if loc.protocol == protocol), None)
