"""Platform routes (mounted under /v1/adapters/ieee2030_5 behind platform authentication):
2030.5 settings that the platform changes - poll and post rates, aggregator client access,
program primacy and randomisation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.ieee2030_5.service import Ieee2030Service
from gateway.api.keys import ACTOR
from gateway.domain import Role
from gateway.errors import Forbidden, InvalidInput


def _admin(request: web.Request) -> Any:
    actor = request.get(ACTOR)
    if actor is None or actor.role not in (Role.ADMIN, Role.LDC):
        raise Forbidden("only the platform operator or an LDC may change 2030.5 settings")
    return actor


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except ValueError:
        raise InvalidInput("body must be JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("body must be a JSON object")
    return doc


def routes(service: Ieee2030Service) -> list[web.AbstractRouteDef]:
    async def put_rate(request: web.Request) -> web.Response:
        _admin(request)
        doc = await _json(request)
        kind = request.match_info["kind"]
        try:
            await service.set_rate(kind, str(doc["resource"]), int(doc["seconds"]))
        except (KeyError, TypeError, ValueError):
            raise InvalidInput("expected {\"resource\": name, \"seconds\": n}") from None
        return web.json_response(service.rates)

    async def put_client(request: web.Request) -> web.Response:
        _admin(request)
        doc = await _json(request)
        lfdi = request.match_info["lfdi"].upper()
        if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
            raise InvalidInput("lfdi must be 40 hex characters")
        aggregator = doc.get("aggregator_id")
        await service.registry.set_client_access(
            lfdi, None if aggregator is None else str(aggregator), bool(doc.get("granted", True)))
        return web.json_response({"lfdi": lfdi, **doc})

    async def put_program(request: web.Request) -> web.Response:
        _admin(request)
        doc = await _json(request)
        lfdi = request.match_info["lfdi"].upper()
        if len(lfdi) != 40:
            raise InvalidInput("lfdi must be 40 hex characters")
        try:
            program = {**service.program_settings(lfdi),
                       **{k: int(v) for k, v in doc.items() if k in ("primacy", "randomize_start")}}
        except (TypeError, ValueError):
            raise InvalidInput("primacy and randomize_start must be integers") from None
        if not 0 <= program.get("primacy", 0) <= 255 or \
                abs(program.get("randomize_start", 0)) > 3600:
            raise InvalidInput("primacy is 0..255, randomize_start -3600..3600")
        await service.set_program(lfdi, program)
        return web.json_response(program)

    async def get_rates(request: web.Request) -> web.Response:
        _admin(request)
        return web.json_response(service.rates)

    return [
        web.get("/rates", get_rates),
        web.put("/rates/{kind}", put_rate),
        web.put("/clients/{lfdi}", put_client),
        web.put("/programs/{lfdi}", put_program),
    ]


OPENAPI: dict[str, Any] = {
    "/rates": {"get": {"summary": "2030.5 poll and post rates", "responses": {"200": {
        "description": "rates by kind and resource name"}}}},
    "/rates/{kind}": {"put": {"summary": "Set a pollRate (kind=poll) or postRate (kind=post)",
                              "responses": {"200": {"description": "the new rates"}}}},
    "/clients/{lfdi}": {"put": {"summary": "Grant or revoke a client certificate",
                                "responses": {"200": {"description": "recorded"}}}},
    "/programs/{lfdi}": {"put": {"summary": "Set DERProgram primacy / randomizeStart",
                                 "responses": {"200": {"description": "recorded"}}}},
}
