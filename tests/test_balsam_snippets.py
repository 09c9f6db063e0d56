"""Balsam 0.7 scripts run here with their import line changed: every snippet of
tests/balsam_snippets*.py runs on a real site database and asserts what Balsam
promises; refused calls give the error docs/python-api.md lists. The hostile cases of
the same calls follow (test_balsam_hostile.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from balsam_mp import api, db
from balsam_mp.api import App, ApplicationDefinition, EventLog, Job, TransferItem
from balsam_mp.site.layout import init_site
from tests.balsam_snippets import API
from tests.balsam_snippets_jobs import JOBS
from tests.balsam_snippets_more import APPDEF, MONITORING, QUICKSTART, TRANSFER
from tests.balsam_snippets_test_api import TEST_API

ALL = API + JOBS + APPDEF + TRANSFER + MONITORING + QUICKSTART + TEST_API

APPS = '''
from balsam_mp.api import ApplicationDefinition


class Hello(ApplicationDefinition):
    site = "{site}"
    command_template = "echo Hello, {{{{ say_hello_to }}}}!"


class Sleeper(ApplicationDefinition):
    site = "{site}"
    command_template = "sleep {{{{ sleeptime }}}} && echo goodbye"


class GeomOpt(ApplicationDefinition):
    site = "{site}"
    command_template = "/path/nwchem-runner {{{{ method }}}} {{{{ geometry }}}}"
'''

SIM = '''
from balsam_mp.api import ApplicationDefinition


class MySimulation(ApplicationDefinition):
    transfers = {
        "input_file": {"required": True, "direction": "in", "local_path": "input.nw",
                       "description": "Input Deck", "recursive": False},
        "result": {"required": True, "direction": "out", "local_path": "job.out",
                   "description": "Calculation stdout", "recursive": False},
    }
'''


def balsam_site(tmp_path: Path, name: str, database_url: str | None = None) -> Any:
    """A site named `name` with Balsam's example apps; Hello is app 123."""
    settings = init_site(tmp_path / "site", name=name, database_url=database_url)
    for stale in settings.apps_path.glob("*.py"):
        stale.unlink()
    (settings.apps_path / "hello.py").write_text(APPS.format(site=name))
    (settings.apps_path / "sim.py").write_text(SIM)
    api.use_site(settings.site_path)
    App.sync()
    db.App.update(id=123).where(db.App.name == "Hello").execute()  # the docs' app_id=123
    return settings


def namespace() -> dict[str, Any]:
    """What a Balsam script has after its imports and app definitions."""
    def make(n: int = 1, prefix: str = "e", state: str | None = None,
             tags: dict[str, Any] | None = None) -> list[Job]:
        jobs = Job.objects.bulk_create([Job(workdir=f"{prefix}/{i}", app_id=123,
                                            tags=tags or {}) for i in range(n)])
        if state:
            Job.objects.filter(id=[j.id for j in jobs]).update(state=state)
            Job.objects.bulk_refresh(jobs)
        return jobs

    ns: dict[str, Any] = {"__name__": "balsam_snippet", "Job": Job, "App": App,
                          "EventLog": EventLog, "TransferItem": TransferItem,
                          "ApplicationDefinition": ApplicationDefinition, "make": make,
                          "app": App.objects.get(name="GeomOpt")}
    ns.update(ApplicationDefinition.load_by_site(api.current_settings().site_name))
    return ns


@pytest.mark.engines
@pytest.mark.parametrize("snippet", ALL, ids=[snippet.name for snippet in ALL])
def test_balsam_snippet(snippet, tmp_path, monkeypatch, database_url, capsys):
    monkeypatch.delenv("BALSAM_SITE_NAME", raising=False)
    balsam_site(tmp_path, snippet.site, database_url)
    monkeypatch.setenv("BALSAM_SITE_PATH", str(api.current_settings().site_path))
    try:
        ns = namespace()
        exec(compile(snippet.setup, "<setup>", "exec"), ns)  # noqa: S102 (the test's own)
        code = compile(snippet.source_code, f"<{snippet.source}>", "exec")
        if snippet.raises:
            error, message = snippet.raises
            with pytest.raises(error, match=message) as caught:
                exec(code, ns)  # noqa: S102 (Balsam's documented snippet)
            assert "Traceback" not in str(caught.value)
        else:
            exec(code, ns)  # noqa: S102 (Balsam's documented snippet)
            if snippet.check is not None:
                assert snippet.check(ns), snippet.name
    finally:
        api.close()


def test_the_snippets_are_many_and_distinct():
    assert len(ALL) >= 45
    assert len({snippet.name for snippet in ALL}) == len(ALL)
    for snippet in ALL:  # Balsam's import line, changed, and nothing else of Balsam's
        assert "balsam.api" not in snippet.code and "balsam.schemas" not in snippet.code
        assert not re.search(r"\bimport balsam\b", snippet.code)
