"""/_emulator/... routes: inject faults, change knobs, read back what happened."""

from __future__ import annotations

import dataclasses

from balsam_mp.testing.globus_emulator import admin
from balsam_mp.testing.globus_emulator.faults import FaultRule
from balsam_mp.testing.globus_emulator.request import Request, bad_request, not_found
from balsam_mp.testing.globus_emulator.state import Emulator


def _body(req: Request) -> dict:
    return req.json if isinstance(req.json, dict) else {}


def stats(emu: Emulator, req: Request) -> dict:
    return {"counts": dict(emu.faults.counts), "injected": dict(emu.faults.injected)}


def submissions(emu: Emulator, req: Request) -> list:
    with emu.engine.lock:
        return list(emu.engine.submissions)


def tasks(emu: Emulator, req: Request) -> dict:
    with emu.engine.lock:
        return {tid: dict(t.document(), successful=list(t.successful), skipped=list(t.skipped),
                          events=list(t.events))
                for tid, t in emu.engine.tasks.items()}


def add_fault(emu: Emulator, req: Request) -> dict:
    fields = {f.name for f in dataclasses.fields(FaultRule)}
    body = _body(req)
    unknown = set(body) - fields
    if unknown or "route" not in body:
        raise bad_request(f"a fault needs 'route' and takes only {sorted(fields)}")
    emu.faults.add(FaultRule(**body))
    return {"ok": True}


def clear_faults(emu: Emulator, req: Request) -> dict:
    emu.faults.clear()
    return {"ok": True}


def set_knobs(emu: Emulator, req: Request) -> dict:
    body = _body(req)
    fields = {f.name for f in dataclasses.fields(emu.engine.knobs)}
    for key, value in body.items():
        if key == "accept_any_token":
            emu.auth.accept_any_token = bool(value)
        elif key == "token_lifetime":
            emu.auth.token_lifetime = int(value)
        elif key == "rate_limit":  # requests/s per identity; null: no limit
            emu.rate_limit = None if value is None else float(value)
        elif key in fields:
            setattr(emu.engine.knobs, key, value)
        else:
            raise bad_request(f"unknown knob {key!r}")
    with emu.engine.lock:
        emu.engine.lock.notify_all()
    return dict(dataclasses.asdict(emu.engine.knobs), rate_limit=emu.rate_limit)


def consent(emu: Emulator, req: Request) -> dict:
    """{"endpoint": ep, "required": bool} and/or {"grant_to": identity}."""
    body = _body(req)
    endpoint = body.get("endpoint")
    if not endpoint:
        raise bad_request("endpoint is required")
    with emu.auth.lock:
        if "required" in body:
            (emu.auth.consent_required.add if body["required"]
             else emu.auth.consent_required.discard)(endpoint)
        if body.get("grant_to"):
            emu.auth.consents.setdefault(body["grant_to"], set()).add(endpoint)
    return {"ok": True}


def deny(emu: Emulator, req: Request) -> dict:
    body = _body(req)
    (emu.denied_endpoints.add if body.get("denied", True)
     else emu.denied_endpoints.discard)(body.get("endpoint"))
    return {"ok": True}


def add_client(emu: Emulator, req: Request) -> dict:
    body = _body(req)
    emu.clients[body["client_id"]] = body["client_secret"]
    return {"ok": True}


def expire_tokens(emu: Emulator, req: Request) -> dict:
    emu.auth.expire_all_tokens()
    return {"ok": True}


def task_control(emu: Emulator, req: Request) -> dict:
    """{"inactive": bool, "reason": str} or {"fail": code, "description": str}."""
    task = emu.engine.tasks.get(req.params["task_id"])
    if task is None:
        raise not_found(f"task {req.params['task_id']}")
    body = _body(req)
    if "inactive" in body:
        emu.engine.set_inactive(task, bool(body["inactive"]), body.get("reason", "CREDENTIALS"))
    if "fail" in body:
        emu.engine.fail(task, body["fail"], body.get("description", "failed by the emulator"))
    with emu.engine.lock:
        return task.document()


def admin_action(emu: Emulator, req: Request) -> dict:
    """{"task_ids": [...], "message": str, "side": "source"|"destination"}: what an
    endpoint's administrator does (pause, resume, cancel), each task or none."""
    body = _body(req)
    ids = body.get("task_ids")
    if not isinstance(ids, list) or not ids:
        raise bad_request("task_ids must be a non-empty list of task ids")
    found = [emu.engine.tasks.get(str(task_id)) for task_id in ids]
    if None in found:
        raise not_found(f"task {ids[found.index(None)]}")
    action = req.params["action"]
    if action == "resume":
        done = [admin.resume(emu.engine, task) for task in found]
    else:
        side, message = body.get("side", "destination"), body.get("message")
        admin.check(side, message if message is not None else "")
        act = admin.pause if action == "pause" else admin.cancel
        done = [act(emu.engine, task, side, message) for task in found]
    return {"changed": [str(t) for t, changed in zip(ids, done, strict=True) if changed]}


def mint_tokens(emu: Emulator, req: Request) -> dict:
    """Tokens for the emulated user without a login flow (tests and demos)."""
    body = _body(req)
    code = emu.auth.authorize(body.get("client_id", "emulator-test-client"),
                              body.get("scope", ""), emu.user_identity)
    grant = emu.auth.exchange_code(code)
    return dict(emu.auth.token_response(grant), emulator_identity=emu.user_identity)
