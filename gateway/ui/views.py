"""The pages: fleet, DER, instructions, notices, health; and the live event stream."""

from __future__ import annotations

from aiohttp import web

from gateway.api.events import stream_events
from gateway.api.keys import ACTOR, DATABASE, SERVICES, STATUS
from gateway.health import connected_clients, snapshot
from gateway.jsonform import to_json
from gateway.services import GatewayServices
from gateway.ui import data
from gateway.ui.signin import render, see_other, signed_in


def _services(request: web.Request) -> GatewayServices:
    return request.app[SERVICES]


@signed_in
async def fleet(request: web.Request) -> web.Response:
    view = await data.fleet(_services(request), request[ACTOR])
    return render(request, "fleet.html", fleet=view)


@signed_in
async def der(request: web.Request) -> web.Response:
    services, who = _services(request), request[ACTOR]
    resource = await data.resource_in_view(services, who, request.match_info["resource_id"])
    now = data.now()
    control = await services.effective_control(resource.id)
    acks = await data.latest_acknowledgements(services, resource.id)
    state = data.der_state(resource, await data.delivery_states(services, {resource.id}))
    topo = await services.topology()
    plots = {"now": now.timestamp(), "control": data.control_series(control, now),
             "readings": await data.reading_series(services, resource.id, now),
             "acks": [{"at": a.at.timestamp(), "status": a.status.value} for a in acks]}
    return render(request, "der.html", der=resource, state=state, control=control, acks=acks,
                  cp=topo.connection_points.get(resource.connection_point_id),
                  participants=topo.participants, plots=plots)


@signed_in
async def instructions(request: web.Request) -> web.Response:
    found = await data.instructions_in_view(_services(request), request[ACTOR])
    return render(request, "instructions.html", instructions=found, now=data.now())


@signed_in
async def instruction(request: web.Request) -> web.Response:
    services, who = _services(request), request[ACTOR]
    ins, targets = await data.instruction_in_view(services, who,
                                                  request.match_info["instruction_id"])
    visible = set(targets)
    acks = [a for a in await services.acknowledgements(instruction_id=ins.id, limit=1000)
            if a.resource_id in visible]
    live = {"instruction_id": ins.id, "created": ins.created_at.timestamp(),
            "after": await data.last_event_id(request.app[DATABASE]),
            "acks": [to_json(a) for a in acks]}
    return render(request, "instruction.html", ins=ins, targets=targets, acks=acks,
                  stats=data.latency_stats(ins, acks), live=live,
                  can_cancel=ins.issuer_id in {who.id, who.ldc_id} and ins.cancelled_at is None)


@signed_in
async def cancel(request: web.Request) -> web.Response:
    services, who = _services(request), request[ACTOR]
    ins, _ = await data.instruction_in_view(services, who, request.match_info["instruction_id"])
    await services.cancel_instruction(who, ins.id)
    return see_other(f"/ui/instructions/{ins.id}")


@signed_in
async def notices(request: web.Request) -> web.Response:
    found = await _services(request).notices(request[ACTOR], limit=500)
    return render(request, "notices.html", notices=list(reversed(found[-200:])))


@signed_in
async def health(request: web.Request) -> web.Response:
    data.require_operator(request[ACTOR])
    status = await request.app[STATUS]["collect"]()
    listeners = status.get("listeners", {})
    return render(request, "health.html", listeners=listeners,
                  connected=connected_clients(listeners),
                  figures=await snapshot(request.app[DATABASE]))


@signed_in
async def events(request: web.Request) -> web.StreamResponse:
    """The platform's event stream (GET /v1/events) for the signed-in participant: the same
    visibility rules, resumable with Last-Event-ID, authenticated by the session."""
    return await stream_events(request)
