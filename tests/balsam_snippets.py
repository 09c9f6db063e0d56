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

import concurrent.futures
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

JOBS = [  # docs/user-guide/jobs.md
    s("job-app-id-123", "jobs.md: API Job Creation",
      """
      job = Job(app_id=123, workdir="test/1", parameters={"name": "world!"})
      job.save()
      """, check=lambda ns: ns["job"].app == "Hello" and ns["job"].state == "STAGED_IN"),
    s("job-app-name-site-name", "jobs.md: API Job Creation",
      """
      job = Job(
          app_id="Hello",
          site_name="polaris",
          workdir="test/1",
          parameters={"name": "world!"}
      )
      job.save()
      """, check=lambda ns: ns["job"].app_id == 123),
    s("objects-create-123", "jobs.md: API Job Creation",
      """
      job = Job.objects.create(app_id=123, workdir="test/1")
      """, check=lambda ns: ns["job"].id is not None),
    s("bulk-create-ten", "jobs.md: API Job Creation",
      """
      jobs = [
          Job(app_id=123, workdir=f"test/{n}", parameters={"name": f"world {n}!"})
          for n in range(10)
      ]
      jobs = Job.objects.bulk_create(jobs)
      """, check=lambda ns: Job().objects.filter(app_id=123).count() == 10),
    s("hello-submit", "jobs.md: API Job Creation",
      """
      job = Hello.submit(workdir="test/123", name="world!")
      """, check=lambda ns: ns["job"].get_parameters() == {"name": "world!"}),
    s("hello-submit-bulk", "jobs.md: API Job Creation",
      """
      jobs = [
          Hello.submit(workdir=f"test/{n}", say_hello_to=f"world {n}!", save=False)
          for n in range(10)
      ]
      jobs = Job.objects.bulk_create(jobs) # efficient creation
      """, check=lambda ns: all(j.id for j in ns["jobs"])),
    s("tags-create-and-filter", "jobs.md: Tagging Jobs",
      """
      Job.objects.create(
          app_id=123, workdir="tagged/1",
          tags={"experiment": "foo", "system": "H2O", "run": "5"}
      )
      for job in Job.objects.filter(tags={"experiment": "foo"}):
          if job.state == "JOB_FINISHED":
              print("Finished:", job.workdir)
      """, check=lambda ns: Job().objects.filter(tags={"run": "5"}).count() == 1),
    s("create-with-data", "jobs.md: Associating Data with Jobs",
      """
      Job.objects.create(
          app_id=123, workdir="d/1",
          data={"retry_count": 0, "input_coords": coords}
      )
      """, setup="coords = [0.0, 1.0]", raises=(ValidationError, "data is a " + NO_LAUNCHER)),
    s("create-with-transfers", "jobs.md: Data Transfer",
      """
      Job.objects.create(
          app_id=mysim_id, workdir="x/1",
          transfers={
              # Using 'laptop' alias defined in settings.yml
              "input_file": "laptop:/path/to/input.dat",
              "result": "laptop:/path/to/output.json",
          },
      )
      """, setup="mysim_id = App.objects.get(name='MySimulation').id",
      check=lambda ns: Job().objects.get().state == "READY"),
    s("filter-state-and-tags", "jobs.md: Querying Jobs",
      """
      failed = Job.objects.filter(state="FAILED", tags={"experiment": "foo"})
      """, setup=FAILED_FOO, check=lambda ns: ns["failed"].count() == 3),
    s("slices", "jobs.md: Filtering Examples",
      """
      all_jobs = Job.objects.all()
      some_jobs = all_jobs[5:15]
      """, setup="make(20)",
      check=lambda ns: [j.id for j in ns["some_jobs"]] == list(range(6, 16))),
    s("count-running", "jobs.md: Filtering Examples",
      """
      n_running = Job.objects.filter(state="RUNNING").count()
      """, setup=FAILED_FOO, check=lambda ns: ns["n_running"] == 2),
    s("ten-most-recent", "jobs.md: Filtering Examples",
      """
      ten_most_recent_finished = Job.objects.filter(
          state="JOB_FINISHED"
      ).order_by("-last_update")[:10]
      """, check=lambda ns: list(ns["ten_most_recent_finished"]) == []),
    s("site-config-workdir", "jobs.md: Resolving the Workdir",
      """
      from balsam_mp.api import site_config

      abs_workdir = job.resolve_workdir(site_config.data_path)
      """, setup="job = make(1)[0]", check=lambda ns: ns["abs_workdir"].is_dir()),
    s("rerun-failed", "jobs.md: Updating Jobs",
      """
      # Run all the Failed Jobs again:
      Job.objects.filter(state="FAILED").update(state="RESTART_READY")
      """, setup=FAILED_FOO,
      check=lambda ns: Job().objects.filter(state="RESTART_READY").count() == 3),
    s("delete-jobs", "jobs.md: Deleting Jobs",
      """
      # Delete a single job:
      job.delete()

      # Delete a collection of Jobs:
      Job.objects.filter(state="FAILED", tags={"run": "H2O"}).delete()
      """, setup="job = make(1, 'one')[0]; make(2, 'h', 'FAILED', tags={'run': 'H2O'})",
      check=lambda ns: Job().objects.count() == 0),
    s("return-code-loop", "jobs.md: Filtering Examples",
      """
      failed = Job.objects.filter(workdir__contains="production-X", state="FAILED")

      for job in failed:
          if job.return_code == 1:
              job.num_nodes = 16
              job.state = "RESTART_READY"
              job.save()
      """, setup="make(1, 'production-X', 'FAILED')",
      raises=(AttributeError, "return_code")),
    s("done", "jobs.md: Polling a single job on completion",
      """
      finished = job.done()
      """, setup="job = make(1)[0]; Job.objects.filter(id=job.id).update(state='FAILED')",
      check=lambda ns: ns["finished"] is True and ns["job"].state == "FAILED"),
    s("wait-first-completed", "jobs.md: Polling many jobs on completion",
      """
      wait_result = Job.objects.wait(
          active_jobs,
          return_when="FIRST_COMPLETED",
          timeout=60,
          poll_interval=10
      )
      print(f"{len(wait_result.done)} jobs completed")
      print(f"{len(wait_result.not_done)} active jobs")
      """, setup="active_jobs = make(2) + make(1, 'x', 'FAILED')",
      check=lambda ns: (len(ns["wait_result"].done), len(ns["wait_result"].not_done)) == (1, 2)),
    s("as-completed-result", "jobs.md: Iterating over Jobs as they complete",
      """
      for job in Job.objects.as_completed(active_jobs, timeout=60):
          print(f"Job {job.workdir} returned:  {job.result()}")
      """, setup="active_jobs = make(1, 'x', 'FAILED')",
      raises=(ValueError, "runs no apps")),
    s("result", "jobs.md: Accessing Results",
      """
      job = Hello.submit("test/123", x=3, y=7)
      assert job.result() == 3 + 7
      """, raises=(ValueError, "result\\(\\) is the return value of a Balsam run\\(\\) app")),
    s("parent-ids", "jobs.md: Parent Job Dependencies",
      """
      Job.objects.create(
          app_id=123, workdir="child",
          parent_ids=[job1.id, job2.id]
      )
      """, setup="job1, job2 = make(2)", raises=(ValidationError, "parent_ids is a")),
]

ALL: list[Snippet] = []  # filled in by balsam_snippets_more (appdef, transfer, ...)
ALL += API + JOBS
TIMEOUT = concurrent.futures.TimeoutError


def Job() -> Any:  # noqa: N802 (the API's Job, for checks that run after a snippet)
    from balsam_mp.api import Job as job_class

    return job_class
