"""Checks of an app's declaration: its name, its site, its transfer slots."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from balsam_mp.api.paths import check_relative_path, overlap
from balsam_mp.errors import ValidationError
from balsam_mp.states import DIRECTIONS

SLOT_KEYS = {"required", "direction", "local_path", "description", "recursive"}

def check_name(where: str, name: str) -> None:
    """An app's name is its class's name, a Python identifier: a job names it as
    "Name" or "module.Name", so "x.y", "" or "2" could never be named (or would read as
    another app's id)."""
    if not name.isidentifier():
        raise ValidationError(f"{where}: {name!r} is not a Python class name; an app's name "
                              "must be one (jobs name the app by it)")


def check_site(where: str, site: Any, this_site: str) -> None:
    """Balsam names an app's (or a job's) site; balsam_mp serves one site: None (no site
    attribute) or this site's name pass, anything else is refused with the reason."""
    if site is None or site == this_site:
        return
    if isinstance(site, str):
        raise ValidationError(f"{where}: site {site!r} is not this site ({this_site!r}); "
                              "balsam_mp serves one site: name it, or leave the site out")
    raise ValidationError(f"{where}: site {site!r} is not this site's name ({this_site!r}); "
                          "sites here are named, not numbered")


def validate_slots(where: str, transfers: Any) -> dict[str, dict[str, Any]]:
    """Check an app's slots; return them with defaults filled in."""
    if not isinstance(transfers, dict):
        raise ValidationError(f"{where}: transfers must be a dict of slot name -> spec")
    slots = {}
    for name, spec in transfers.items():
        at = f"{where}: slot {name!r}"
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError(f"{at}: slot names must be identifiers")
        if not isinstance(spec, dict):
            raise ValidationError(f"{at}: spec must be a dict")
        unknown = set(spec) - SLOT_KEYS
        if unknown:
            raise ValidationError(f"{at}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        direction = spec.get("direction")
        if direction not in DIRECTIONS:
            raise ValidationError(f"{at}: direction must be 'in' or 'out', got {direction!r}")
        # stored normalized: './' means '.' (keep the remote name), not the workdir itself
        local_path = check_relative_path(f"{at}: local_path",
                                         spec.get("local_path", ".")).as_posix()
        for flag in ("required", "recursive"):
            if not isinstance(spec.get(flag, False), bool):
                raise ValidationError(f"{at}: {flag} must be true or false")
        if not isinstance(spec.get("description", ""), str):
            raise ValidationError(f"{at}: description must be a string")
        slots[name] = {
            "direction": direction,
            "local_path": local_path,
            "required": spec.get("required", False),
            "recursive": spec.get("recursive", False),
            "description": spec.get("description", ""),
        }
    for direction in DIRECTIONS:
        named = {name: PurePosixPath(slot["local_path"]) for name, slot in slots.items()
                 if slot["direction"] == direction and slot["local_path"] != "."}
        clash = overlap(named)
        if clash:
            a, b = clash
            same = named[a] == named[b]
            raise ValidationError(
                f"{where}: stage-{direction} slots {a!r} and {b!r} overlap: local_path "
                f"{named[a].as_posix()!r} {'is also' if same else 'contains'} "
                f"{named[b].as_posix()!r}")
    return slots
