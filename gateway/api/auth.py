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
# Paths that authenticate by themselves: the status page (its own sign-in and session
# cookie, gateway.ui) and /metrics (the admin, or a loopback scraper if the settings allow).
SELF_AUTHENTICATING = ("/ui/", "/metrics")


def _self_authenticating(path: str) -> bool:
    return path == "/ui" or any(path == p or path.startswith(p) for p in SELF_AUTHENTICATING)


async def authenticate(request: web.Request) -> Participant:
    """The participant behind the request's bearer token or client certificate."""
    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("use 'Authorization: Bearer <token>' or a client certificate")
        return await services.authenticate_token(token.strip())
    der = peer_certificate_der(request.transport)
    if der is None:
        raise Unauthenticated("a client certificate or a bearer token is required")
    actor = await services.participant_by_cert(sha256_hex(der))
    if actor is None:
        raise Unauthenticated("this client certificate is not registered to any participant")
    return actor


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or _self_authenticating(request.path):
        return await handler(request)
    request[ACTOR] = await authenticate(request)
    return await handler(request)
