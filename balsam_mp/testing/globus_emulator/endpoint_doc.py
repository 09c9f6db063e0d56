"""GET /endpoint/<id>: the endpoint (collection) document, every field Globus records.

The emulator's endpoints are GCSv5 mapped collections: each maps one folder, needs a
data_access consent and hosts no guest collections. The fields are those of
globus-sdk's recorded get_endpoint response; docs/emulator.md says where each value
comes from.
"""

from __future__ import annotations

from balsam_mp.testing.globus_emulator.request import ApiError, Request
from balsam_mp.testing.globus_emulator.state import Emulator
from balsam_mp.testing.globus_emulator.task import username_of

ORGANIZATION = "balsam_mp emulator"  # who runs these collections

# What a GCSv5 mapped collection shows for what it does not have or do:
# GCSv4-only and Globus Connect Personal-only fields null or false, no server documents
# (GCSv5 collections have none: they are GridFTP servers' documents), no sharing.
ABSENT: dict = {
    "description": None,
    "public": False,
    "french_english_bilingual": False,
    "is_globus_connect": False,  # true only for Globus Connect Personal
    "globus_connect_setup_key": None,  # Globus Connect Personal only
    "gcp_connected": None,
    "gcp_paused": None,
    "s3_url": None,  # deprecated, always null
    "s3_owner_activated": False,  # deprecated, always false
    "host_endpoint_id": None,  # null unless a guest (shared) collection
    "host_path": None,
    "disable_verify": False,  # the emulator verifies checksums when asked
    "disable_anonymous_writes": False,
    "force_verify": False,  # it verifies only when asked
    "force_encryption": False,  # it does not require encrypt_data
    "mfa_required": False,
    "myproxy_server": None,  # GCSv4 only
    "myproxy_dn": None,
    "non_functional": False,  # a collection, not a GCSv5 endpoint
    "non_functional_endpoint_display_name": None,  # no GCSv5 endpoint entity modelled
    "non_functional_endpoint_id": None,
    "oauth_server": None,  # GCSv4 only
    "default_directory": None,  # none set
    "activated": False,  # GCSv4 only: GCSv5 collections use consents instead
    "expires_in": -1,  # GCSv4 activation only
    "expire_time": None,
    "shareable": False,  # no guest collections modelled
    "acl_available": False,  # ACLs belong to guest collections
    "acl_editable": False,
    "in_use": False,
}


def get_endpoint(emu: Emulator, req: Request) -> dict:
    endpoint = req.params["endpoint_id"]
    if endpoint not in emu.engine.endpoints:
        raise ApiError(404, "EndpointNotFound", f"endpoint {endpoint} not found")
    # the emulator's one person (who logs in through /authorize) owns its collections
    return {"DATA_TYPE": "endpoint", "id": endpoint,
            "display_name": emu.engine.display_names[endpoint],
            "organization": ORGANIZATION, "username": username_of(emu.user_identity),
            "entity_type": "GCSv5_mapped_collection", **ABSENT, "DATA": []}
