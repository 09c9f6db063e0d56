"""Shared fixtures: a fresh site per test, bound to the Python API."""

from __future__ import annotations

from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.site.layout import init_site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A new site with its example app synced; the API points at it."""
    settings = init_site(tmp_path / "site")
    monkeypatch.setenv("BALSAM_SITE_PATH", str(settings.site_path))
    api.use_site(settings.site_path)
    api.App.sync()
    yield api.current_settings()
    api.close()


@pytest.fixture
def remote_files(tmp_path: Path):
    """Make files under tmp/remote and return a function that creates more."""
    root = tmp_path / "remote"
    root.mkdir()

    def make(name: str, content: str = "data") -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    make.root = root  # type: ignore[attr-defined]
    return make
