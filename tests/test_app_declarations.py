"""Every way of declaring an app, after the api split (appcheck/appstore/appdef):
app files in SITE/apps with intermediate base classes, aliases and imports of other
apps' classes, `MyApp.sync()` from a script, the loaders, and submit."""

from __future__ import annotations

import textwrap

import pytest

from balsam_mp import api
from balsam_mp.api import App, ApplicationDefinition, Job

SLOT = {"direction": "in", "local_path": "in.dat", "required": True}


def write_app(site, name: str, text: str) -> None:
    (site.apps_path / f"{name}.py").write_text(textwrap.dedent(text))


def test_app_files_with_bases_aliases_and_imports_register_each_class_once(site):
    write_app(site, "base", """
        from balsam_mp.api import ApplicationDefinition

        class Stager(ApplicationDefinition):
            '''a base with a slot'''
            transfers = {"inp": {"direction": "in", "local_path": "in.dat", "required": True}}

        class Derived(Stager):
            description = "derived"

        Alias = Derived
    """)
    write_app(site, "other", """
        from balsam_site_apps.base import Derived
        from balsam_mp.api import ApplicationDefinition as AD

        class Other(Derived):
            pass
    """)
    App.sync()
    names = sorted(app.name for app in App.objects.all())
    assert {"Stager", "Derived", "Other"} <= set(names)
    assert "Alias" not in names and "ApplicationDefinition" not in names and "AD" not in names
    derived = App.objects.get(name="Derived")
    assert derived.description == "derived" and set(derived.transfers) == {"inp"}
    assert App.objects.get(name="Stager").description == "a base with a slot"
    assert App.objects.get(name="Other").source_file.endswith("other.py")


def test_a_script_app_syncs_loads_and_submits(site):
    class ScriptApp(ApplicationDefinition):
        transfers = {"inp": SLOT}

    app = ScriptApp.sync()
    assert app.name == "ScriptApp" and ScriptApp.__app_id__ == app.id
    loaded = ApplicationDefinition.load_by_site(site.site_name)["ScriptApp"]
    assert issubclass(loaded, ApplicationDefinition) and loaded.__app_id__ == app.id
    assert ApplicationDefinition.load_by_name("ScriptApp").__app_id__ == app.id
    job = loaded.submit("w1", transfers={"inp": "laptop:/in/1.dat"})
    assert Job.objects.get(id=job.id).app_id == app.id
    loaded.sync()  # a loaded class syncs again, keeping where it came from
    assert App.objects.get(name="ScriptApp").source_file == app.source_file

    class Later(loaded):  # a subclass of a loaded class is an app of its own
        pass

    later = Later.submit("w2", transfers={"inp": "laptop:/in/2.dat"})
    assert Job.objects.get(id=later.id).app_id == App.objects.get(name="Later").id


def test_a_class_never_synced_is_registered_by_its_first_submit(site):
    class Fresh(ApplicationDefinition):
        transfers = {"inp": SLOT}

    job = Fresh.submit("w", transfers={"inp": "laptop:/in/1.dat"})
    assert Job.objects.get(id=job.id).app_id == App.objects.get(name="Fresh").id


def test_a_loader_naming_another_site_is_refused(site):
    with pytest.raises(api.ValidationError):
        ApplicationDefinition.load_by_site("not-this-site")
    with pytest.raises(api.ValidationError):
        ApplicationDefinition.load_by_name("MySim", "not-this-site")
    with pytest.raises(App.DoesNotExist):
        ApplicationDefinition.load_by_name("NoSuchApp")
