"""Balsam's input forms, checked and turned into what `create_jobs` takes."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from balsam_mp.api.appcheck import check_site, validate_slots
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


def app_name(where: str, job: Any, apps: dict[int, str], stems: dict[str, str],
             site_name: str, slots: dict[str, Any] | None = None) -> str:
    """The name of the app a job names, in any of Balsam's ways: app_id= an id, a name,
    an ApplicationDefinition subclass or an App; app_name= "Class" or "module.Class";
    app= (ours) a name. All that are given must agree. `apps`: id -> name of the
    registered apps; `stems`: name -> the module (file stem) it was registered from; an
    app class whose `site` names another site is refused, whatever is registered here."""
    given = [(key, value) for key, value in (("app_id", job.app_id), ("app", job.app),
                                             ("app_name", getattr(job, "_app_name", None)))
             if value is not None]
    if not given:
        raise ValidationError(f"{where}: give app_id (an app's id, name or class), app_name "
                              "or app")
    names = {key: _one_app(f"{where}: {key}", value, apps, stems, site_name, slots)
             for key, value in given}
    if len(set(names.values())) > 1:
        shown_ = ", ".join(f"{key} is {name}" for key, name in names.items())
        raise ValidationError(f"{where}: these name different apps ({shown_})")
    return next(iter(names.values()))


def _one_app(what: str, value: Any, apps: dict[int, str], stems: dict[str, str],
             site_name: str, slots: dict[str, Any] | None = None) -> str:
    def known() -> str:
        return ", ".join(f"{name} (id {i}, {stems[name]}.{name})"
                         for i, name in sorted(apps.items())) or \
            "none; run `balsam app sync` or MyApp.sync()"

    if isinstance(value, bool):
        raise ValidationError(f"{what}: {value!r} is not an app")
    if isinstance(value, int):
        if value not in apps:
            raise ValidationError(f"{what}: unknown app id {value} (registered: {known()})")
        return apps[value]
    if isinstance(value, type):  # an ApplicationDefinition subclass
        name = value.__name__
        check_site(f"{what}: app class {name}", getattr(value, "site", None), site_name)
        if name not in stems:
            raise ValidationError(f"{what}: app class {name} is not registered at this site: "
                                  f"call {name}.sync() first (registered: {known()})")
        if slots is not None and name in slots and \
                _moves(validate_slots(f"{what}: app class {name}", value.transfers)) != \
                _moves(slots[name]):  # another class of that name: not silently that one
            raise ValidationError(
                f"{what}: app class {name} is not the registered {name} "
                f"({stems[name]}.{name}): their transfer slots differ; call {name}.sync() "
                "to register this class, or name the registered app by its name")
        return name
    if not isinstance(value, str):  # an App object: its name
        name = getattr(value, "name", None)
        if not isinstance(name, str):
            raise ValidationError(f"{what}: {value!r} is not an app id, name, class or App")
        value = name
    module, dot, name = value.rpartition(".")
    if name in stems and (not dot or module == stems[name]):
        return name
    if name in stems:
        raise ValidationError(f"{what}: {value!r}: app {name} is registered from module "
                              f"{stems[name]!r} (class path {stems[name]}.{name})")
    raise ValidationError(f"{what}: unknown app {value!r} (registered: {known()})")


def _moves(slots: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What an app's slots make a job move (their descriptions aside)."""
    return {name: (slot["direction"], slot["local_path"], slot["required"], slot["recursive"])
            for name, slot in slots.items()}


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
