"""The emulator's HTTP server: routing, bearer checks, faults, JSON in and out."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from balsam_mp.testing.globus_emulator import (
    auth_routes,
    control_routes,
    endpoint_doc,
    transfer_routes,
)
from balsam_mp.testing.globus_emulator.request import ApiError, Request
from balsam_mp.testing.globus_emulator.state import Emulator

PUBLIC, BEARER, CONTROL = "public", "bearer", "control"
_ID = r"(?P<task_id>[^/]+)"
_EP = r"(?P<endpoint_id>[^/]+)"
T = transfer_routes
ROUTES: list[tuple[str, str, str, Callable[..., Any], str]] = [
    ("GET", r"/v0.10/submission_id", "submission_id", T.submission_id, BEARER),
    ("POST", r"/v0.10/transfer", "submit_transfer", T.submit_transfer, BEARER),
    ("GET", r"/v0.10/task_list", "task_list", T.task_list, BEARER),
    ("GET", rf"/v0.10/task/{_ID}", "get_task", T.get_task, BEARER),
    ("PUT", rf"/v0.10/task/{_ID}", "update_task", T.update_task, BEARER),
    ("GET", rf"/v0.10/task/{_ID}/successful_transfers", "successful_transfers",
     T.successful_transfers, BEARER),
    ("GET", rf"/v0.10/task/{_ID}/skipped_errors", "skipped_errors", T.skipped_errors, BEARER),
    ("GET", rf"/v0.10/task/{_ID}/event_list", "event_list", T.event_list, BEARER),
    ("POST", rf"/v0.10/task/{_ID}/cancel", "cancel_task", T.cancel_task, BEARER),
    ("GET", rf"/v0.10/task/{_ID}/pause_info", "task_pause_info", T.pause_info, BEARER),
    ("GET", rf"/v0.10/operation/endpoint/{_EP}/ls", "operation_ls", T.operation_ls, BEARER),
    ("POST", rf"/v0.10/operation/endpoint/{_EP}/mkdir", "operation_mkdir", T.operation_mkdir,
     BEARER),
    ("GET", rf"/v0.10/endpoint/{_EP}", "get_endpoint", endpoint_doc.get_endpoint, BEARER),
    ("POST", r"/v2/oauth2/token", "token", auth_routes.token, PUBLIC),
    ("POST", r"/v2/oauth2/token/revoke", "revoke", auth_routes.revoke, PUBLIC),
    ("GET", r"/v2/oauth2/authorize", "authorize", auth_routes.authorize, PUBLIC),
    ("GET", r"/v2/oauth2/userinfo", "userinfo", auth_routes.userinfo, BEARER),
    ("GET", r"/v2/web/auth-code", "auth_code_page", auth_routes.auth_code_page, PUBLIC),
    ("GET", r"/v2/api/identities/(?P<identity_id>[^/]+)/consents", "consents",
     auth_routes.consents, BEARER),
    ("GET", r"/\.well-known/openid-configuration", "openid_configuration",
     auth_routes.openid_configuration, PUBLIC),
    ("GET", r"/jwk\.json", "jwk", auth_routes.jwk, PUBLIC),
    ("GET", r"/_emulator/stats", "", control_routes.stats, CONTROL),
    ("GET", r"/_emulator/submissions", "", control_routes.submissions, CONTROL),
    ("GET", r"/_emulator/tasks", "", control_routes.tasks, CONTROL),
    ("POST", rf"/_emulator/tasks/{_ID}", "", control_routes.task_control, CONTROL),
    ("POST", r"/_emulator/admin/(?P<action>pause|resume|cancel)", "",
     control_routes.admin_action, CONTROL),
    ("POST", r"/_emulator/faults", "", control_routes.add_fault, CONTROL),
    ("DELETE", r"/_emulator/faults", "", control_routes.clear_faults, CONTROL),
    ("POST", r"/_emulator/knobs", "", control_routes.set_knobs, CONTROL),
    ("POST", r"/_emulator/consent", "", control_routes.consent, CONTROL),
    ("POST", r"/_emulator/deny", "", control_routes.deny, CONTROL),
    ("POST", r"/_emulator/clients", "", control_routes.add_client, CONTROL),
    ("POST", r"/_emulator/expire_tokens", "", control_routes.expire_tokens, CONTROL),
    ("POST", r"/_emulator/tokens", "", control_routes.mint_tokens, CONTROL),
]
_COMPILED = [(m, re.compile(p + r"/?$"), n, f, k) for m, p, n, f, k in ROUTES]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connections
    disable_nagle_algorithm = True  # else small replies stall 40 ms on delayed ACKs
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            route, params = self._route(method, url.path)
            _, _, name, handler, kind = route
            fault = emu.faults.on_request(name) if kind != CONTROL else None
            if fault is not None and not fault.after:
                return self._fail(fault)
            req = self._request(method, url, raw, params)
            if kind == BEARER:
                req.identity = emu.auth.identity_for(self._bearer())
                if req.identity is None:
                    raise ApiError(401, "AuthenticationFailed", "Token is not active")
                if emu.over_rate_limit(req.identity):
                    raise ApiError(429, "RateLimitExceeded", "slow down", retry_after=1)
            result = handler(emu, req)
            if fault is not None:  # the call took effect; its answer is lost
                return self._fail(fault)
        except ApiError as err:
            headers = {"Retry-After": str(err.extra["retry_after"])} \
                if "retry_after" in err.extra else {}
            body = err.body()
            if url.path.startswith("/v0.10/"):  # Transfer's errors name their resource
                body.setdefault("resource", url.path)
            return self._send(err.status, body, headers)
        status, body, headers = _normalise(result)
        self._send(status, body, headers)

    def _route(self, method: str, path: str):
        for route in _COMPILED:
            match = route[1].match(path)
            if match and route[0] == method:
                return route, match.groupdict()
        raise ApiError(404, "ClientError.NotFound", f"{method} {path} is not a known route")

    def _request(self, method: str, url, raw: bytes, params: dict[str, str]) -> Request:
        content_type = self.headers.get("Content-Type", "")
        body: Any = None
        form: dict[str, str] = {}
        if raw and "application/x-www-form-urlencoded" in content_type:
            form = dict(parse_qsl(raw.decode()))
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "ClientError.BadRequest", "body is not JSON") from None
        headers = {k.lower(): v for k, v in self.headers.items()}
        return Request(method, url.path, dict(parse_qsl(url.query)), body, form, headers, params)

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        return header[7:] if header.lower().startswith("bearer ") else None

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, fault) -> None:
        if fault.drop:
            return self._drop()
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
        self._send(fault.status, ApiError(fault.status, fault.code, fault.message).body(),
                   headers)

    def _drop(self) -> None:
        """An injected dropped connection: close without answering."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _normalise(result: Any) -> tuple[int, Any, dict[str, str]]:
    if isinstance(result, tuple) and len(result) == 3:
        return result
    if isinstance(result, tuple):
        return result[0], result[1], {}
    return 200, result, {}


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, emulator: Emulator, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)  # loopback only, by design
        self.emulator = emulator
        emulator.base_url = f"http://127.0.0.1:{self.server_address[1]}/"
        emulator.auth.issuer = emulator.base_url
