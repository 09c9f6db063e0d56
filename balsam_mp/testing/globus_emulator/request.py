"""The request and error types every emulator route shares."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    form: dict[str, str]
    headers: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)  # from the route's pattern
    identity: str | None = None  # set for authenticated Transfer calls


class ApiError(Exception):
    """Rendered as Globus renders errors: a JSON body with code, message, request_id."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "request_id": request_id(),
                **self.extra}


def request_id() -> str:
    """An id for one request, as Globus puts in every answer (e.g. '7HgMVYazI')."""
    return uuid.uuid4().hex[:9]


def not_found(what: str) -> ApiError:
    return ApiError(404, "ClientError.NotFound", f"{what} not found")


def bad_request(message: str, code: str = "ClientError.BadRequest") -> ApiError:
    return ApiError(400, code, message)
