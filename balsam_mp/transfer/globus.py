"""The Globus backend, on globus-sdk 4.x.

Paths on the site's own endpoint are mapped through `globus_endpoint_site_path`: the
site directory's prefix is replaced by it (destination for stage-in, source for
stage-out). Errors are typed from the SDK's fields (`http_status`, `code`,
`info.consent_required`), never from message text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager

import globus_sdk
from globus_sdk.scopes import ScopeParser

from balsam_mp.transfer.base import (
    FINISHED,
    ConsentRequired,
    FileFailure,
    FileSpec,
    LoginRequired,
    PermanentError,
    RetryableError,
    TaskOptions,
    TaskStatus,
    TransferBackend,
)
from balsam_mp.transfer.filecopy import SYNC_LEVELS
from balsam_mp.transfer.ratelimit import RateLimiter, SharedRateLimiter, TokenSource

POLL_CHUNK = 100  # task ids per task_list request (keeps the URL short)
_DATA_ACCESS = ("https://auth.globus.org/scopes/", "/data_access")


class GlobusBackend(TransferBackend):
    def __init__(self, client: globus_sdk.TransferClient, local_endpoint: str,
                 site_path: str, endpoint_site_path: str | None = None,
                 requests_per_second: float = 10.0, budget: TokenSource | None = None) -> None:
        self.client = client
        # with a budget: the rate is the identity's, shared with the site's other workers
        self.limiter = SharedRateLimiter(budget, requests_per_second) if budget else \
            RateLimiter(requests_per_second)
        self.local_endpoint = local_endpoint
        self.site_path = site_path.rstrip("/") or "/"
        self.endpoint_site_path = endpoint_site_path
        self.pause_messages: dict[str, str] = {}  # task id -> why it is paused

    # -- path mapping ---------------------------------------------------------------

    def to_endpoint(self, local_path: str) -> str:
        if self.endpoint_site_path is None:
            return local_path
        relative = posixpath.relpath(posixpath.normpath(local_path), self.site_path)
        if relative == ".." or relative.startswith("../"):
            raise PermanentError(f"{local_path} is outside the site directory {self.site_path}")
        return posixpath.normpath(posixpath.join(self.endpoint_site_path, relative))

    def from_endpoint(self, endpoint_path: str) -> str:
        if self.endpoint_site_path is None:
            return endpoint_path
        relative = posixpath.relpath(endpoint_path, self.endpoint_site_path)
        return posixpath.normpath(posixpath.join(self.site_path, relative))

    # -- the interface --------------------------------------------------------------

    def get_submission_id(self) -> str:
        with self._call():
            return self.client.get_submission_id()["value"]

    def submit(self, direction: str, remote_address: str, files: list[FileSpec],
               submission_id: str, options: TaskOptions) -> str:
        if not files:
            raise PermanentError("refusing to submit an empty batch")
        inbound = direction == "in"
        source, destination = (remote_address, self.local_endpoint) if inbound else \
            (self.local_endpoint, remote_address)
        data = globus_sdk.TransferData(
            source, destination, label=options.label, submission_id=submission_id,
            sync_level=SYNC_LEVELS[options.sync_level] if options.sync_level else None,
            verify_checksum=options.verify_checksum, deadline=options.deadline,
            skip_source_errors=options.skip_source_errors, encrypt_data=options.encrypt_data,
            notify_on_succeeded=False,
            notify_on_failed=False, notify_on_inactive=False,
        )
        if not options.sync_level:
            del data["sync_level"]
        for spec in files:
            src = spec.src if inbound else self.to_endpoint(spec.src)
            dest = self.to_endpoint(spec.dest) if inbound else spec.dest
            data.add_item(src, dest, recursive=spec.recursive)
        with self._call([source, destination]):
            return self.client.submit_transfer(data)["task_id"]

    def poll(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        found: dict[str, TaskStatus] = {}
        for start in range(0, len(task_ids), POLL_CHUNK):
            chunk = task_ids[start:start + POLL_CHUNK]
            with self._call():
                page = self.client.task_list(filter={"task_id": chunk}, limit=len(chunk))
            for doc in page["DATA"]:
                found[doc["task_id"]] = _status(doc, self._pause_message(doc))
        return found

    def _pause_message(self, doc: dict) -> str | None:
        """Why an administrator paused a task: asked once per pause (GET pause_info)."""
        task_id = doc["task_id"]
        if not doc.get("is_paused") or doc.get("status") in FINISHED:
            self.pause_messages.pop(task_id, None)
            return None
        if task_id not in self.pause_messages:
            try:
                with self._call():
                    info = self.client.task_pause_info(task_id).data
            except PermanentError as exc:  # the pause matters more than why
                info = {"why": f"paused; its pause_info was refused ({exc})"}
            self.pause_messages[task_id] = pause_text(info)
        return self.pause_messages[task_id]

    def failures(self, task_id: str, direction: str) -> list[FileFailure]:
        local_is_source = direction == "out"
        failures = []
        with self._call():  # one wait per page would be exact; failures are rare
            for page in self.client.paginated.task_skipped_errors(task_id):
                for row in page:
                    src, dest = row["source_path"], row["destination_path"]
                    if local_is_source:
                        src = self.from_endpoint(src)
                    else:
                        dest = self.from_endpoint(dest)
                    failures.append(FileFailure(src, dest, row.get("error_code") or "UNKNOWN",
                                                row.get("error_details") or ""))
        return failures

    def cancel(self, task_id: str) -> None:
        with self._call():
            self.client.cancel_task(task_id)


    @contextmanager
    def _call(self, endpoints: list[str] | None = None) -> Iterator[None]:
        """One request: wait for the rate limit, then map its errors."""
        self.limiter.wait()
        with _mapped_errors(endpoints):
            yield


# pause_info's messages, each from one endpoint's administrator
PAUSE_MESSAGES = (("source", "source_pause_message"),
                  ("destination", "destination_pause_message"),
                  ("source share", "source_pause_message_share"),
                  ("destination share", "destination_pause_message_share"))


def pause_text(info: dict) -> str:
    """Who paused a task and why, from its pause_info: the administrators' messages,
    then the pause rules' (a rule pauses every task on its endpoint)."""
    said = [f"the {side} endpoint's administrator: {info[key]}"
            for side, key in PAUSE_MESSAGES if info.get(key)]
    said += [f"pause rule: {rule['message']}" for rule in info.get("pause_rules") or []
             if rule.get("message")]
    text = "; ".join(said) or info.get("why") or "by an endpoint administrator (no message)"
    return " ".join(text.split())  # one line, whatever the administrator typed


def _status(doc: dict, pause_message: str | None = None) -> TaskStatus:
    fatal = dict(doc.get("fatal_error") or {})
    if doc.get("canceled_by_admin"):  # SOURCE, DESTINATION or BOTH: not our cancel
        who = {"SOURCE": "the source endpoint's administrator",
               "DESTINATION": "the destination endpoint's administrator"}.get(
            doc["canceled_by_admin"], "both endpoints' administrators")
        said = " ".join(str(doc.get("canceled_by_admin_message") or "").split())
        fatal = {"code": "CANCELED_BY_ADMIN",
                 "description": f"cancelled by {who}: {said}".rstrip(": ")}
    return TaskStatus(
        task_id=doc["task_id"], status=doc["status"], nice_status=doc.get("nice_status"),
        nice_status_details=doc.get("nice_status_details"),
        files=doc.get("files") or 0, files_transferred=doc.get("files_transferred") or 0,
        files_skipped=doc.get("files_skipped") or 0,
        bytes_transferred=doc.get("bytes_transferred") or 0,
        bytes_per_second=float(doc.get("effective_bytes_per_second") or 0),
        skipped_errors=doc.get("subtasks_skipped_errors") or 0, faults=doc.get("faults") or 0,
        fatal_code=fatal.get("code"), fatal_error=fatal.get("description"),
        paused=bool(doc.get("is_paused")), pause_message=pause_message,
    )


def consent_endpoints(required_scopes: list[str]) -> list[str]:
    """Endpoint ids of the data_access scopes a ConsentRequired error asks for."""
    found: list[str] = []
    pending = [scope for text in required_scopes for scope in ScopeParser.parse(text)]
    while pending:
        scope = pending.pop(0)
        pending.extend(scope.dependencies)
        name = scope.scope_string
        if name.startswith(_DATA_ACCESS[0]) and name.endswith(_DATA_ACCESS[1]):
            endpoint = name[len(_DATA_ACCESS[0]):-len(_DATA_ACCESS[1])]
            if endpoint not in found:
                found.append(endpoint)
    return found


@contextmanager
def _mapped_errors(endpoints: list[str] | None = None) -> Iterator[None]:
    """Turn SDK errors into the backend's typed errors (after the SDK's own retries)."""
    try:
        yield
    except globus_sdk.NetworkError as err:
        raise RetryableError(f"cannot reach Globus: {type(err).__name__}") from err
    except globus_sdk.GlobusAPIError as err:
        status, code = err.http_status, err.code or ""
        if err.info.consent_required:
            needed = consent_endpoints(list(err.info.consent_required.required_scopes or []))
            raise ConsentRequired(needed or list(endpoints or [])) from err
        if status == 401:
            raise LoginRequired(f"Globus rejected the credentials ({code})") from err
        if isinstance(err, globus_sdk.AuthAPIError) and status < 500:
            # Globus Auth refused to refresh the tokens (e.g. 400 invalid_grant: a
            # refresh token revoked or expired): a login is needed, not a bad batch
            raise LoginRequired(f"Globus Auth refused the login's tokens ({status} "
                                f"{code})") from err
        if status == 429 or status >= 500 or code == "LimitExceeded":
            raise RetryableError(f"Globus is unavailable: {status} {code}") from err
        raise PermanentError(f"Globus refused the request: {status} {code}: {err.message}",
                             "PERMISSION_DENIED" if status == 403 else "BAD_REQUEST") from err
