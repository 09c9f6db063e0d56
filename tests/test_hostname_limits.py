"""$BALSAM_HOSTNAME at its limits: every name the check accepts names this host's
runtime files (pidfile, supervisor lock, workers' ready files, crash notes) within the
file system's 255 bytes, and a PostgreSQL site runs on two such "hosts"."""

from __future__ import annotations

import pytest

from balsam_mp import states
from balsam_mp.site.pidfile import HOST_ENV, HOST_NAME
from tests.conftest import wait_for
from tests.test_standby import booted, host_pidfile


def longest_accepted() -> str:
    """The longest $BALSAM_HOSTNAME the check lets through (from its own pattern)."""
    for length in range(300, 0, -1):
        if HOST_NAME.fullmatch("a" * length):
            return "a" * length
    raise AssertionError("no host name is accepted")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_the_longest_accepted_host_names_run_a_postgres_site_on_two_hosts(sitekit):
    kit = sitekit()
    long_name = longest_accepted()
    first, second = long_name, "b" + long_name[1:]
    envs = [dict(kit.env, **{HOST_ENV: name}) for name in (first, second)]
    jobs = kit.make_jobs(3, stage_out=False)
    try:
        kit.start(env=envs[0])
        wait_for(lambda: booted(kit, first), what="the first host's workers")
        assert "started on standby" in kit.start(env=envs[1]).stdout
        kit.wait_jobs(jobs, states.STAGED_IN, timeout=60)
        assert first in kit.balsam("site", "status", env=envs[0]).stdout
    finally:
        for env in envs:
            kit.balsam("site", "stop", env=env, check=False)
    assert host_pidfile(kit, first) == {} and host_pidfile(kit, second) == {}
