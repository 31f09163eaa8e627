"""The live event stream (server-sent events), resumable from the outbox.

Each event's SSE id is its outbox id. A client that reconnects with ``Last-Event-ID`` (or
``?after=N``) first gets what it missed, read from the store, then live events from the bus;
nothing is sent twice within one stream. Each participant sees only what concerns it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientConnectionResetError, web

from gateway import authz
from gateway.api.keys import BUS, DATABASE, SERVICES
from gateway.api.routes import actor
from gateway.bus import Event, Topic
from gateway.coordination.topology import Topology
from gateway.domain import Participant, ParticipantChange, Role, Target, TargetKind
from gateway.errors import InvalidInput
from gateway.jsonform import notice_from_parts
from gateway.services import notice_visible
from gateway.store import repo

STREAM_TOPICS = (Topic.ACKNOWLEDGEMENT, Topic.READING, Topic.NOTICE,
                 Topic.EFFECTIVE_CONTROL_CHANGED, Topic.INSTRUCTION_CHANGED,
                 Topic.PARTICIPANT_CHANGED, Topic.DELIVERY_CHANGED)
KEEPALIVE_S = 15.0
WRITE_BATCH = 200  # events per write at most (a burst is sent as it drains)


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
        return _instruction_visible(payload, who, topo, area)
    if event.topic == Topic.PARTICIPANT_CHANGED:
        if payload.get("change") != ParticipantChange.REGISTERED:
            return who.role is Role.ADMIN  # credential changes: the admin's business alone
        return authz.sees_participant(who, str(payload.get("participant_id", "")), topo)
    return area is None or payload.get("resource_id") in area


def _instruction_visible(payload: dict[str, Any], who: Participant, topo: Topology,
                         area: set[str] | None) -> bool:
    """As GET /v1/instructions: its issuer, and whoever sees a DER it targets."""
    if area is None or payload.get("issuer_id") in {who.id, who.ldc_id} - {None}:
        return True
    target = payload.get("target")
    if not isinstance(target, dict):
        return False  # (an event from before targets were announced: the admin's and ISO's)
    try:
        resolved = topo.resolve(Target(TargetKind(target["kind"]), str(target["id"])))
    except (KeyError, ValueError):
        return False
    return any(rid in area for rid in resolved)


def _frame(event: Event) -> bytes:
    data = json.dumps(event.payload, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.topic}\ndata: {data}\n\n".encode()


class _View:
    """What one participant may see; the area is recomputed only when the topology changes."""

    def __init__(self, who: Participant, svc: Any, topics: frozenset[str]) -> None:
        self.who, self.svc, self.topics = who, svc, topics
        self._topo: Topology | None = None
        self._area: set[str] | None = None

    async def sees(self, event: Event) -> bool:
        if event.topic not in self.topics:
            return False
        topo = await self.svc.topology()
        if topo is not self._topo:
            self._topo, self._area = topo, authz.area_of(self.who, topo)
        return visible(event, self.who, topo, self._area)


def _topics(request: web.Request) -> frozenset[str]:
    raw = request.query.get("topics")
    if not raw:
        return frozenset(STREAM_TOPICS)
    wanted = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = wanted - set(STREAM_TOPICS)
    if unknown:
        raise InvalidInput(f"unknown topics {sorted(unknown)}; choose from {list(STREAM_TOPICS)}")
    return wanted


async def stream_events(request: web.Request) -> web.StreamResponse:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    try:
        after = int(raw) if raw is not None else None
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be an integer") from exc
    view = _View(actor(request), request.app[SERVICES], _topics(request))
    bus, db = request.app[BUS], request.app[DATABASE]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    try:
        await response.prepare(request)
        await _pump(response, bus, db, view, after)
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # the client went away; it resumes with Last-Event-ID
    return response


async def _pump(response: web.StreamResponse, bus: Any, db: Any, view: _View,
                after: int | None) -> None:
    """Replay from the store (if asked), then follow the bus; after an overflow, catch up from
    the store again and go on, so a slow reader misses nothing and never grows memory."""
    last, catch_up = (after or 0), after is not None
    while True:
        async with bus.subscription(*view.topics, maxsize=20_000) as sub:
            if catch_up:
                last = await _replay(response, db, view, last)
            while not sub.overflowed:
                events = sub.drain(WRITE_BATCH)
                if not events:
                    try:
                        events = [await asyncio.wait_for(sub.get(), timeout=KEEPALIVE_S)]
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    events += sub.drain(WRITE_BATCH - 1)
                # What is already queued goes out in one write: one TLS record and one send
                # for a burst, not one per event (10,000 acknowledgements in a fan-out).
                frames = []
                for event in events:
                    if event.id <= last:
                        continue
                    last = event.id
                    if await view.sees(event):
                        frames.append(_frame(event))
                if frames:
                    await response.write(b"".join(frames))
            if last == 0 and not sub.queue.empty():
                last = sub.queue.get_nowait().id - 1
        catch_up = True


async def _replay(response: web.StreamResponse, db: Any, view: _View, after: int) -> int:
    last = after
    while True:
        async with db.read() as session:
            rows = await repo.outbox_since(session, last, limit=500)
        if not rows:
            return last
        frames = []
        for row in rows:
            event = Event(row.id, row.topic, row.payload)
            last = row.id
            if await view.sees(event):
                frames.append(_frame(event))
        if frames:
            await response.write(b"".join(frames))
