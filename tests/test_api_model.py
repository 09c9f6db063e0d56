"""Balsam's object model: constructors, fields, querysets, apps (real SQLite site
database; writes are in test_api_writes.py; docs/python-api.md's script runs in
test_doc_examples.py)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path, PurePosixPath

import pytest

from balsam_mp import api, db, states
from balsam_mp.api import ApplicationDefinition, EventLog, Job, TransferItem
from balsam_mp.errors import BalsamError, NotFound, ValidationError
from tests.sitemoves import make, mysim_id


@pytest.mark.engines
def test_constructor_save_and_the_fields_balsam_has(site):
    job = Job(workdir=Path("ensemble") / "1", app_id=mysim_id(), parameters={"x": 1},
              transfers={"input_file": {"location_alias": "laptop", "path": Path("/d/in.dat")},
                         "result": "laptop:/r/out.dat"}, tags={"system": "H2O"})
    assert job.id is None and job.state is None
    job.save()
    assert job.id is not None and job.state == states.READY
    assert job.workdir == Path("ensemble/1") and (site.data_path / job.workdir).is_dir()
    again = Job.objects.get(id=job.id)
    assert again.transfers == {"input_file": "laptop:/d/in.dat", "result": "laptop:/r/out.dat"}
    assert (again.app, again.app_id, again.parameters) == ("MySim", mysim_id(), {"x": 1})
    assert again.state_data == {} and isinstance(again.last_update, dt.datetime)
    item = TransferItem.objects.get(job_id=job.id, direction="in")
    assert (item.location_alias, item.remote_path, item.local_path, item.recursive) == (
        "laptop", PurePosixPath("/d/in.dat"), Path("input.dat"), False)
    assert (item.state, item.task_id, item.transfer_info["attempts"]) == ("pending", None, 0)
    assert [(e.from_state, e.to_state) for e in job.events] == [("CREATED", "READY")]


@pytest.mark.engines
def test_create_and_bulk_create_take_every_form(site):
    one = Job.objects.create(workdir="a", app="MySim", transfers={"input_file": "laptop:/x"})
    mixed = Job.objects.bulk_create([
        Job(workdir="b", app_id=mysim_id(), transfers={"input_file": "laptop:/y"}),
        {"app": "MySim", "workdir": Path("c"), "transfers": {"input_file": "laptop:/z"}},
    ])
    assert [j.workdir for j in mixed] == [Path("b"), Path("c")]
    assert all(j.id for j in [one, *mixed]) and Job.objects.count() == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"workdir": "w", "app_id": 99}, "app_id: unknown app id 99"),
    ({"workdir": "w"}, "give app_id"),
    ({"app": "MySim"}, "workdir is missing"),
    ({"workdir": "w", "app": "MySim", "app_id": 99}, "unknown app id 99"),
    ({"workdir": "w", "app": "MySim", "num_nodes": 2}, "num_nodes is a Balsam launcher"),
    ({"workdir": "w", "app": "MySim", "colour": 2}, "colour is not a Job field"),
    ({"workdir": "w", "app": "MySim", "transfers": ["laptop:/x"]}, "transfers must be a mapping"),
    ({"workdir": "w", "app": "MySim", "tags": {"k": float("inf")}}, "not a number a tag"),
    ({"workdir": "w", "app": "MySim", "parameters": {1: 2}}, "parameters: key 1 must be a string"),
    ({"workdir": "w", "app": "MySim", "transfers": {"input_file": {"path": "/x"}}},
     "'location_alias': str"),
])
def test_bad_constructions_are_one_clear_error(site, kwargs, message):
    with pytest.raises(ValidationError, match=message):
        Job.objects.create(**kwargs)
    assert Job.objects.count() == 0


@pytest.mark.engines
def test_get_errors_and_filters(site):
    jobs = make(4)
    assert issubclass(Job.DoesNotExist, NotFound) and issubclass(
        Job.MultipleObjectsReturned, NotFound)
    assert Job.DoesNotExist is not TransferItem.DoesNotExist
    with pytest.raises(Job.DoesNotExist):
        Job.objects.get(workdir="nope")
    with pytest.raises(Job.MultipleObjectsReturned):
        Job.objects.get(state="READY")
    assert Job.objects.filter(state=["READY", "FAILED"]).count() == 4
    assert Job.objects.filter(id=[jobs[0].id, jobs[2].id]).count() == 2
    assert Job.objects.filter(tags=["n:1"]).get().id == jobs[1].id
    assert Job.objects.filter(tags={"n": "3"}).get().id == jobs[3].id
    assert Job.objects.filter(workdir__contains="e/2").get().id == jobs[2].id
    odd = Job.objects.create(workdir="odd", app="MySim", tags={'a"b.c': "v", "$": "w"},
                             transfers={"input_file": "laptop:/odd"})
    assert Job.objects.get(tags={'a"b.c': "v", "$": "w"}).id == odd.id
    assert Job.objects.filter(tags={'a"b.c': "w"}).count() == 0
    odd.delete()
    assert Job.objects.get(workdir=Path("e/1")).id == jobs[1].id
    assert TransferItem.objects.filter(job_state="READY", direction="out").count() == 4
    assert TransferItem.objects.filter(tags=["n:1"]).count() == 2  # the job's tags
    Job.objects.filter(id=jobs[1].id).update(tags={"n": "new"})
    newest = Job.objects.order_by("-last_update")[0]
    assert newest.id == jobs[1].id
    stamp = newest.last_update
    assert Job.objects.filter(last_update__gt=stamp - dt.timedelta(microseconds=1)).count() == 1
    assert Job.objects.filter(last_update__lt=stamp).count() == 3
    assert Job.objects.filter(last_update_before=stamp).count() == 3
    assert Job.objects.filter(last_update_after=stamp.replace(tzinfo=None)
                              - dt.timedelta(seconds=1)).count() >= 1


@pytest.mark.engines
def test_indexing_and_slicing(site):
    jobs = make(5)
    qs = Job.objects.all()
    assert qs[-1].id == jobs[-1].id and qs[-5].id == jobs[0].id
    assert qs[0].id == jobs[0].id and qs[1:3][1].id == jobs[2].id
    with pytest.raises(IndexError):
        qs[-6]
    with pytest.raises(IndexError):
        qs[1:3][2]
    with pytest.raises(ValueError, match="negative"):
        qs[-2:]
    with pytest.raises(ValidationError):
        qs[::2]
    assert [j.id for j in Job.objects.order_by("-id")[:2]] == [jobs[4].id, jobs[3].id]


@pytest.mark.parametrize("lookups, message", [
    ({"colour": "red"}, "Job has no field 'colour'"),
    ({"state__like": "R%"}, "unknown lookup 'state__like'"),
    ({"state": "BOGUS"}, "'BOGUS' is not one of"),
    ({"id": {"a": 1}}, "is not an integer"),
    ({"id": "1"}, "is not an integer"),
    ({"last_update__gt": "yesterday"}, "is not a datetime"),
    ({"tags": 5}, "tags= takes a mapping"),
    ({"tags": ["nocolon"]}, "is not 'key:value'"),
    ({"state__in": "READY"}, "takes a list"),
    ({"workdir": "a\0b"}, "is not a string"),
    ({"id__contains": 1}, "contains is for text"),
])
def test_bad_lookups_are_validation_errors_naming_them(site, lookups, message):
    make(1)
    with pytest.raises(ValidationError, match=re.escape(message)):
        list(Job.objects.filter(**lookups))


@pytest.mark.engines
def test_no_raw_database_error_reaches_a_user(site):
    api.connect()
    db.Job._meta.database.execute_sql("drop table log_event")
    # SQLite: the file's name and its word for it; PostgreSQL: its message's first line
    words = "site database: relation \"log_event\" does not exist$" if site.database_url \
        else "site.db: no such table: log_event"
    with pytest.raises(BalsamError, match=words):
        list(EventLog.objects.all())


def test_submit_save_false_and_sync_one_app(site):
    class Echo(ApplicationDefinition):
        transfers = {"src": {"direction": "in", "local_path": ".", "recursive": True}}

    app = Echo.sync()
    assert (app.name, app.transfers["src"]["recursive"]) == ("Echo", True)
    job = Echo.submit("echo/1", save=False, size=3)
    assert job.id is None and job.parameters == {"size": 3} and Job.objects.count() == 0
    Job.objects.bulk_create([job])
    assert job.id and Job.objects.get(id=job.id).state == states.STAGED_IN
    with pytest.raises(ValidationError, match="num_nodes is a Balsam launcher setting"):
        Echo.submit("echo/3", num_nodes=2)
    assert list(Job(workdir="x", app="Echo").events) == []
    with pytest.raises(ValidationError, match="job id '1' is not an integer"):
        Job.objects.set_state("1", "READY", "FAILED")
    saved = Echo.submit(Path("echo/2"), transfers={"src": "laptop:/data/set"})
    assert TransferItem.objects.get(job_id=saved.id).local_path == Path(".")
