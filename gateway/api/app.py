"""The platform API application: one route table, from which the OpenAPI document is built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import authz
from gateway.api import routes as r
from gateway.api.auth import PUBLIC_PATHS, auth_middleware, authenticate
from gateway.api.events import stream_events
from gateway.api.keys import ACTOR, BODY, BUS, DATABASE, SERVICES, STATUS
from gateway.api.problem import Handler, problem_middleware
from gateway.api.routes import RouteSpec
from gateway.api.schemas import ConnectionPointIn, InstructionIn, ParticipantIn, ResourceIn, TokenIn
from gateway.body import BodyReader
from gateway.bus import InProcessBus
from gateway.errors import Forbidden
from gateway.metrics import GatewayMetrics, metrics_handler
from gateway.ports import PlatformRoute
from gateway.services import GatewayServices
from gateway.store.engine import Database
from gateway.ui import mount_ui

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("GET", "/v1/health", r.health, "Liveness", public=True),
    RouteSpec("GET", "/v1/me", r.me, "The authenticated participant"),
    RouteSpec("GET", "/v1/status", r.get_status, "Listeners, DERs, controls, acknowledgements"),
    RouteSpec("POST", "/v1/participants", r.post_participants, "Register participants (admin)",
              ParticipantIn, bulk=True, created=True),
    RouteSpec("GET", "/v1/participants", r.get_participants, "List participants",
              query=("role",)),
    RouteSpec("GET", "/v1/participants/{participant_id}", r.get_participant, "One participant"),
    RouteSpec("PUT", "/v1/participants/{participant_id}", r.put_participant,
              "Correct a participant: name, certificate, DSO model, host LDC (admin)",
              ParticipantIn),
    RouteSpec("DELETE", "/v1/participants/{participant_id}", r.delete_participant,
              "Remove a participant no longer referenced (admin)"),
    RouteSpec("POST", "/v1/participants/{participant_id}/tokens", r.post_token,
              "Issue a bearer token (admin); shown once", TokenIn, created=True),
    RouteSpec("DELETE", "/v1/tokens/{token_id}", r.delete_token, "Revoke a token (admin)"),
    RouteSpec("POST", "/v1/connection-points", r.post_connection_points,
              "Register connection points", ConnectionPointIn, bulk=True, created=True),
    RouteSpec("GET", "/v1/connection-points", r.get_connection_points, "List connection points"),
    RouteSpec("POST", "/v1/resources", r.post_resources, "Register DERs", ResourceIn, bulk=True,
              created=True),
    RouteSpec("GET", "/v1/resources", r.get_resources, "List DERs in your view",
              query=("limit", "offset")),
    RouteSpec("GET", "/v1/resources/{resource_id}", r.get_resource, "One DER"),
    RouteSpec("PUT", "/v1/resources/{resource_id}", r.put_resource,
              "Replace a DER's registration (ratings, kind, binding, connection point)",
              ResourceIn),
    RouteSpec("DELETE", "/v1/resources/{resource_id}", r.delete_resource,
              "Remove a DER (its acknowledgements and readings are kept)"),
    RouteSpec("GET", "/v1/resources/{resource_id}/effective-control", r.get_effective_control,
              "A DER's effective control with provenance"),
    RouteSpec("GET", "/v1/effective-controls", r.get_effective_controls,
              "Effective controls in your view", query=("resource_id",)),
    RouteSpec("POST", "/v1/instructions", r.post_instruction,
              "Submit an instruction (Idempotency-Key makes retries safe)", InstructionIn,
              created=True),
    RouteSpec("GET", "/v1/instructions", r.get_instructions, "Instructions in your view",
              query=("all", "limit", "offset")),
    RouteSpec("GET", "/v1/instructions/{instruction_id}", r.get_instruction, "One instruction"),
    RouteSpec("POST", "/v1/instructions/{instruction_id}/cancel", r.cancel_instruction,
              "Cancel an instruction (its issuer only)"),
    RouteSpec("GET", "/v1/acknowledgements", r.get_acknowledgements, "Acknowledgements",
              query=("resource_id", "instruction_id", "after", "limit")),
    RouteSpec("GET", "/v1/readings", r.get_readings, "Readings",
              query=("resource_id", "quantity", "since", "after", "limit")),
    RouteSpec("GET", "/v1/notices", r.get_notices, "Limitation and shortfall notices for you",
              query=("after", "limit")),
    RouteSpec("GET", "/v1/events", stream_events,
              "Server-sent events: acknowledgements, readings, notices, control, instruction "
              "and participant changes (topics: comma-separated subset)",
              query=("after", "topics")),
)


def build_openapi(extra_paths: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    problem_ref = {"$ref": "#/components/responses/Problem"}
    for spec in ROUTES:
        op: dict[str, Any] = {"summary": spec.summary,
                              "operationId": spec.handler.__name__,
                              "responses": {"201" if spec.created else "200":
                                            {"description": "OK"},
                                            "4XX": problem_ref}}
        if spec.public:
            op["security"] = []
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in _path_params(spec.path)]
        params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                   for q in spec.query]
        if params:
            op["parameters"] = params
        if spec.body is not None:
            name = spec.body.__name__
            schema = spec.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
            ref = {"$ref": f"#/components/schemas/{name}"}
            body_schema = {"oneOf": [ref, {"type": "array", "items": ref}]} if spec.bulk else ref
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": body_schema}}}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    paths.update(extra_paths or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "der-gateway platform API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "clientCertificate": {"type": "mutualTLS"}},
            "responses": {"Problem": {"description": "Problem details (RFC 9457)",
                                      "content": {"application/problem+json": {}}}},
        },
        "security": [{"bearer": []}, {"clientCertificate": []}],
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def guarded(route: PlatformRoute, services: GatewayServices) -> Handler:
    """The core's authorisation in front of an adapter's handler: role, then area."""
    access = route.access

    async def handler(request: web.Request) -> web.StreamResponse:
        who = request[ACTOR]
        if who.role not in access.roles:
            raise Forbidden(f"a participant with role {who.role.value} may not "
                            f"{route.method} this resource")
        if access.concerns is not None:
            authz.check_concern(who, await access.concerns(request), await services.topology())
        return await route.handler(request)

    handler.__name__ = getattr(route.handler, "__name__", "adapter_route")
    return handler


def _adapter_operation(route: PlatformRoute) -> dict[str, Any]:
    roles = ", ".join(sorted(r.value for r in route.access.roles))
    return {"summary": route.summary,
            "description": f"Allowed to: {roles}"
                           + ("; only within the caller's area" if route.access.concerns
                              else ""),
            "responses": {"200": {"description": "OK"},
                          "4XX": {"$ref": "#/components/responses/Problem"}},
            **route.openapi}


def make_platform_app(
    services: GatewayServices,
    bus: InProcessBus,
    db: Database,
    *,
    status: Callable[[], Awaitable[dict[str, Any]]],
    ready: Callable[[], dict[str, str]] = dict,
    max_body_bytes: int = 1_048_576,
    adapter_routes: dict[str, list[PlatformRoute]] | None = None,
    metrics: GatewayMetrics | None = None,
    listeners: Callable[[], dict[str, list[str]]] = dict,
    metrics_allow_loopback: bool = False,
    ui: bool = True,
) -> web.Application:
    metrics = metrics or GatewayMetrics()
    app = web.Application(middlewares=[metrics.http_middleware("platform"), problem_middleware,
                                       auth_middleware],
                          client_max_size=max_body_bytes,
                          handler_args={"max_line_size": 16_384, "max_field_size": 16_384})
    app[SERVICES], app[BUS], app[DATABASE] = services, bus, db
    app[BODY] = BodyReader(max_bytes=max_body_bytes)
    app[STATUS] = {"collect": status, "ready": ready}
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, spec.handler)
    extra: dict[str, dict[str, Any]] = {}
    for name, routes in (adapter_routes or {}).items():
        prefix = f"/v1/adapters/{name}"
        for route in routes:
            app.router.add_route(route.method, prefix + route.path, guarded(route, services))
            extra.setdefault(prefix + route.path, {})[route.method.lower()] = \
                _adapter_operation(route)
    extra["/metrics"] = {"get": {
        "summary": "Prometheus metrics (the admin; or a loopback scraper if allowed)",
        "operationId": "metrics",
        "responses": {"200": {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {}}},
                      "4XX": {"$ref": "#/components/responses/Problem"}}}}
    document = build_openapi(extra)

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/metrics", metrics_handler(metrics, db, listeners,
                                                   authenticate=authenticate,
                                                   allow_loopback=metrics_allow_loopback))
    if ui:
        mount_ui(app)
    assert "/v1/openapi.json" in PUBLIC_PATHS
    return app
