"""RFC 9457 problem details, and the middleware that turns every error into one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

from gateway import logs
from gateway.api.keys import CORRELATION_ID
from gateway.errors import GatewayError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str = "", *, instance: str = "",
            correlation_id: str = "", errors: list[dict[str, object]] | None = None
            ) -> web.Response:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if correlation_id:
        body["correlation_id"] = correlation_id
    if errors:
        body["errors"] = errors
    return web.json_response(body, status=status, content_type=PROBLEM_JSON)


def _validation_errors(exc: ValidationError) -> list[dict[str, object]]:
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()]


def _correlation_id(request: web.Request) -> str:
    """The caller's X-Correlation-ID if it is a sane token (it goes into the log), else new."""
    offered = request.headers.get("X-Correlation-ID", "")[:64]
    if offered and all(c.isalnum() or c in "-_.:" for c in offered):
        return offered
    return uuid.uuid4().hex


def _refused(request: web.Request, status: int, title: str, detail: str,
             correlation_id: str) -> None:
    """Every error answer is logged with its correlation id, so the id a client reports
    finds the line (and what was logged while serving it)."""
    log.info("%s %s -> %s %s: %s [%s]", request.method, request.path, status, title,
             detail[:200], correlation_id)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    correlation_id = _correlation_id(request)
    request[CORRELATION_ID] = correlation_id
    logs.correlation_id.set(correlation_id)
    try:
        response = await handler(request)
    except GatewayError as exc:
        _refused(request, exc.status, exc.title, exc.detail, correlation_id)
        return problem(exc.status, exc.title, exc.detail, instance=request.path,
                       correlation_id=correlation_id)
    except ValidationError as exc:
        errors = _validation_errors(exc)
        _refused(request, 422, "Invalid request body",
                 "; ".join(f"{e['loc']}: {e['msg']}" for e in errors), correlation_id)
        return problem(422, "Invalid request body", "the body does not match the schema",
                       instance=request.path, correlation_id=correlation_id, errors=errors)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        _refused(request, exc.status, exc.reason, exc.text or "", correlation_id)
        return problem(exc.status, exc.reason, exc.text or "", instance=request.path,
                       correlation_id=correlation_id)
    except Exception:
        log.exception("unhandled error on %s %s [%s]", request.method, request.path,
                      correlation_id)
        return problem(500, "Internal error", "see the gateway log", instance=request.path,
                       correlation_id=correlation_id)
    response.headers.setdefault("X-Correlation-ID", correlation_id)
    return response
