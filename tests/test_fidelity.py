"""The emulator answers as Globus does.

globus-sdk ships answers recorded from the real Transfer service (globus_sdk.testing's
response sets). For each one the site or the globus CLI uses, the emulator is asked the
same call through a real TransferClient over HTTP, in the state the recording shows
(e.g. a SUCCEEDED task without a label), and both answers must have the same keys and
the same value types at every level (None only where the recording has None, or, for
get_endpoint, where Globus documents the field's absence: ENDPOINT_ABSENT). A
globus-sdk upgrade whose recordings change fails here.
"""

from __future__ import annotations

import globus_sdk
import pytest
from globus_sdk.testing import get_response_set

from tests.conftest import REMOTE_EP, SITE_EP, wait_for
from tests.test_emulator import NO_RETRIES, client

TC = globus_sdk.TransferClient
# Keys the emulator may add to a recording, each documented by Globus
DOCUMENTED_EXTRAS = {
    # task_list's recording lists tasks without their DATA_TYPE, which Globus documents
    # as "always 'task'" (and endpoint_manager_task_list's recording has)
    "DATA[].DATA_TYPE",
}


def recorded(method, case: str = "default") -> dict:
    return get_response_set(method).lookup(case).json


def differences(expected, actual, path: str = "", absent: frozenset = frozenset()) -> list[str]:
    """Where `actual` differs from `expected` in keys or value types, at every level.
    `absent` names the paths where Globus documents null (or an empty list) for an
    entity without that property, which the recording happens to have."""
    if path in absent and actual in (None, []):
        return []
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: a {type(actual).__name__}, not an object"]
        found = []
        for key in sorted(set(expected) - set(actual)):
            found.append(f"{path}.{key}: missing")
        for key in sorted(set(actual) - set(expected)):
            if f"{path}.{key}".lstrip(".") not in DOCUMENTED_EXTRAS:
                found.append(f"{path}.{key}: not in the recording")
        for key in sorted(set(expected) & set(actual)):
            found += differences(expected[key], actual[key], f"{path}.{key}", absent)
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or (expected and not actual):
            return [f"{path}: {actual!r} instead of a list like {expected!r}"]
        return [d for item in actual
                for d in differences(expected[0], item, f"{path}[]", absent)] \
            if expected else []
    if type(expected) is not type(actual):
        return [f"{path}: {type(actual).__name__} {actual!r}, recorded "
                f"{type(expected).__name__} {expected!r}"]
    return []


def test_the_comparison_sees_a_missing_key_an_extra_key_and_a_wrong_type():
    expected = {"DATA": [{"a": 1, "b": None, "c": True}], "n": 0}
    assert differences(expected, {"DATA": [{"a": 1, "b": None, "c": True}], "n": 3}) == []
    assert differences(expected, {"DATA": [{"a": 1, "b": None, "c": True, "DATA_TYPE": "t"}],
                                  "n": 0}) == []
    found = differences(expected, {"DATA": [{"a": 1.0, "b": "x", "d": 1}], "m": 0})
    assert sorted(found) == [".DATA[].a: float 1.0, recorded int 1",
                             ".DATA[].b: str 'x', recorded NoneType None",
                             ".DATA[].c: missing", ".DATA[].d: not in the recording",
                             ".m: not in the recording", ".n: missing"]
    assert differences({"x": 1}, {"x": True}) == [".x: bool True, recorded int 1"]
    # a documented absence is null or empty, nothing else
    assert differences({"x": "s", "L": [1]}, {"x": None, "L": []}, absent=frozenset({".x", ".L"})) \
        == []
    assert differences({"x": "s"}, {"x": 1}, absent=frozenset({".x"})) == \
        [".x: int 1, recorded str 's'"]


# Fields of the endpoint document that a GCSv5 mapped collection without them shows as
# null or [] where the recording (a GCSv4 host) has values: Globus documents description
# as nullable, expire_time as GCSv4 activation only, DATA (server documents) as GCSv4's
ENDPOINT_ABSENT = frozenset({".description", ".expire_time", ".DATA"})


def test_get_endpoint_answers_as_recorded_with_true_values(emulator, endpoint_dirs):
    tc = client(emulator)
    document = tc.get_endpoint(SITE_EP).data
    assert differences(recorded(TC.get_endpoint), document, absent=ENDPOINT_ABSENT) == []
    assert (document["id"], document["entity_type"]) == (SITE_EP, "GCSv5_mapped_collection")
    # the same name and owner as in a task document: the endpoint table's name, and the
    # emulator's person (who owns its tasks) as the owner
    task_id, _ = one_file_task(tc, endpoint_dirs)
    task = tc.get_task(task_id)
    assert document["display_name"] == task["destination_endpoint_display_name"]
    assert task["owner_id"] == emulator.tokens()["emulator_identity"]
    assert document["username"] == task["username"]
    assert (document["DATA"], document["activated"], document["expires_in"],
            document["is_globus_connect"], document["host_endpoint_id"]) == \
        ([], False, -1, False, None)
    with pytest.raises(globus_sdk.TransferAPIError) as unknown:
        client(emulator, retry_config=NO_RETRIES).get_endpoint(
            "00000000-0000-4000-8000-000000000000")
    assert (unknown.value.http_status, unknown.value.code) == (404, "EndpointNotFound")


def one_file_task(tc, endpoint_dirs) -> tuple[str, dict]:
    """As recorded: one file, verify_checksum, no label, no sync_level; SUCCEEDED."""
    (endpoint_dirs[REMOTE_EP] / "four").write_text("four")
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP, verify_checksum=True,
                                   submission_id=tc.get_submission_id()["value"])
    data.add_item("/four", "/copied/four")
    answer = tc.submit_transfer(data)
    wait_for(lambda: tc.get_task(answer["task_id"])["status"] == "SUCCEEDED",
             what="the task to succeed")
    return answer["task_id"], answer.data


def test_task_documents_submit_and_submission_id_answer_as_recorded(emulator, endpoint_dirs):
    tc = client(emulator)
    assert differences(recorded(TC.get_submission_id), tc.get_submission_id().data) == []
    task_id, submitted = one_file_task(tc, endpoint_dirs)
    assert differences(recorded(TC.submit_transfer), submitted) == []
    assert submitted["task_link"]["href"] == f"/v0.10/task/{task_id}?format=json"
    listed = tc.task_list(filter={"task_id": [task_id]}, limit=1000).data
    assert differences(recorded(TC.task_list), listed) == []
    # no get_task recording: Globus documents the same task document for both
    single = {"DATA": [tc.get_task(task_id).data]}
    assert differences({"DATA": recorded(TC.task_list)["DATA"]}, single) == []


def test_true_values_in_the_task_document(emulator, endpoint_dirs):
    tc = client(emulator)
    task_id, _ = one_file_task(tc, endpoint_dirs)
    task = tc.get_task(task_id)
    names = {ep: tc.get_endpoint(ep)["display_name"] for ep in (REMOTE_EP, SITE_EP)}
    assert task["source_endpoint_display_name"] == names[REMOTE_EP]
    assert task["destination_endpoint_display_name"] == names[SITE_EP]
    assert task["owner_id"] == emulator.tokens()["emulator_identity"]
    assert task["username"].startswith("u_") and len(task["username"]) == 28
    assert (task["is_ok"], task["nice_status_expires_in"], task["symlinks"]) == (None, None, 0)
    assert (task["preserve_timestamp"], task["delete_destination_extra"],
            task["fail_on_quota_errors"], task["filter_rules"],
            task["recursive_symlinks"]) == (False, False, False, None, "ignore")
    # the options a client sends are recorded as sent
    emulator.knobs(startup_delay=30)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP, preserve_timestamp=True,
                                   fail_on_quota_errors=True, delete_destination_extra=True,
                                   additional_fields={"recursive_symlinks": "copy"})
    data.add_filter_rule("*.tmp", type="file")
    data.add_item("/four", "/again/four")
    active = tc.get_task(tc.submit_transfer(data)["task_id"])
    assert (active["preserve_timestamp"], active["delete_destination_extra"],
            active["fail_on_quota_errors"], active["recursive_symlinks"]) == \
        (True, True, True, "copy")
    assert active["filter_rules"] == [{"DATA_TYPE": "filter_rule", "method": "exclude",
                                       "name": "*.tmp", "type": "file"}]
    assert (active["is_ok"], active["nice_status_expires_in"]) == (True, -1)


def test_cancel_mkdir_and_a_refused_transfer_answer_as_recorded(emulator, endpoint_dirs):
    tc = client(emulator, retry_config=NO_RETRIES)
    emulator.knobs(startup_delay=30)
    (endpoint_dirs[REMOTE_EP] / "f").write_text("x")
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP)
    data.add_item("/f", "/f")
    task_id = tc.submit_transfer(data)["task_id"]
    cancelled = tc.cancel_task(task_id).data
    assert differences(recorded(TC.cancel_task), cancelled) == []
    assert (cancelled["code"], cancelled["resource"]) == ("Canceled", f"/task/{task_id}/cancel")
    made = tc.operation_mkdir(SITE_EP, "/new-folder").data
    assert differences(recorded(TC.operation_mkdir), made) == []
    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        tc.submit_transfer(globus_sdk.TransferData(REMOTE_EP, SITE_EP))
    assert refused.value.http_status == 400
    assert differences(recorded(TC.submit_transfer, "failure"), refused.value.raw_json) == []
    assert refused.value.code == recorded(TC.submit_transfer, "failure")["code"]


def test_successful_transfers_page_as_recorded(emulator, endpoint_dirs):
    """The recording is a first page with more to come: 1,001 files make one here."""
    emulator.knobs(metadata_only=True)
    tc = client(emulator)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP)
    for n in range(1001):
        data.add_item(f"/in/{n}", f"/out/{n}")
    task_id = tc.submit_transfer(data)["task_id"]
    wait_for(lambda: tc.get_task(task_id)["status"] == "SUCCEEDED", what="the task")
    page = tc.task_successful_transfers(task_id).data
    assert differences(recorded(TC.endpoint_manager_task_successful_transfers), page) == []
    rest = tc.task_successful_transfers(task_id, marker=page["next_marker"]).data
    assert len(rest["DATA"]) == 1 and rest["next_marker"] is None
    everything = list(tc.paginated.task_successful_transfers(task_id).items())
    assert len(everything) == 1001


@pytest.mark.parametrize("field, value", [
    ("preserve_timestamp", "yes"), ("fail_on_quota_errors", 1),
    ("delete_destination_extra", None), ("recursive_symlinks", "follow"),
    ("filter_rules", "*.tmp"), ("filter_rules", [{"name": "*", "method": "drop"}]),
    ("filter_rules", [{"method": "exclude"}]), ("sync_level", 7), ("label", 5)])
def test_a_bad_option_is_refused_naming_it_and_makes_no_task(emulator, endpoint_dirs,
                                                             field, value):
    tc = client(emulator, retry_config=NO_RETRIES)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP, additional_fields={field: value})
    data.add_item("/f", "/f")
    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        tc.submit_transfer(data)
    assert refused.value.http_status == 400 and field.split("_")[0] in refused.value.message
    assert emulator.submissions() == []


def test_a_bad_item_is_refused(emulator, endpoint_dirs):
    tc = client(emulator, retry_config=NO_RETRIES)
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP)
    data.add_item("/f", "/f", additional_fields={"recursive": "yes"})
    with pytest.raises(globus_sdk.TransferAPIError, match="recursive"):
        tc.submit_transfer(data)
    with pytest.raises(globus_sdk.TransferAPIError) as unknown:
        tc.task_pause_info("no-such-task")
    assert unknown.value.http_status == 404
    assert emulator.submissions() == []
