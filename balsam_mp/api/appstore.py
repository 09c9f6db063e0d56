"""The apps a site has registered: the classes in SITE/apps/*.py (`balsam app sync`),
or one class registered from a script (`MyApp.sync()`), and their removal."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import peewee

from balsam_mp.api.appcheck import check_name, check_site, validate_slots
from balsam_mp.api.query import guarded
from balsam_mp.api.site import transaction
from balsam_mp.db.models import App, Job, utcnow
from balsam_mp.errors import ValidationError
from balsam_mp.settings import Settings


class AppClass:
    """What an app class declares (ApplicationDefinition, in api/appdef.py, adds
    Balsam's methods): the site registers the subclasses of this."""

    description: ClassVar[str] = ""
    transfers: ClassVar[dict[str, dict[str, Any]]] = {}
    site: ClassVar[Any] = None  # Balsam's: optional here, and must name this site
    __app_id__: ClassVar[int | None] = None  # set by sync(), load_by_site(), as in Balsam
    _source_file: ClassVar[str | None] = None  # a class rebuilt from the database


def register(cls: type[AppClass], site_name: str) -> None:
    """Register (or update) one app class, wherever it was defined."""
    source = cls.__dict__.get("_source_file") or _source_of(cls)
    _upsert([_app_row(source, cls, site_name)])


def _app_row(source: str, cls: type[AppClass], site_name: str) -> dict[str, Any]:
    """An app class checked, as its row in the app table."""
    where = f"{source}: app {cls.__name__}"
    check_name(where, cls.__name__)
    check_site(where, cls.site, site_name)
    slots = validate_slots(where, cls.transfers)
    description = cls.description or (cls.__doc__ or "").strip()
    if not isinstance(description, str):
        raise ValidationError(f"{where}: description must be a string")
    return {"name": cls.__name__, "source_file": source, "description": description,
            "transfers": slots, "updated_at": utcnow()}


def _source_of(cls: type) -> str:
    try:
        return inspect.getsourcefile(cls) or "<python>"
    except TypeError:  # defined in an interpreter session
        return "<python>"


def load_app_classes(apps_path: Path) -> dict[str, tuple[Path, type[AppClass]]]:
    """Import every SITE/apps/*.py and collect its app classes (AppClass subclasses)."""
    found: dict[str, tuple[Path, type[AppClass]]] = {}
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
            if issubclass(cls, AppClass) \
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
    rows = [_app_row(str(file), cls, settings.site_name) for file, cls in classes.values()]
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
