"""ApplicationDefinition: what users subclass to declare an app, with Balsam's methods
(submit, sync, load_by_site, load_by_name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from balsam_mp.api import appstore
from balsam_mp.api.appcheck import check_site
from balsam_mp.api.job import LAUNCH_FIELDS, Job
from balsam_mp.api.models import App
from balsam_mp.api.site import connect, current_settings
from balsam_mp.errors import ValidationError


class ApplicationDefinition(appstore.AppClass):
    """Subclass this in SITE/apps/*.py to declare an app and its transfer slots.

        class MySim(ApplicationDefinition):
            transfers = {
                "input_file": {"required": True, "direction": "in", "local_path": "input.dat"},
                "result": {"required": True, "direction": "out", "local_path": "out.h5"},
            }
    """

    @classmethod
    def submit(cls, workdir: Any, *, transfers: dict[str, Any] | None = None,
               tags: dict[str, str] | None = None, parameters: dict[str, Any] | None = None,
               save: bool = True, **more_parameters: Any) -> Any:
        """A job of this app; saved unless save=False (then call `.save()` or pass it to
        `Job.objects.bulk_create`). Extra keywords are parameters, as in Balsam."""
        launch = sorted(set(more_parameters) & LAUNCH_FIELDS)
        if launch:
            raise ValidationError(f"{cls.__name__}.submit({launch[0]}=...): {launch[0]} is a "
                                  "Balsam launcher setting; balsam_mp stages files and runs "
                                  "no apps")
        check_site(f"{cls.__name__}.submit", cls.site, current_settings().site_name)
        if cls.__dict__.get("__app_id__") is None:  # as Balsam: an app not synced yet is
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
        connect()
        appstore.register(cls, current_settings().site_name)
        app = App.objects.get(name=cls.__name__)
        cls.__app_id__ = app.id
        return app

    @staticmethod
    def load_by_site(site: Any) -> dict[str, type[ApplicationDefinition]]:
        """Balsam's: the apps registered at `site` (this site's name), by name, as
        classes to submit jobs with (or to sync again)."""
        check_site("load_by_site", site, current_settings().site_name)
        return {app.name: app_class(app) for app in App.objects.order_by("name")}

    @classmethod
    def load_by_name(cls, app_name: str, site_name: str | None = None
                     ) -> type[ApplicationDefinition]:
        """Balsam's: one registered app as a class (App.DoesNotExist if none)."""
        if site_name is not None:
            check_site("load_by_name", site_name, current_settings().site_name)
        return app_class(App.objects.get(name=app_name))


def app_class(app: Any) -> type[ApplicationDefinition]:
    """A registered App as an ApplicationDefinition subclass (what Balsam's loaders give)."""
    return type(app.name, (ApplicationDefinition,), {
        "__doc__": app.description, "description": app.description,
        "transfers": app.transfers, "__app_id__": app.id, "_source_file": app.source_file,
        "__module__": Path(app.source_file).stem or "balsam_site_apps"})
