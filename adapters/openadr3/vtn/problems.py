"""OpenADR problem objects: one exception family, one JSON shape, mapped once at the edge."""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "about:blank"
JSON = "application/json"


class OadrProblem(Exception):
    """A 4xx/5xx answer with an OpenADR problem body. `extra` adds fields (e.g. RFC 6749)."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def bad_request(detail: str) -> OadrProblem:
    return OadrProblem(400, detail)


def forbidden(detail: str) -> OadrProblem:
    return OadrProblem(403, detail)


def not_found(detail: str = "object not found") -> OadrProblem:
    return OadrProblem(404, detail)


def conflict(detail: str) -> OadrProblem:
    return OadrProblem(409, detail)


def unauthorized(detail: str = "a valid bearer token is required") -> OadrProblem:
    return OadrProblem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="openadr3"'})


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem object; `instance` is a correlation id that is also logged."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": f"urn:uuid:{uuid.uuid4()}",
    }
    body.update(extra)
    return body


def problem_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = problem_body(status, detail, **extra)
    if status >= 500:
        log.error("openadr3 problem %s %s: %s", body["instance"], status, detail)
    else:
        log.info("openadr3 problem %s %s: %s", body["instance"], status, detail)
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=JSON, headers=headers
    )


def from_exception(exc: BaseException) -> web.Response:
    """Map any exception reaching the edge to a problem response."""
    if isinstance(exc, OadrProblem):
        return problem_response(exc.status, exc.detail, exc.headers, **exc.extra)
    if isinstance(exc, GatewayError):
        return problem_response(exc.status, exc.detail)
    if isinstance(exc, web.HTTPException):
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow"}}
        return problem_response(exc.status, exc.reason or "error", headers)
    log.exception("openadr3 internal error", exc_info=exc)
    return problem_response(500, "internal error")
