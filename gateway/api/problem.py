"""RFC 9457 problem details, and the middleware that turns every error into one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import ValidationError

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


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    correlation_id = request.headers.get("X-Correlation-ID", "")[:64] or uuid.uuid4().hex
    request[CORRELATION_ID] = correlation_id
    try:
        response = await handler(request)
    except GatewayError as exc:
        log.info("%s %s -> %s %s [%s]", request.method, request.path, exc.status, exc.title,
                 correlation_id)
        return problem(exc.status, exc.title, exc.detail, instance=request.path,
                       correlation_id=correlation_id)
    except ValidationError as exc:
        return problem(422, "Invalid request body", "the body does not match the schema",
                       instance=request.path, correlation_id=correlation_id,
                       errors=_validation_errors(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text or "", instance=request.path,
                       correlation_id=correlation_id)
    except Exception:
        log.exception("unhandled error on %s %s [%s]", request.method, request.path,
                      correlation_id)
        return problem(500, "Internal error", "see the gateway log", instance=request.path,
                       correlation_id=correlation_id)
    response.headers.setdefault("X-Correlation-ID", correlation_id)
    return response
