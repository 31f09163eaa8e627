"""Platform routes (mounted under /v1/adapters/ieee2030_5 behind platform authentication):
2030.5 settings that the platform changes - poll and post rates, aggregator client access,
program layout, primacy and randomisation."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from adapters.ieee2030_5 import programs, views
from adapters.ieee2030_5.service import Ieee2030Service
from gateway.api.keys import ACTOR
from gateway.authz import area_of
from gateway.domain import Role
from gateway.errors import Forbidden, InvalidInput, NotFound


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

    def _lfdi(request: web.Request) -> str:
        lfdi = request.match_info["lfdi"].upper()
        if len(lfdi) != 40 or any(c not in "0123456789ABCDEF" for c in lfdi):
            raise InvalidInput("lfdi must be 40 hex characters")
        return lfdi

    def _shown(lfdi: str) -> dict[str, Any]:
        settings = service.program_settings(lfdi)
        layout = programs.resolve(service.layout, settings)
        return {**{k: v for k, v in settings.items() if k != "programs"},
                "programs": programs.to_json(layout)}

    async def put_program(request: web.Request) -> web.Response:
        """Merge primacy / randomize_start / programs (a layout; null: the configured one)
        into a DER's program settings."""
        _admin(request)
        doc = await _json(request)
        lfdi = _lfdi(request)
        unknown = set(doc) - {"primacy", "randomize_start", "programs"}
        if unknown:
            raise InvalidInput(f"unknown keys {sorted(unknown)}")
        settings = dict(service.program_settings(lfdi))
        for key in ("primacy", "randomize_start"):
            if key in doc:
                value = doc[key]
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InvalidInput(f"{key} must be an integer")
                settings[key] = value
        if not 0 <= settings.get("primacy", 0) <= 255 or \
                abs(settings.get("randomize_start", 0)) > 3600:
            raise InvalidInput("primacy is 0..255, randomize_start -3600..3600")
        if "programs" in doc:
            if doc["programs"] is None:
                settings.pop("programs", None)
            else:
                settings["programs"] = programs.to_json(programs.parse(doc["programs"]))
                settings.pop("primacy", None)  # the layout states every program's primacy
        await service.set_program(lfdi, settings)
        return web.json_response(_shown(lfdi))

    async def get_program(request: web.Request) -> web.Response:
        _admin(request)
        return web.json_response(_shown(_lfdi(request)))

    async def get_der_documents(request: web.Request) -> web.Response:
        """What a DER's 2030.5 client last PUT: DERCapability, DERSettings, DERStatus,
        DERAvailability (each as the XML it sent, null if none yet). Admin and ISO see
        every DER, an LDC those in its area, an aggregator its own."""
        actor = request.get(ACTOR)
        rid = request.match_info["resource_id"]
        area = area_of(actor, await service.gateway.topology()) if actor else set()
        record = service.registry.by_resource(rid)
        if (area is not None and rid not in area) or record is None:
            raise NotFound("no such 2030.5 DER")
        docs = {}
        for which, name in views.DER_DOCS.items():
            stored = await service.state.der_document(record.id, which)
            docs[name] = stored
        return web.json_response({"resource_id": rid, "lfdi": record.lfdi, **docs})

    async def get_rates(request: web.Request) -> web.Response:
        _admin(request)
        return web.json_response(service.rates)

    return [
        web.get("/rates", get_rates),
        web.put("/rates/{kind}", put_rate),
        web.put("/clients/{lfdi}", put_client),
        web.put("/programs/{lfdi}", put_program),
        web.get("/programs/{lfdi}", get_program),
        web.get("/ders/{resource_id}", get_der_documents),
    ]


OPENAPI: dict[str, Any] = {
    "/rates": {"get": {"summary": "2030.5 poll and post rates", "responses": {"200": {
        "description": "rates by kind and resource name"}}}},
    "/rates/{kind}": {"put": {"summary": "Set a pollRate (kind=poll) or postRate (kind=post)",
                              "responses": {"200": {"description": "the new rates"}}}},
    "/clients/{lfdi}": {"put": {"summary": "Grant or revoke a client certificate",
                                "responses": {"200": {"description": "recorded"}}}},
    "/ders/{resource_id}": {"get": {
        "summary": "A DER's DERCapability, DERSettings, DERStatus and DERAvailability as posted",
        "responses": {"200": {"description": "the documents (XML), null where none"}}}},
    "/programs/{lfdi}": {
        "put": {"summary": "Set a DER's DERProgram layout, primacy, randomizeStart",
                "responses": {"200": {"description": "the DER's program settings"}}},
        "get": {"summary": "A DER's DERProgram layout and settings",
                "responses": {"200": {"description": "the DER's program settings"}}}},
}
