"""Apps: Python classes in SITE/apps/*.py with a `transfers` dict of slots."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from balsam_mp.api.paths import check_relative_path, overlap
from balsam_mp.db.models import App, Job, utcnow
from balsam_mp.errors import ValidationError
from balsam_mp.settings import Settings
from balsam_mp.states import DIRECTIONS

SLOT_KEYS = {"required", "direction", "local_path", "description", "recursive"}


class ApplicationDefinition:
    """Subclass this in SITE/apps/*.py to declare an app and its transfer slots.

        class MySim(ApplicationDefinition):
            transfers = {
                "input_file": {"required": True, "direction": "in", "local_path": "input.dat"},
                "result": {"required": True, "direction": "out", "local_path": "out.h5"},
            }
    """

    description: ClassVar[str] = ""
    transfers: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def submit(cls, workdir: Any, *, transfers: dict[str, Any] | None = None,
               tags: dict[str, str] | None = None, parameters: dict[str, Any] | None = None,
               save: bool = True, **more_parameters: Any) -> Any:
        """A job of this app; saved unless save=False (then call `.save()` or pass it to
        `Job.objects.bulk_create`). Extra keywords are parameters, as in Balsam."""
        from balsam_mp.api.job import LAUNCH_FIELDS, Job

        launch = sorted(set(more_parameters) & LAUNCH_FIELDS)
        if launch:
            raise ValidationError(f"{cls.__name__}.submit({launch[0]}=...): {launch[0]} is a "
                                  "Balsam launcher setting; balsam_mp stages files and runs "
                                  "no apps")
        job = Job(workdir=workdir, app=cls.__name__, transfers=transfers, tags=tags,
                  parameters={**(parameters or {}), **more_parameters})
        if save:
            job.save()
        return job

    @classmethod
    def sync(cls) -> Any:
        """Register (or update) this one app in the site's database, as `balsam app sync`
        does for every app; returns its App object."""
        from balsam_mp.api.models import App
        from balsam_mp.api.site import connect

        connect()
        source = inspect.getsourcefile(cls) or "<python>"
        slots = validate_slots(f"{source}: app {cls.__name__}", cls.transfers)
        _upsert([{"name": cls.__name__, "source_file": source,
                  "description": cls.description or (cls.__doc__ or "").strip(),
                  "transfers": slots, "updated_at": utcnow()}])
        return App.objects.get(name=cls.__name__)


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


def load_app_classes(apps_path: Path) -> dict[str, tuple[Path, type[ApplicationDefinition]]]:
    """Import every SITE/apps/*.py and collect its ApplicationDefinition subclasses."""
    found: dict[str, tuple[Path, type[ApplicationDefinition]]] = {}
    for file in sorted(apps_path.glob("*.py")):
        module_name = f"balsam_site_apps.{file.stem}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # the user's file: report it, do not crash
            raise ValidationError(f"{file}: cannot import: {type(exc).__name__}: {exc}") from exc
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ApplicationDefinition) and cls is not ApplicationDefinition \
                    and cls.__module__ == module_name and name == cls.__name__:  # no aliases
                if name in found:
                    raise ValidationError(
                        f"{file}: app {name} is also defined in {found[name][0]}"
                    )
                found[name] = (file, cls)
    return found


def sync_apps(settings: Settings) -> list[str]:
    """Register or update every app of the site; all or nothing."""
    classes = load_app_classes(settings.apps_path)
    rows = []
    for name, (file, cls) in classes.items():
        slots = validate_slots(f"{file}: app {name}", cls.transfers)
        description = cls.description or (cls.__doc__ or "").strip()
        if not isinstance(description, str):
            raise ValidationError(f"{file}: app {name}: description must be a string")
        rows.append({"name": name, "source_file": str(file), "description": description,
                     "transfers": slots, "updated_at": utcnow()})
    _upsert(rows, forget_others=True)
    return sorted(classes)


def _upsert(rows: list[dict[str, Any]], forget_others: bool = False) -> None:
    """Insert or update these apps; with `forget_others` (a sync of all SITE/apps), apps
    gone from there are forgotten unless a job still uses them (its rows name the app)."""
    with App._meta.database.atomic():
        for row in rows:
            App.insert(**row).on_conflict(
                conflict_target=[App.name],
                update={App.source_file: row["source_file"], App.description: row["description"],
                        App.transfers: row["transfers"], App.updated_at: row["updated_at"]},
            ).execute()
        if forget_others:
            App.delete().where(App.name.not_in([row["name"] for row in rows]),
                               App.id.not_in(Job.select(Job.app))).execute()
