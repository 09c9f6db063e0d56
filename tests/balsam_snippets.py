"""Balsam 0.7's documented Python calls, as its user guide, quickstart and
tests/api/test_api.py write them, with only the import line changed (balsam.api ->
balsam_mp.api, balsam.schemas -> balsam_mp.schemas). Written from those pages, not
copied; where a page writes `...` for "other kwargs", the snippet fills in real ones.

Each snippet runs on a fresh site named `site` (Balsam's docs say "polaris", the
quickstart "my-site"), with Balsam's example apps registered: Hello (id 123, the
`app_id=123` of the docs), Sleeper and GeomOpt (no transfer slots: a job starts
STAGED_IN, as in Balsam's tests) and sim.MySimulation (an input and a result slot,
alias `laptop`). `setup` is the test's own preparation, not Balsam's. A snippet
asserts what Balsam promises (its own asserts, or `check`); `raises` is for a call
this site refuses on purpose, with the error the user gets (docs/python-api.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from textwrap import dedent
from typing import Any

from balsam_mp.errors import ValidationError


@dataclass(frozen=True)
class Snippet:
    name: str
    source: str  # Balsam's page and section
    code: str
    check: Callable[[dict[str, Any]], Any] | None = None
    setup: str = ""
    site: str = "polaris"
    raises: tuple[type[BaseException], str] | None = None

    @property
    def source_code(self) -> str:
        return dedent(self.code).strip() + "\n"


def s(name: str, source: str, code: str, **more: Any) -> Snippet:
    return Snippet(name, source, code, **more)


FAILED_FOO = "make(3, 'f', 'FAILED', tags={'experiment': 'foo'}); make(2, 'g', 'RUNNING')"
NO_LAUNCHER = "Balsam launcher setting; balsam_mp stages files and runs no apps"

API = [  # docs/user-guide/api.md
    s("import-everything", "api.md: resources",
      """
      from balsam_mp.api import (
          ApplicationDefinition,
          Job,
          TransferItem,
          EventLog,
      )
      """),
    s("recently-updated", "api.md: resources",
      """
      from datetime import datetime, timedelta

      hour_ago = datetime.utcnow() - timedelta(hours=1)
      recently_updated_jobs = Job.objects.filter(last_update_after=hour_ago)
      """, setup="make(2)", check=lambda ns: ns["recently_updated_jobs"].count() == 2),
    s("create-in-memory", "api.md: Creating",
      """
      j = Job(workdir="test/1", app_id=123)
      assert j.id is None
      j.save()
      assert j.id is not None
      """),
    s("objects-create", "api.md: Creating",
      """
      j = Job.objects.create(workdir="test/1", app_id=123)
      assert j.id is not None
      """),
    s("bulk-create-specs", "api.md: Creating",
      """
      jobs = [Job(**kwargs) for kwargs in job_specs]
      jobs = Job.objects.bulk_create(jobs)
      for job in jobs:
          assert job.id is not None
      """, setup="job_specs = [{'workdir': f'b/{n}', 'app_id': 123} for n in range(5)]"),
    s("save-restart-ready", "api.md: Updating",
      """
      job.state = "RESTART_READY"
      job.save()
      """, setup="job = make(1, state='RUN_DONE')[0]",
      check=lambda ns: Job().objects.get(id=ns["job"].id).state == "RESTART_READY"),
    s("refresh-from-db", "api.md: Updating",
      """
      job.refresh_from_db()
      """, setup="job = make(1)[0]; Job.objects.filter(id=job.id).update(state='RUNNING')",
      check=lambda ns: ns["job"].state == "RUNNING"),
    s("update-num-nodes", "api.md: Updating",
      """
      Job.objects.filter(state="FAILED").update(num_nodes=1, state="RESTART_READY")
      """, setup=FAILED_FOO,
      raises=(ValidationError, "no writable field 'num_nodes'")),
    s("bulk-update-modified", "api.md: Updating",
      """
      Job.objects.bulk_update(modified_jobs)
      """, setup="modified_jobs = make(3)\nfor n, j in enumerate(modified_jobs):\n"
                 "    j.tags = {'n': n}; j.state = 'RUNNING' if n else 'RUN_DONE'",
      check=lambda ns: [(j.state, j.tags) for j in Job().objects.order_by("id")] == [
          ("RUN_DONE", {"n": "0"}), ("RUNNING", {"n": "1"}), ("RUNNING", {"n": "2"})]),
    s("delete-one", "api.md: Deleting",
      """
      job.delete()
      assert job.id is None
      """, setup="job = make(1)[0]"),
    s("delete-failed", "api.md: Deleting",
      """
      Job.objects.filter(state="FAILED").delete()
      """, setup=FAILED_FOO, check=lambda ns: Job().objects.count() == 2),
    s("all", "api.md: All",
      """
      for job in Job.objects.all():
          print(job)
      """, setup="make(2)"),
    s("chained-filters", "api.md: Filter",
      """
      all_jobs = Job.objects.all()
      foo_jobs = all_jobs.filter(tags={"experiment": "foo"})
      failed_foo_jobs = foo_jobs.filter(state="FAILED")

      failed_foo_jobs = Job.objects.filter(
          tags={"experiment": "foo"},
          state="FAILED"
      )
      """, setup=FAILED_FOO, check=lambda ns: ns["failed_foo_jobs"].count() == 3
      and ns["foo_jobs"].filter(state="FAILED").count() == 3),
    s("order-and-slice", "api.md: Order By and Slicing",
      """
      recent = Job.objects.filter(state="FAILED").order_by("-last_update")[0:1000]
      """, setup=FAILED_FOO, check=lambda ns: len(ns["recent"]) == 3),
    s("get-or-errors", "api.md: Get",
      """
      try:
          h2o_job = Job.objects.get(tags={"system": "H2O"})
      except Job.DoesNotExist:
          print("There is no finished H2O job!")
      except Job.MultipleObjectsReturned:
          print("There is more than one finished H2O job!")
      """, setup="make(2, tags={'system': 'H2O'})",
      check=lambda ns: "h2o_job" not in ns),
    s("count-by-state", "api.md: Count",
      """
      for state in ["RUNNING", "JOB_FINISHED"]:
          count = Job.objects.filter(state=state).count()
          print(state, count)
      """, setup=FAILED_FOO),
    s("first", "api.md: First",
      """
      one = Job.objects.filter(state="RUNNING")[0]

      same_thing = Job.objects.filter(state="RUNNING").first()
      """, setup=FAILED_FOO, check=lambda ns: ns["one"] == ns["same_thing"]),
    s("lazy-queries", "api.md: Lazy Query Evaluation",
      """
      failed_jobs = Job.objects.filter(state="FAILED")
      for job in failed_jobs:
          print(job)
      for job in failed_jobs:
          print("Again!", job)
      running_jobs = list(Job.objects.filter(state="RUNNING"))
      """, setup=FAILED_FOO, check=lambda ns: len(ns["running_jobs"]) == 2
      and len(ns["failed_jobs"]) == 3 and bool(ns["failed_jobs"])),
]

# A few jobs moved through the run states (test_api.py's TestEvents scenario).
SCENARIO = """
j1 = Job.objects.create(workdir="foo/1", app_id=app.id, tags={"experiment": "foo"})
j2 = Job.objects.create(workdir="foo/2", app_id=app.id)
j3 = Job.objects.create(workdir="foo/3", app_id=app.id)
j1.state = "PREPROCESSED"; j1.save()
j2.state = "PREPROCESSED"; j2.save()
j2.state = "RUNNING"; j2.save()
j2.state = "RUN_ERROR"; j2.save()
j3.state = "PREPROCESSED"; j3.save()
j3.state = "RUNNING"; j3.save()
j3.state = "RUN_DONE"
j3.state_data = {"message": "OK: done!"}
j3.save()
"""


def Job() -> Any:  # noqa: N802 (the API's Job, for checks that run after a snippet)
    from balsam_mp.api import Job as job_class

    return job_class
