"""Certificate or bearer token -> a Participant on the request, and nothing raw past it."""

from __future__ import annotations

from aiohttp import web

from gateway.api.keys import ACTOR, SERVICES
from gateway.api.problem import Handler
from gateway.domain import Participant
from gateway.errors import Unauthenticated
from pki.identity import sha256_hex
from pki.tls import peer_certificate_der

PUBLIC_PATHS = frozenset({"/v1/health", "/v1/openapi.json"})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("use 'Authorization: Bearer <token>' or a client certificate")
        _set_actor(request, await services.authenticate_token(token.strip()))
        return await handler(request)
    der = peer_certificate_der(request.transport)
    if der is None:
        raise Unauthenticated("a client certificate or a bearer token is required")
    actor = await services.participant_by_cert(sha256_hex(der))
    if actor is None:
        raise Unauthenticated("this client certificate is not registered to any participant")
    _set_actor(request, actor)
    return await handler(request)


def _set_actor(request: web.Request, actor: Participant) -> None:
    request[ACTOR] = actor
