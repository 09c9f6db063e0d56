"""Balsam's snippets from docs/user-guide/jobs.md (see balsam_snippets.py for the
rules)."""

from __future__ import annotations

from balsam_mp.errors import ValidationError
from tests.balsam_snippets import FAILED_FOO, NO_LAUNCHER, Job, s

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
