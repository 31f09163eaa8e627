"""Platform API handlers. Each one: parse -> domain call -> JSON. No storage here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway import authz
from gateway.api.keys import ACTOR, BODY, SERVICES, STATUS
from gateway.api.schemas import (
    MAX_BULK,
    ConnectionPointIn,
    InstructionIn,
    ParticipantIn,
    ResourceIn,
    TokenIn,
)
from gateway.domain import Instruction, Participant, Quantity, Role, TargetKind
from gateway.errors import Forbidden, InvalidInput, NotFound
from gateway.jsonform import parse_time, to_json
from gateway.services import GatewayServices

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    bulk: bool = False  # the body may be one object or a list of them
    query: tuple[str, ...] = ()
    created: bool = False
    public: bool = False


def services(request: web.Request) -> GatewayServices:
    return request.app[SERVICES]


def actor(request: web.Request) -> Participant:
    found: Participant = request[ACTOR]
    return found


async def read_json(request: web.Request) -> Any:
    """The one body reader (gateway.body): size, depth, duplicate keys, encoding."""
    if request.content_type not in {"application/json", "application/merge-patch+json"}:
        raise InvalidInput("send the body as application/json")
    return await request.app[BODY].read_json(request)


async def read_many(request: web.Request, model: type[BaseModel]) -> tuple[list[Any], bool]:
    data = await read_json(request)
    many = isinstance(data, list)
    items = data if many else [data]
    if not items or len(items) > MAX_BULK:
        raise InvalidInput(f"send between 1 and {MAX_BULK} items")
    return [model.model_validate(item) for item in items], many


def reply(data: Any, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(to_json(data), status=status, headers=headers or None)


def int_query(request: web.Request, name: str, default: int, maximum: int = 1000) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidInput(f"query parameter {name} must be an integer") from exc
    if not 0 <= value <= maximum:
        raise InvalidInput(f"query parameter {name} must be between 0 and {maximum}")
    return value


# --- handlers -------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """200 once every adapter is ready; 503 while any is still starting (or failed), naming
    each adapter's state."""
    adapters: dict[str, str] = request.app[STATUS]["ready"]()
    if all(state == "ready" for state in adapters.values()):
        return reply({"status": "ok", "adapters": adapters})
    return reply({"status": "starting", "adapters": adapters}, 503)


async def me(request: web.Request) -> web.Response:
    return reply(actor(request))


async def post_participants(request: web.Request) -> web.Response:
    items, many = await read_many(request, ParticipantIn)
    try:
        domain = [item.to_domain() for item in items]
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    stored = await services(request).register_participants(actor(request), domain)
    return reply(stored if many else stored[0], 201)


async def get_participants(request: web.Request) -> web.Response:
    """The participants the caller may know of (docs/core.md, Visibility); certificate
    fingerprints only to the admin."""
    role = request.query.get("role")
    try:
        wanted = Role(role) if role else None
    except ValueError as exc:
        raise InvalidInput(f"unknown role {role!r}") from exc
    return reply(await services(request).visible_participants(actor(request), wanted))


async def get_participant(request: web.Request) -> web.Response:
    wanted = request.match_info["participant_id"]
    found = [p for p in await services(request).visible_participants(actor(request))
             if p.id == wanted]
    if not found:
        raise NotFound("no such participant in your view")
    return reply(found[0])


async def put_participant(request: web.Request) -> web.Response:
    body = ParticipantIn.model_validate(await read_json(request))
    if body.id != request.match_info["participant_id"]:
        raise InvalidInput("the body's id must match the path")
    try:
        updated = body.to_domain()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    return reply(await services(request).update_participant(actor(request), updated))


async def delete_participant(request: web.Request) -> web.Response:
    await services(request).delete_participant(actor(request),
                                               request.match_info["participant_id"])
    return web.Response(status=204)


async def post_token(request: web.Request) -> web.Response:
    body = TokenIn.model_validate(await read_json(request)) if request.can_read_body else TokenIn()
    token, expires = await services(request).issue_token(
        actor(request), request.match_info["participant_id"], timedelta(days=body.ttl_days))
    return reply({"token": token, "expires_at": expires}, 201)


async def delete_token(request: web.Request) -> web.Response:
    await services(request).revoke_token(actor(request), request.match_info["token_id"])
    return web.Response(status=204)


async def post_connection_points(request: web.Request) -> web.Response:
    items, many = await read_many(request, ConnectionPointIn)
    stored = await services(request).register_connection_points(
        actor(request), [i.to_domain() for i in items])
    return reply(stored if many else stored[0], 201)


async def get_connection_points(request: web.Request) -> web.Response:
    return reply(await services(request).connection_points(actor(request)))


async def post_resources(request: web.Request) -> web.Response:
    items, many = await read_many(request, ResourceIn)
    who = actor(request)
    resources = []
    for item in items:
        if who.role is Role.AGGREGATOR and item.aggregator_id is None:
            item = item.model_copy(update={"aggregator_id": who.id})
        resources.append(item.to_domain())
    stored = await services(request).register_resources(who, resources)
    return reply(stored if many else stored[0], 201)


async def _visible_resource_ids(request: web.Request) -> set[str] | None:
    topo = await services(request).topology()
    return authz.area_of(actor(request), topo)


async def get_resources(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", 1000, 10_000)
    offset = int_query(request, "offset", 0, 10_000_000)
    found = await services(request).visible_resources(actor(request))
    return reply(found[offset:offset + limit])


async def _resource_in_view(request: web.Request) -> str:
    rid = request.match_info["resource_id"]
    area = await _visible_resource_ids(request)
    if await services(request).resource(rid) is None or (area is not None and rid not in area):
        raise NotFound("no such resource in your view")
    return rid


async def get_resource(request: web.Request) -> web.Response:
    """A DER, with what the gateway knows of getting its control to it (`delivery`: null
    until an adapter has reported anything)."""
    rid = await _resource_in_view(request)
    svc = services(request)
    return reply({**to_json(await svc.resource(rid)),
                  "delivery": await svc.resource_delivery(rid)})


async def put_resource(request: web.Request) -> web.Response:
    rid = await _resource_in_view(request)
    body = ResourceIn.model_validate(await read_json(request))
    if body.id != rid:
        raise InvalidInput("the body's id must match the path")
    who = actor(request)
    if who.role is Role.AGGREGATOR and body.aggregator_id is None:
        body = body.model_copy(update={"aggregator_id": who.id})
    return reply(await services(request).update_resource(who, body.to_domain()))


async def delete_resource(request: web.Request) -> web.Response:
    rid = await _resource_in_view(request)
    await services(request).delete_resource(actor(request), rid)
    return web.Response(status=204)


async def get_effective_control(request: web.Request) -> web.Response:
    rid = await _resource_in_view(request)
    control = await services(request).effective_control(rid)
    if control is None:
        return reply({"resource_id": rid, "intervals": [], "default_control": None,
                      "function_settings": None})
    return reply(control)


async def get_effective_controls(request: web.Request) -> web.Response:
    area = await _visible_resource_ids(request)
    wanted = request.query.getall("resource_id", [])
    ids = set(wanted) if wanted else area
    if area is not None and ids is not None:
        ids = ids & area
    return web.json_response(await services(request).effective_control_documents(ids))


async def post_instruction(request: web.Request) -> web.Response:
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise InvalidInput("send one instruction object")
    body = InstructionIn.model_validate(raw)
    svc = services(request)
    rating = None
    if body.target.kind is TargetKind.RESOURCE:
        res = await svc.resource(body.target.id)
        rating = res.nameplate.export_max_w if res else None
    try:
        draft = body.to_domain(rating)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 128:
        raise InvalidInput("Idempotency-Key must be 1 to 128 characters")
    ins, created = await svc.submit_instruction(actor(request), draft, key, raw)
    return reply(ins, 201 if created else 200, Location=f"/v1/instructions/{ins.id}")


async def get_instructions(request: web.Request) -> web.Response:
    live_only = request.query.get("all", "false").lower() not in {"1", "true", "yes"}
    limit = int_query(request, "limit", 100)
    offset = int_query(request, "offset", 0, 10_000_000)
    svc, who = services(request), actor(request)
    topo = await svc.topology()
    area = authz.area_of(who, topo)
    found = await svc.instructions(live_only=live_only)
    visible = [i for i in found if authz.instruction_visible(who, i, area, topo.resolve(i.target))]
    return reply(visible[offset:offset + limit])


async def _instruction_in_view(request: web.Request) -> Instruction:
    svc, who = services(request), actor(request)
    ins = await svc.instruction(request.match_info["instruction_id"])
    topo = await svc.topology()
    if ins is None or not authz.instruction_visible(who, ins, authz.area_of(who, topo),
                                               topo.resolve(ins.target)):
        raise NotFound("no such instruction in your view")
    return ins


async def get_instruction(request: web.Request) -> web.Response:
    return reply(await _instruction_in_view(request))


async def cancel_instruction(request: web.Request) -> web.Response:
    ins = await _instruction_in_view(request)
    return reply(await services(request).cancel_instruction(actor(request), ins.id))


async def get_acknowledgements(request: web.Request) -> web.Response:
    area = await _visible_resource_ids(request)
    rid = request.query.get("resource_id")
    if rid is not None and area is not None and rid not in area:
        raise Forbidden("that resource is not in your view")
    found = await services(request).acknowledgements(
        resource_id=rid, resource_ids=area if rid is None else None,
        instruction_id=request.query.get("instruction_id"),
        since_id=int_query(request, "after", 0, 2**62), limit=int_query(request, "limit", 100))
    return reply(found)


async def get_readings(request: web.Request) -> web.Response:
    area = await _visible_resource_ids(request)
    rid = request.query.get("resource_id")
    if rid is not None and area is not None and rid not in area:
        raise Forbidden("that resource is not in your view")
    quantity = request.query.get("quantity")
    try:
        q = Quantity(quantity) if quantity else None
        since = parse_time(request.query.get("since"))
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    found = await services(request).readings(
        resource_id=rid, resource_ids=area if rid is None else None, quantity=q, since=since,
        since_id=int_query(request, "after", 0, 2**62), limit=int_query(request, "limit", 100))
    return reply(found)


async def get_notices(request: web.Request) -> web.Response:
    found = await services(request).notices(
        actor(request), since_id=int_query(request, "after", 0, 2**62),
        limit=int_query(request, "limit", 100))
    return reply([{"id": i, **to_json(n)} for i, n in found])


async def get_status(request: web.Request) -> web.Response:
    if actor(request).role not in {Role.ADMIN, Role.ISO}:
        raise Forbidden("the gateway's status is the platform operator's and the ISO's; an "
                        "LDC sees its area on the status page (/ui/)")
    return reply(await request.app[STATUS]["collect"]())
