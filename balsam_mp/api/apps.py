"""Apps: Python classes in SITE/apps/*.py with a `transfers` dict of slots."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import peewee

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
    site: ClassVar[Any] = None  # Balsam's: optional here, and must name this site
    __app_id__: ClassVar[int | None] = None  # set by sync(), load_by_site(), as in Balsam
    _source_file: ClassVar[str | None] = None  # a class rebuilt from the database

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
        from balsam_mp.api.site import current_settings

        check_site(f"{cls.__name__}.submit", cls.site, current_settings().site_name)
        if cls.__dict__.get("__app_id__") is None:  # as Balsam: an app not synced yet is
            from balsam_mp.api.models import App

            if not App.objects.filter(name=cls.__name__).exists():
                cls.sync()  # registered by its first submit
        job = Job(workdir=workdir, app_id=cls, transfers=transfers, tags=tags,
                  parameters={**(parameters or {}), **more_parameters})
        if save:
            job.save()
        return job

    @classmethod
    def sync(cls) -> Any:
        """Register (or update) this one app in the site's database, as `balsam app sync`
        does for every app; returns its App object. It stays registered until removed
        (`balsam app rm -n NAME`, `App.objects.get(name=...).delete()`)."""
        from balsam_mp.api.models import App
        from balsam_mp.api.site import connect, current_settings

        connect()
        source = cls.__dict__.get("_source_file") or _source_of(cls)
        where = f"{source}: app {cls.__name__}"
        check_name(where, cls.__name__)
        check_site(where, cls.site, current_settings().site_name)
        slots = validate_slots(where, cls.transfers)
        _upsert([{"name": cls.__name__, "source_file": source,
                  "description": cls.description or (cls.__doc__ or "").strip(),
                  "transfers": slots, "updated_at": utcnow()}])
        app = App.objects.get(name=cls.__name__)
        cls.__app_id__ = app.id
        return app

    @staticmethod
    def load_by_site(site: Any) -> dict[str, type[ApplicationDefinition]]:
        """Balsam's: the apps registered at `site` (this site's name), by name, as
        classes to submit jobs with (or to sync again)."""
        from balsam_mp.api.models import App
        from balsam_mp.api.site import current_settings

        check_site("load_by_site", site, current_settings().site_name)
        return {app.name: app_class(app) for app in App.objects.order_by("name")}

    @classmethod
    def load_by_name(cls, app_name: str, site_name: str | None = None
                     ) -> type[ApplicationDefinition]:
        """Balsam's: one registered app as a class (App.DoesNotExist if none)."""
        from balsam_mp.api.models import App
        from balsam_mp.api.site import current_settings

        if site_name is not None:
            check_site("load_by_name", site_name, current_settings().site_name)
        return app_class(App.objects.get(name=app_name))


def _source_of(cls: type) -> str:
    try:
        return inspect.getsourcefile(cls) or "<python>"
    except TypeError:  # defined in an interpreter session
        return "<python>"


def app_class(app: Any) -> type[ApplicationDefinition]:
    """A registered App as an ApplicationDefinition subclass (what Balsam's loaders give)."""
    return type(app.name, (ApplicationDefinition,), {
        "__doc__": app.description, "description": app.description,
        "transfers": app.transfers, "__app_id__": app.id, "_source_file": app.source_file,
        "__module__": Path(app.source_file).stem or "balsam_site_apps"})


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
        check_name(f"{file}: app {name}", name)
        check_site(f"{file}: app {name}", getattr(cls, "site", None), settings.site_name)
        slots = validate_slots(f"{file}: app {name}", cls.transfers)
        description = cls.description or (cls.__doc__ or "").strip()
        if not isinstance(description, str):
            raise ValidationError(f"{file}: app {name}: description must be a string")
        rows.append({"name": name, "source_file": str(file), "description": description,
                     "transfers": slots, "updated_at": utcnow()})
    _upsert(rows, forget_from=settings.apps_path)
    return sorted(classes)


def _upsert(rows: list[dict[str, Any]], forget_from: Path | None = None) -> None:
    """Insert or update these apps; with `forget_from` (a sync of all SITE/apps), apps
    that came from a file there and are no longer defined there are forgotten unless a
    job still uses them. Apps registered from elsewhere (`MyApp.sync()` in a script or a
    notebook) stay until removed."""
    with App._meta.database.atomic():
        for row in rows:
            App.insert(**row).on_conflict(
                conflict_target=[App.name],
                update={App.source_file: row["source_file"], App.description: row["description"],
                        App.transfers: row["transfers"], App.updated_at: row["updated_at"]},
            ).execute()
        if forget_from is not None:
            folder = os.path.realpath(forget_from)
            kept = {row["name"] for row in rows}
            gone = [app_id for app_id, name, source in
                    App.select(App.id, App.name, App.source_file).tuples()
                    if name not in kept and os.path.isabs(source)
                    and os.path.dirname(os.path.realpath(source)) == folder]
            if gone:
                App.delete().where(App.id.in_(gone),
                                   App.id.not_in(Job.select(Job.app))).execute()


def remove_apps(app_ids: list[int]) -> int:
    """Forget these apps (`balsam app rm`, App.delete()); all or none, refused while a
    job uses one of them. Returns how many were removed."""
    from balsam_mp.api.query import guarded
    from balsam_mp.api.site import transaction

    def remove() -> int:
        used = list(App.select(App.name, peewee.fn.COUNT(Job.id)).join(Job).where(
            App.id.in_(app_ids)).group_by(App.name).order_by(App.name).tuples())
        if used:
            name, count = used[0]
            raise ValidationError(f"app {name} is used by {count} job(s) (`balsam job ls "
                                  f"--app {name}`); delete them first")
        return App.delete().where(App.id.in_(app_ids)).execute()

    if not app_ids:
        return 0
    with transaction():
        return guarded(remove)
