"""Typed application keys for the platform API's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.body import BodyReader
    from gateway.bus import InProcessBus
    from gateway.domain import Participant
    from gateway.services import GatewayServices
    from gateway.store.engine import Database

SERVICES: web.AppKey[GatewayServices] = web.AppKey("services")
BODY: web.AppKey[BodyReader] = web.AppKey("body")
BUS: web.AppKey[InProcessBus] = web.AppKey("bus")
DATABASE: web.AppKey[Database] = web.AppKey("database")
STATUS: web.AppKey[dict[str, Any]] = web.AppKey("status")

# Per-request state, set by the middlewares.
ACTOR: web.RequestKey[Participant] = web.RequestKey("actor")  # the authenticated Participant
CORRELATION_ID: web.RequestKey[str] = web.RequestKey("correlation_id")
