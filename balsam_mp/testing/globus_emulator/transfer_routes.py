"""Transfer API v0.10 routes: what our site and the globus CLI call."""

from __future__ import annotations

import datetime as dt
import os
import uuid

from balsam_mp.testing.globus_emulator import admin, submission
from balsam_mp.testing.globus_emulator.auth import TRANSFER_SCOPE, data_access_scope
from balsam_mp.testing.globus_emulator.paths import PathEscape, resolve
from balsam_mp.testing.globus_emulator.request import (
    ApiError,
    Request,
    bad_request,
    not_found,
    request_id,
)
from balsam_mp.testing.globus_emulator.state import Emulator
from balsam_mp.testing.globus_emulator.task import Task


def submission_id(emu: Emulator, req: Request) -> dict:
    return {"value": str(uuid.uuid4())}


def submit_transfer(emu: Emulator, req: Request) -> tuple[int, dict]:
    doc = req.json if isinstance(req.json, dict) else {}
    if doc.get("DATA_TYPE") != "transfer":
        raise bad_request("DATA_TYPE must be 'transfer'")
    sid = doc.get("submission_id")
    if not isinstance(sid, str) or not sid:
        raise bad_request("a submission_id is required", "ClientError.BadRequest.NoSubmissionId")
    endpoints = [doc.get("source_endpoint"), doc.get("destination_endpoint")]
    for endpoint in endpoints:
        if endpoint not in emu.engine.endpoints:
            raise ApiError(404, "EndpointNotFound", f"endpoint {endpoint} not found")
    items = submission.entries(doc)
    if not items:
        raise bad_request("A transfer requires at least one item",
                          "ClientError.BadRequest.NoTransferItems")
    task = submission.task_from(doc, req.identity or "", endpoints, items,
                                emu.engine.display_names)
    _check_access(emu, req.identity or "", endpoints)
    original = emu.engine.by_submission.get(sid)
    if original is None and emu.engine.unfinished_count(req.identity or "") >= \
            emu.engine.knobs.max_pending:
        raise ApiError(409, "LimitExceeded", "too many pending tasks")
    task, duplicate = emu.engine.submit(task)
    code = "Duplicate" if duplicate else "Accepted"
    return (200 if duplicate else 202), {
        "DATA_TYPE": "transfer_result", "code": code, "task_id": task.task_id,
        "submission_id": sid, "resource": req.path, "request_id": request_id(),
        "task_link": {"DATA_TYPE": "link", "href": f"/v0.10/task/{task.task_id}?format=json",
                      "rel": "related", "resource": "task", "title": "related task"},
        "message": "The transfer has been accepted and a task has been created and queued "
                   "for execution" if not duplicate else "A transfer with this submission "
                   "id was already accepted",
    }


def _check_access(emu: Emulator, identity: str, endpoints: list[str]) -> None:
    denied = [ep for ep in endpoints if ep in emu.denied_endpoints]
    if denied:
        raise ApiError(403, "EndpointPermissionDenied",
                       f"permission denied on endpoint {denied[0]}")
    missing = emu.auth.missing_consents(identity, endpoints)
    if missing:
        dependencies = " ".join(f"*{data_access_scope(ep)}" for ep in missing)
        raise ApiError(403, "ConsentRequired",
                       "Missing required data_access consent",
                       required_scopes=[f"{TRANSFER_SCOPE}[{dependencies}]"],
                       authorization_parameters={"required_scopes": [
                           f"{TRANSFER_SCOPE}[{dependencies}]"]})


def _task(emu: Emulator, req: Request) -> Task:
    task = emu.engine.tasks.get(req.params["task_id"])
    if task is None or (task.owner != req.identity and not emu.auth.accept_any_token):
        raise not_found(f"task {req.params['task_id']}")
    return task


def get_task(emu: Emulator, req: Request) -> dict:
    with emu.engine.lock:
        return _task(emu, req).document()


def task_list(emu: Emulator, req: Request) -> bytes:
    filters: dict[str, set[str]] = {}
    for clause in req.query.get("filter", "").split("/"):
        key, _, values = clause.partition(":")
        if key:
            filters[key] = set(values.split(","))
    limit = min(int(req.query.get("limit", 10)), 1000)
    offset = int(req.query.get("offset", 0))
    with emu.engine.lock:
        if "task_id" in filters:
            tasks = [emu.engine.tasks[t] for t in sorted(filters.pop("task_id"))
                     if t in emu.engine.tasks]
        else:
            tasks = list(emu.engine.tasks.values())
        tasks = [t for t in tasks if t.owner == req.identity or emu.auth.accept_any_token]
        for key, allowed in filters.items():
            tasks = [t for t in tasks if str(t.document().get(key)) in allowed]
        page = [t.document_json() for t in tasks[offset:offset + limit]]
    # spliced from cached task JSON: polling many finished tasks is the hot path
    return b'{"DATA_TYPE": "task_list", "DATA": [%s], "offset": %d, "limit": %d, ' \
        b'"total": %d, "length": %d}' % (b", ".join(page), offset, limit, len(tasks), len(page))


def _marker_page(rows: list[dict], req: Request) -> dict:
    start = int(req.query.get("marker") or 0)
    end = start + 1000
    return {"DATA_TYPE": "successful_transfers", "DATA": rows[start:end],
            "marker": start, "next_marker": end if end < len(rows) else None}


def successful_transfers(emu: Emulator, req: Request) -> dict:
    with emu.engine.lock:
        return _marker_page(list(_task(emu, req).successful), req)


def skipped_errors(emu: Emulator, req: Request) -> dict:
    with emu.engine.lock:
        page = _marker_page(list(_task(emu, req).skipped), req)
    return dict(page, DATA_TYPE="skipped_errors")


def event_list(emu: Emulator, req: Request) -> dict:
    limit = min(int(req.query.get("limit", 10)), 1000)
    offset = int(req.query.get("offset", 0))
    with emu.engine.lock:
        events = list(reversed(_task(emu, req).events))  # newest first, as Globus lists
    return {"DATA_TYPE": "event_list", "DATA": events[offset:offset + limit],
            "offset": offset, "limit": limit, "total": len(events)}


def cancel_task(emu: Emulator, req: Request) -> dict:
    # Globus names the resource without the /v0.10 prefix here (its recorded answer)
    result = {"DATA_TYPE": "result", "resource": f"/task/{req.params['task_id']}/cancel",
              "request_id": request_id()}
    if emu.engine.cancel(_task(emu, req)):
        return dict(result, code="Canceled", message="The task has been cancelled successfully.")
    return dict(result, code="TaskComplete",
                message="The task completed before the cancel request was processed.")


def pause_info(emu: Emulator, req: Request) -> dict:
    with emu.engine.lock:
        return admin.pause_info(_task(emu, req))


def update_task(emu: Emulator, req: Request) -> dict:
    task = _task(emu, req)
    doc = req.json if isinstance(req.json, dict) else {}
    with emu.engine.lock:
        if "label" in doc:
            task.label = doc["label"]
        if "deadline" in doc:
            task.deadline = submission.deadline(doc["deadline"])
    return {"DATA_TYPE": "result", "code": "Updated", "message": "Updated successfully"}


def _endpoint_path(emu: Emulator, req: Request, path: str):
    root = emu.engine.endpoints.get(req.params["endpoint_id"])
    if root is None:
        raise ApiError(404, "EndpointNotFound", f"endpoint {req.params['endpoint_id']} not found")
    _check_access(emu, req.identity or "", [req.params["endpoint_id"]])
    try:
        return resolve(root, path)
    except PathEscape:
        raise ApiError(403, "EndpointPermissionDenied", f"{path}: permission denied") from None


def operation_ls(emu: Emulator, req: Request) -> dict:
    path = req.query.get("path", "/~/")
    folder = _endpoint_path(emu, req, path)
    if not folder.is_dir():
        raise ApiError(404, "ClientError.NotFound", f"Directory '{path}' not found")
    entries = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        info = entry.stat()
        entries.append({
            "DATA_TYPE": "file", "name": entry.name, "size": info.st_size,
            "type": "dir" if entry.is_dir() else "file", "permissions": oct(info.st_mode)[-4:],
            "last_modified": dt.datetime.fromtimestamp(info.st_mtime, dt.timezone.utc)
            .strftime("%Y-%m-%d %H:%M:%S+00:00"),
        })
    return {"DATA_TYPE": "file_list", "path": path, "endpoint": req.params["endpoint_id"],
            "DATA": entries, "length": len(entries), "total": len(entries)}


def operation_mkdir(emu: Emulator, req: Request) -> tuple[int, dict]:
    path = (req.json or {}).get("path", "")
    folder = _endpoint_path(emu, req, path)
    if folder.exists():
        raise ApiError(502, "ExternalError.MkdirFailed.Exists", f"Path already exists: {path}")
    folder.mkdir(parents=True)
    return 202, {"DATA_TYPE": "mkdir_result", "code": "DirectoryCreated",
                 "message": "The directory was created successfully",
                 "request_id": request_id(), "resource": req.path}
