"""One transfer backend per protocol, built from settings, shared by the aliases using it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from balsam_mp import auth
from balsam_mp.db.budget import RequestBudget
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.transfer.base import TransferBackend
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import LocalBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    alias: str
    protocol: str
    address: str
    backend: TransferBackend


def build_locations(settings: Settings) -> dict[str, Location]:
    """alias -> Location. Globus credentials are looked up only if an alias needs them.
    Aliases that cannot work yet (globus:// without globus_endpoint_id) are left out: their
    items wait, and `site status` says which key to set."""
    shared: dict[str, TransferBackend] = {}
    locations = {}
    waiting = settings.aliases_without_endpoint()
    if waiting:
        log.warning("items on %s wait: transfers.globus_endpoint_id is not set",
                    ", ".join(waiting))
    for alias in settings.transfers.transfer_locations:
        if alias in waiting:
            continue
        protocol, address = settings.location(alias)
        if protocol not in shared:
            shared[protocol] = _backend(settings, protocol)
        locations[alias] = Location(alias, protocol, address, shared[protocol])
    return locations


def _backend(settings: Settings, protocol: str) -> TransferBackend:
    if protocol == "local":
        return LocalBackend(settings.site_path / "local_tasks", settings.data_path)
    endpoint = settings.transfers.globus_endpoint_id
    assert endpoint, "callers leave out globus aliases without an endpoint"
    credentials = auth.find_credentials(settings)
    client = credentials.transfer_client(auth.globus_auth.site_endpoints(settings))
    per_second = settings.transfers.globus_requests_per_second
    # one budget per identity, shared with the other workers through site.db
    budget = RequestBudget(settings.database, f"globus/{credentials.name}", per_second,
                           site=settings.site_name)
    return GlobusBackend(client, endpoint, str(settings.site_path),
                         settings.transfers.globus_endpoint_site_path, per_second, budget)


def backend_of_task(locations: dict[str, Location], alias: str,
                    protocol: str) -> TransferBackend | None:
    """The backend that follows a submitted task: the one of the protocol it was sent
    with (recorded on its row), whatever its alias says now: its alias's, or, when the
    alias has left transfer_locations or changed protocol since, another alias's of the
    same protocol. None if no alias uses that protocol any more (see follow_task)."""
    if alias in locations and locations[alias].protocol == protocol:
        return locations[alias].backend
    return next((loc.backend for loc in locations.values() if loc.protocol == protocol), None)


def follow_task(settings: Settings, locations: dict[str, Location], alias: str,
                protocol: str, built: dict[str, TransferBackend] | None = None,
                ) -> TransferBackend:
    """backend_of_task, or one built for the task's protocol if no alias uses it any
    more (kept in `built` for the next call): a task is followed to its end. BalsamError
    if it cannot be had (a Globus task with no globus_endpoint_id set)."""
    found = backend_of_task(locations, alias, protocol)
    if found is not None:
        return found
    if built is not None and protocol in built:
        return built[protocol]
    if protocol == "globus" and not settings.transfers.globus_endpoint_id:
        raise BalsamError(f"a Globus task of alias {alias!r} cannot be reached: "
                          "transfers.globus_endpoint_id is not set in settings.yml")
    backend = _backend(settings, protocol)
    if built is not None:
        built[protocol] = backend
    return backend
