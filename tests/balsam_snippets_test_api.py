"""Balsam's snippets from its own tests/api/test_api.py (see balsam_snippets.py for the
rules): the asserts are Balsam's."""

from __future__ import annotations

from balsam_mp.errors import ValidationError
from tests.balsam_snippets import SCENARIO, s

TEST_API = [  # tests/api/test_api.py
    s("create-using-app-name", "test_api.py: test_create_using_app_name",
      """
      job = Job("test/run1", app_id="GeomOpt", parameters={"geometry": "test.xyz"})
      assert job.id is None
      job.save()
      assert job.id is not None
      assert job.app_id == GeomOpt.__app_id__
      assert job.state == "STAGED_IN"
      """),
    s("submit-get-parameters", "test_api.py: test_create_using_app_submit_method",
      """
      job = GeomOpt.submit(workdir="test/35", geometry="h2o.xyz")
      assert job.id is not None
      assert job.get_parameters() == {"geometry": "h2o.xyz"}
      assert job.app_id == GeomOpt.__app_id__
      assert job.state == "STAGED_IN"
      """),
    s("ranks-per-node", "test_api.py: test_create",
      """
      job = Job("test/run1", app_id=app.id, parameters={"geometry": "test.xyz"}, ranks_per_node=64)
      """, raises=(ValidationError, "ranks_per_node is a Balsam launcher setting")),
    s("order-limit-offset", "test_api.py: test_order_limit_offset",
      """
      jobs = [Job(f"test/{i}", app_id=app.id) for i in range(8)]
      random.shuffle(jobs)
      Job.objects.bulk_create(jobs)

      subset = Job.objects.all().order_by("workdir")[:4]
      assert len(subset) == 4
      assert set(job.workdir.as_posix() for job in subset) == {f"test/{i}" for i in range(4)}
      subset = Job.objects.all().order_by("-workdir")[5:7]
      assert set(job.workdir.as_posix() for job in subset) == {"test/2", "test/1"}
      """, setup="import random"),
    s("bulk-update-states", "test_api.py: test_bulk_create_and_update",
      """
      jobs = [Job(f"test/{i}", app_id=app.id) for i in range(10)]
      jobs = Job.objects.bulk_create(jobs)
      assert all(job.state == "STAGED_IN" for job in jobs)

      preproc_time = datetime.now(timezone.utc)
      for job in jobs:
          job.state = "PREPROCESSED"
          job.state_data = {"message": "Skipped Preprocessing Step"}
      Job.objects.bulk_update(jobs)

      for job in Job.objects.all():
          assert job.state == "PREPROCESSED"
          assert job.last_update > preproc_time
      """, setup="from datetime import datetime, timezone"),
    s("view-history", "test_api.py: test_can_view_history",
      """
      job = Job("test/test", app_id=app.id)
      job.save()
      history = EventLog.objects.filter(job_id=job.id)
      states = [event.to_state for event in history]
      assert states == ["STAGED_IN"]
      job.state = "PREPROCESSED"
      job.state_data = {"message": "Skipped Preprocess: nothing to do"}
      Job.objects.bulk_update([job])
      assert job.state == "PREPROCESSED"
      latest_event = EventLog.objects.filter(job_id=job.id)[0]
      assert latest_event.to_state == "PREPROCESSED"
      """),
    s("bulk-delete", "test_api.py: test_bulk_delete",
      """
      jobs = [Job(f"test/{i}", app_id=app.id) for i in range(3)]
      Job.objects.bulk_create(jobs)
      assert Job.objects.count() == 3
      Job.objects.all().delete()
      assert Job.objects.count() == 0
      """),
    s("filter-by-number-tags", "test_api.py: test_filter_by_tags",
      """
      jobs = [Job(f"test/{i}", app_id=app.id, tags={"foo": i, "bar": i * 2}) for i in range(3)]
      Job.objects.bulk_create(jobs)
      qs = Job.objects.filter(tags="foo:1")
      assert qs.count() == 1
      assert qs[0].workdir.as_posix() == "test/1"
      assert Job.objects.filter(tags=["foo:2", "bar:3"]).count() == 0
      assert Job.objects.filter(tags=["foo:2", "bar:4"]).count() == 1
      """),
    s("filter-by-id-list", "test_api.py: test_filter_by_id_list",
      """
      foo_jobs = [Job(f"foo/{i}", app_id=app.id) for i in range(3)]
      foo_jobs = Job.objects.bulk_create(foo_jobs)
      ids = [j.id for j in foo_jobs]
      bar_jobs = [Job(f"bar/{i}", app_id=app.id) for i in range(3)]
      bar_jobs = Job.objects.bulk_create(bar_jobs)
      assert Job.objects.count() == 6
      assert Job.objects.filter(id=ids).count() == 3
      """),
    s("state-ordering", "test_api.py: test_state_ordering",
      """
      jobs = [Job(f"foo/{i}", app_id=app.id) for i in range(4)]
      jobs = Job.objects.bulk_create(jobs)
      jobs[2].state = "PREPROCESSED"
      jobs[2].save()
      states = [job.state for job in Job.objects.all().order_by("state")]
      assert states == ["PREPROCESSED"] + ["STAGED_IN"] * 3
      """),
    s("filter-by-workdir", "test_api.py: test_filter_by_workdir",
      """
      jobs = [Job(f"foo/{i}", app_id=app.id) for i in range(4)]
      jobs.append(Job("bar/99", app_id=app.id))
      jobs = Job.objects.bulk_create(jobs)
      assert Job.objects.filter(workdir__contains="foo/2").count() == 1
      assert Job.objects.filter(workdir__contains="foo/8").count() == 0
      assert Job.objects.filter(workdir__contains="foo").count() == 4
      assert Job.objects.filter(workdir__contains="bar").count() == 1
      """),
    s("other-site-name", "test_api.py: test_create_by_name_and_site_path",
      """
      with pytest.raises(App.DoesNotExist):
          Job("test/2", app_id="AppB", site_name="polaris3")
      """, setup="import pytest"),
    s("filter-by-state-ne", "test_api.py: test_filter_by_state",
      """
      jobs = [Job(f"foo/{i}", app_id=app.id) for i in range(4)]
      jobs = Job.objects.bulk_create(jobs)
      jobs[2].state = "PREPROCESSED"
      jobs[2].save()
      assert Job.objects.filter(state="STAGED_IN").count() == 3
      assert Job.objects.filter(state="PREPROCESSED").count() == 1
      assert Job.objects.filter(state__ne="STAGED_IN").count() == 1
      assert Job.objects.filter(state__ne="PREPROCESSED").count() == 3
      """),
    s("transfer-item-state-enum", "test_api.py: test_filter_transfers_by_state",
      """
      from balsam_mp.schemas import TransferItemState

      Job.objects.create(
          workdir="test/test",
          app_id=app.id,
          transfers={
              "input_file": {"location_alias": "laptop", "path": "/path/to/input.dat"},
              "result": {"location_alias": "laptop", "path": "/path/to/output.json"},
          },
      )
      pending = TransferItem.objects.filter(state="pending")
      assert pending.count() == 1
      pending = TransferItem.objects.filter(state=TransferItemState.pending)
      assert pending.count() == 1
      done = TransferItem.objects.filter(state=TransferItemState.done)
      assert done.count() == 0
      all_t = TransferItem.objects.filter(state=["pending", "awaiting_job"])
      assert all_t.count() == 2
      all_t = TransferItem.objects.filter(state={"pending", "awaiting_job"})
      assert all_t.count() == 2
      """, setup="app = App.objects.get(name='MySimulation')"),
    s("transfers-shortcut", "test_api.py: test_create_transfers_shortcut",
      """
      Job.objects.create(
          workdir="test/test",
          app_id=app.id,
          transfers={
              "input_file": "laptop:/path/to/input.dat",
              "result": "laptop:/path/to/output.json",
          },
      )
      pending = TransferItem.objects.filter(state="pending")
      assert pending.count() == 1
      assert pending[0].remote_path.as_posix() == "/path/to/input.dat"
      """, setup="app = App.objects.get(name='MySimulation')"),
    s("events-of-a-job", "test_api.py: test_filter_by_job",
      """
      id = Job.objects.get(workdir__contains="foo/2").id
      qs = EventLog.objects.filter(job_id=id)
      states = [event.to_state for event in qs]
      assert states == ["RUN_ERROR", "RUNNING", "PREPROCESSED", "STAGED_IN"]
      """, setup=SCENARIO),
    s("events-to-state", "test_api.py: test_filter_by_to_state",
      """
      assert EventLog.objects.filter(to_state="RUN_ERROR").count() == 1
      assert EventLog.objects.filter(to_state="STAGED_IN").count() == 3
      """, setup=SCENARIO),
    s("events-from-created", "test_api.py: test_filter_by_from_state",
      """
      assert EventLog.objects.filter(from_state="CREATED").count() == 3
      """, setup=SCENARIO),
    s("events-from-and-to", "test_api.py: test_filter_by_to_and_from_state",
      """
      qs = EventLog.objects.filter(from_state="RUNNING").filter(to_state="RUN_ERROR")
      assert qs.count() == 1
      assert qs[0] == EventLog.objects.get(from_state="RUNNING", to_state="RUN_ERROR")
      """, setup=SCENARIO),
    s("events-by-message", "test_api.py: test_filter_by_message",
      """
      qs = EventLog.objects.filter(data="message:OK: done!")
      assert qs.count() == 1
      assert qs[0].to_state == "RUN_DONE"
      """, setup=SCENARIO),
    s("events-not-created-here", "test_api.py: test_cannot_create_or_update",
      """
      with pytest.raises(AttributeError, match="has no attribute 'create'"):
          EventLog.objects.create(
              job_id=1,
              from_state="RUNNING",
              to_state="RUN_DONE",
          )
      """, setup="import pytest"),
    s("job-data", "test_api.py: test_set_and_fetch_data",
      """
      job = Job.objects.create("test/run1", app_id=app.id)
      job.data = {"foo": 1234}
      job.save()
      """, raises=(ValidationError, "data is a Balsam launcher setting")),
]
