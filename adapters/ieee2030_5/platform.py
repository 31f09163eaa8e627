"""Platform routes (mounted under /v1/adapters/<name>): the 2030.5 settings the platform
changes - poll and post rates, client certificates' access, a DER's program layout, primacy
and randomisation - and a DER's 2030.5 documents.

Who may do what (the core checks `Access` first: the role, then that every DER a call
`concerns` is in the caller's area; docs/ieee2030_5.md has the table):

- a DER's program settings (read or change): the admin, or an LDC whose area holds the DER
  that the LFDI names; an LFDI that names no DER yet only the admin may pre-provision;
- a client certificate's access (an aggregator's view of its DERs, or revoked), and the
  poll and post rates every client gets: the admin only;
- a DER's 2030.5 documents: whoever sees the DER (the admin and the ISO every DER, an LDC
  those in its area, an aggregator its own).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from adapters.ieee2030_5.function_sets import documents, programs
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.tree import ResourceTree
from adapters.ieee2030_5.render import Renderer
from adapters.ieee2030_5.state import AdapterState
from gateway.domain import Role
from gateway.errors import InvalidInput, NotFound
from gateway.ports import Access, BodyReader, Concern, GatewayPort, PlatformRoute, actor

ADMIN = frozenset({Role.ADMIN})
DER_STEWARDS = frozenset({Role.ADMIN, Role.LDC})
EVERYONE = frozenset(Role)
_LFDI = re.compile(r"^[0-9A-F]{40}$")


class PlatformRoutes:
    def __init__(self, name: str, gateway: GatewayPort, body: BodyReader,
                 registry: EndDeviceRegistry, tree: ResourceTree, renderer: Renderer,
                 state: AdapterState) -> None:
        self.name = name
        self.gateway = gateway
        self.body = body
        self.registry = registry
        self.tree = tree
        self.renderer = renderer
        self.state = state

    def routes(self) -> list[PlatformRoute]:
        program = Access(DER_STEWARDS, concerns=self.der_of_lfdi)
        return [
            PlatformRoute("GET", "/rates", self.get_rates, "2030.5 poll and post rates",
                          Access(DER_STEWARDS), openapi=_ok("rates by kind and resource")),
            PlatformRoute("PUT", "/rates/{kind}", self.put_rate,
                          "Set a pollRate (kind=poll) or postRate (kind=post) for every client",
                          Access(ADMIN), openapi=_ok("the new rates")),
            PlatformRoute("PUT", "/clients/{lfdi}", self.put_client,
                          "Grant a client certificate an aggregator's view, or revoke it",
                          Access(ADMIN), openapi=_ok("recorded")),
            PlatformRoute("PUT", "/programs/{lfdi}", self.put_program,
                          "Set a DER's DERProgram layout, primacy, randomizeStart", program,
                          openapi=_ok("the DER's program settings")),
            PlatformRoute("GET", "/programs/{lfdi}", self.get_program,
                          "A DER's DERProgram layout and settings", program,
                          openapi=_ok("the DER's program settings")),
            PlatformRoute("GET", "/ders/{resource_id}", self.get_der_documents,
                          "A DER's DERCapability, DERSettings, DERStatus and DERAvailability "
                          "as its client posted them",
                          Access(EVERYONE, concerns=self.der_of_path),
                          openapi=_ok("the documents (XML), null where none")),
        ]

    # --- what a call concerns ---------------------------------------------------------------

    async def der_of_lfdi(self, request: web.Request) -> Concern:
        """The DERs the path's LFDI names. One that names none is the admin's alone."""
        lfdi = _lfdi(request)
        found = await self.gateway.find_resources(self.name, lfdi=lfdi)
        if not found and actor(request).role is not Role.ADMIN:
            raise NotFound(f"no 2030.5 DER with LFDI {lfdi} in your view")
        return Concern(resources=frozenset(r.id for r in found))

    async def der_of_path(self, request: web.Request) -> Concern:
        return Concern(resources=frozenset({request.match_info["resource_id"]}))

    # --- handlers ---------------------------------------------------------------------------

    async def _json(self, request: web.Request) -> dict[str, Any]:
        doc = await self.body.read_json(request)  # (size, depth, duplicate keys: 400)
        if not isinstance(doc, dict):
            raise InvalidInput("body must be a JSON object")
        return doc

    async def get_rates(self, request: web.Request) -> web.Response:
        return web.json_response(self.tree.rates)

    async def put_rate(self, request: web.Request) -> web.Response:
        doc = await self._json(request)
        try:
            resource, seconds = str(doc["resource"]), doc["seconds"]
        except KeyError:
            raise InvalidInput('expected {"resource": name, "seconds": n}') from None
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise InvalidInput("seconds must be an integer")
        await self.renderer.set_rate(request.match_info["kind"], resource, seconds)
        return web.json_response(self.tree.rates)

    async def put_client(self, request: web.Request) -> web.Response:
        doc = await self._json(request)
        lfdi = _lfdi(request)
        unknown = set(doc) - {"aggregator_id", "granted"}
        if unknown:
            raise InvalidInput(f"unknown keys {sorted(unknown)}")
        aggregator = doc.get("aggregator_id")
        granted = doc.get("granted", True)
        if not isinstance(granted, bool):
            raise InvalidInput("granted must be true or false")
        if aggregator is not None:
            found = await self.gateway.participant(str(aggregator))
            if found is None or found.role is not Role.AGGREGATOR:
                raise InvalidInput(f"{aggregator!r} is not an aggregator participant")
        await self.registry.set_client_access(
            lfdi, None if aggregator is None else str(aggregator), granted)
        return web.json_response({"lfdi": lfdi, **doc})

    def _shown(self, lfdi: str) -> dict[str, Any]:
        settings = self.tree.program_settings(lfdi)
        layout = programs.resolve(self.tree.layout, settings)
        return {**{k: v for k, v in settings.items() if k != "programs"},
                "programs": programs.to_json(layout)}

    async def put_program(self, request: web.Request) -> web.Response:
        """Merge primacy / randomize_start / programs (a layout; null: the configured one)
        into a DER's program settings."""
        doc = await self._json(request)
        lfdi = _lfdi(request)
        unknown = set(doc) - {"primacy", "randomize_start", "programs"}
        if unknown:
            raise InvalidInput(f"unknown keys {sorted(unknown)}")
        settings = dict(self.tree.program_settings(lfdi))
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
        await self.renderer.set_program(lfdi, settings)
        return web.json_response(self._shown(lfdi))

    async def get_program(self, request: web.Request) -> web.Response:
        return web.json_response(self._shown(_lfdi(request)))

    async def get_der_documents(self, request: web.Request) -> web.Response:
        """What a DER's 2030.5 client last PUT: DERCapability, DERSettings, DERStatus,
        DERAvailability (each as the XML it sent, null if none yet)."""
        rid = request.match_info["resource_id"]
        record = self.registry.by_resource(rid)
        if record is None:
            raise NotFound("no such 2030.5 DER")
        docs = {name: await self.state.der_document(record.id, which)
                for which, name in documents.DER_DOCS.items()}
        return web.json_response({"resource_id": rid, "lfdi": record.lfdi, **docs})


def _lfdi(request: web.Request) -> str:
    lfdi = request.match_info["lfdi"].upper()
    if not _LFDI.match(lfdi):
        raise InvalidInput("lfdi must be 40 hex characters")
    return lfdi


def _ok(description: str) -> dict[str, Any]:
    return {"responses": {"200": {"description": description}}}
