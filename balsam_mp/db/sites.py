"""What a site publishes in its database for clients that do not have its directory.

A client on another machine (`api.use_database(url, site=...)`) validates jobs against
the site's synced apps and trusted aliases and writes the site's absolute paths into
them; the site writes both here at `site init`, `app sync`, and whenever its workers
start (`site start`, `site sync`).
"""

from __future__ import annotations

import json
from typing import Any

from balsam_mp.db.models import Meta

KEY = "published_settings"


def publish(site_path: str, transfer_locations: dict[str, str]) -> None:
    value = json.dumps({"site_path": site_path, "transfer_locations": transfer_locations},
                       sort_keys=True)
    with Meta._meta.database.atomic():
        Meta.insert(key=KEY, value=value).on_conflict(
            conflict_target=[Meta.key], preserve=[Meta.value]).execute()


def published() -> dict[str, Any] | None:
    row = Meta.get_or_none(Meta.key == KEY)
    return None if row is None else json.loads(row.value)

