"""The live event stream (server-sent events), resumable from the outbox.

Each event's SSE id is its outbox id. A client that reconnects with ``Last-Event-ID`` (or
``?after=N``) first gets what it missed, read from the store, then live events from the bus;
nothing is sent twice within one stream. Each participant sees only what concerns it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway import authz
from gateway.api.keys import BUS, DATABASE, SERVICES
from gateway.api.routes import actor
from gateway.bus import Event, Topic
from gateway.coordination.topology import Topology
from gateway.domain import Participant, Role
from gateway.errors import InvalidInput
from gateway.jsonform import notice_from_parts
from gateway.services import notice_visible
from gateway.store import repo

STREAM_TOPICS = (Topic.ACKNOWLEDGEMENT, Topic.READING, Topic.NOTICE,
                 Topic.EFFECTIVE_CONTROL_CHANGED, Topic.INSTRUCTION_CHANGED)
KEEPALIVE_S = 15.0


def visible(event: Event, who: Participant, topo: Topology, area: set[str] | None) -> bool:
    if event.topic not in STREAM_TOPICS:
        return False
    payload = event.payload
    if event.topic == Topic.NOTICE:
        subject = payload.get("subject", {})
        notice = notice_from_parts(
            kind=payload["kind"], subject_kind=subject.get("kind", "resource"),
            subject_id=subject.get("id", ""), start=None, end=None,  # type: ignore[arg-type]
            requested_w=payload.get("requested_w", 0.0),
            effective_w=payload.get("effective_w", 0.0),
            dispatch_id=payload.get("dispatch_id", ""), body=payload)
        return notice_visible(who, notice, topo)
    if event.topic == Topic.INSTRUCTION_CHANGED:
        return who.role in {Role.ADMIN, Role.ISO, Role.LDC}
    return area is None or payload.get("resource_id") in area


def _frame(event: Event) -> bytes:
    data = json.dumps(event.payload, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.topic}\ndata: {data}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    who = actor(request)
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    try:
        after = int(raw) if raw is not None else None
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be an integer") from exc
    bus, db, svc = request.app[BUS], request.app[DATABASE], request.app[SERVICES]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    async with bus.subscription(*STREAM_TOPICS, maxsize=5000) as sub:
        await response.prepare(request)
        last = await _replay(response, db, svc, who, after) if after is not None else 0
        while not sub.overflowed:
            try:
                event = await asyncio.wait_for(sub.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event.id <= last:
                continue
            last = event.id
            topo = await svc.topology()
            if visible(event, who, topo, authz.area_of(who, topo)):
                await response.write(_frame(event))
    return response  # overflowed: the client reconnects with Last-Event-ID and catches up


async def _replay(response: web.StreamResponse, db: Any, svc: Any, who: Participant,
                  after: int) -> int:
    last = after
    while True:
        async with db.read() as session:
            rows = await repo.outbox_since(session, last, limit=500)
        if not rows:
            return last
        topo = await svc.topology()
        area = authz.area_of(who, topo)
        for row in rows:
            event = Event(row.id, row.topic, row.payload)
            last = row.id
            if visible(event, who, topo, area):
                await response.write(_frame(event))
