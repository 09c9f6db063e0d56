"""Balsam's input forms, checked and turned into what `create_jobs` takes."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from balsam_mp.api.jobspec import check_json, check_tags
from balsam_mp.errors import ValidationError


def _job(job: object) -> str:
    return job if isinstance(job, str) and job.startswith("job") else f"job {job}"


def mapping(job: object, name: str, value: Any) -> dict[str, Any]:
    """tags (strings to strings, as in Balsam), parameters and state_data (plain JSON)."""
    what = f"{_job(job)}: {name}"
    if not isinstance(value, dict):
        raise ValidationError(f"{what} must be a mapping, not {value!r}")
    if name == "tags":
        return check_tags(what, value)
    check_json(what, value)
    return value


def app_name(where: str, job: Any, apps: dict[int, str]) -> str:
    name = job.app
    if name is not None and not isinstance(name, str):
        name = getattr(name, "name", None) or getattr(name, "__name__", None)  # App, class
        if not isinstance(name, str):
            raise ValidationError(f"{where}: app must be an app's name, not {job.app!r}")
    if job.app_id is not None:
        if isinstance(job.app_id, bool) or not isinstance(job.app_id, int) \
                or job.app_id not in apps:
            known = ", ".join(f"{i} ({n})" for i, n in sorted(apps.items())) or "none"
            raise ValidationError(f"{where}: app_id {job.app_id!r} is not a registered app "
                                  f"(apps: {known})")
        if name is not None and name != apps[job.app_id]:
            raise ValidationError(f"{where}: app_id {job.app_id} is {apps[job.app_id]}, "
                                  f"not app {name!r}")
        return apps[job.app_id]
    if name is None:
        raise ValidationError(f"{where}: give app_id (an app's id) or app (its name)")
    return name


def workdir_text(where: str, workdir: Any) -> Any:
    if workdir is None:
        raise ValidationError(f"{where}: workdir is missing")
    return workdir.as_posix() if isinstance(workdir, PurePath) else workdir


def transfer_texts(where: str, transfers: Any) -> dict[str, Any]:
    """slot -> "alias:/path", from either form: the string, or Balsam's
    {"location_alias": ..., "path": ...}. Strings are checked by create_jobs."""
    if not isinstance(transfers, dict):
        raise ValidationError(f"{where}: transfers must be a mapping of slot -> location, "
                              f"not {transfers!r}")
    out = {}
    for slot, value in transfers.items():
        if isinstance(value, dict):
            path = value.get("path")
            path = path.as_posix() if isinstance(path, PurePath) else path
            alias = value.get("location_alias")
            if set(value) != {"location_alias", "path"} or not isinstance(alias, str) \
                    or not isinstance(path, str):
                raise ValidationError(
                    f"{where}: slot {slot!r}: {value!r} is not {{'location_alias': str, "
                    "'path': str}")
            value = f"{alias}:{path}"
        out[slot] = value
    return out
