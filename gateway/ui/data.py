"""What the pages show, read through GatewayServices and cut to the viewer's area.

Visibility is the platform API's (docs/core.md, Visibility): `authz.area_of` for DERs, the
API's own rule for instructions, `notice_visible` for notices. Nothing here writes.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from gateway import authz
from gateway.authz import instruction_visible
from gateway.coordination.topology import Topology
from gateway.domain import (
    Acknowledgement,
    EffectiveControl,
    Instruction,
    Participant,
    Quantity,
    Resource,
    Role,
    utcnow,
)
from gateway.errors import Forbidden, NotFound
from gateway.services import GatewayServices
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow

OPERATORS = frozenset({Role.ADMIN, Role.ISO, Role.LDC, Role.SCADA})
PLOTTED = (Quantity.ACTIVE_POWER, Quantity.VOLTAGE, Quantity.STATE_OF_CHARGE)
READINGS_WINDOW = timedelta(hours=6)
MAX_POINTS = 5_000


# --- the fleet --------------------------------------------------------------------------------


def der_state(resource: Resource, delivery: dict[str, str]) -> str:
    """online | offline | undeliverable | unconnected (nothing has connected for it yet).
    `delivery` maps DER ids to the core's latest delivery state (gateway.delivery_state);
    undeliverable wins over online."""
    if delivery.get(resource.id) == "undeliverable":
        return "undeliverable"
    if resource.online is None:
        return "unconnected"
    return "online" if resource.online else "offline"


async def delivery_states(services: GatewayServices, ids: set[str]) -> dict[str, str]:
    """Each DER's latest delivery state (fetched, delivered, pending, undeliverable)."""
    found = await services.delivery_states(ids)
    return {rid: state.state.value for rid, state in found.items()}


@dataclass
class ConnectionPointView:
    id: str
    ders: list[tuple[Resource, str]] = field(default_factory=list)  # (DER, state)


@dataclass
class FleetView:
    # LDC id -> feeder -> connection points, all in the viewer's area
    tree: dict[str, dict[str, list[ConnectionPointView]]]
    states: Counter[str]
    by_protocol: dict[str, Counter[str]]  # protocol -> state -> count

    @property
    def total(self) -> int:
        return sum(self.states.values())


async def area(services: GatewayServices, actor: Participant) -> tuple[Topology, set[str] | None]:
    topo = await services.topology()
    return topo, authz.area_of(actor, topo)


async def fleet(services: GatewayServices, actor: Participant) -> FleetView:
    topo, visible = await area(services, actor)
    ders = [r for rid, r in sorted(topo.resources.items()) if visible is None or rid in visible]
    delivery = await delivery_states(services, {r.id for r in ders})
    cps: dict[str, ConnectionPointView] = {}
    states: Counter[str] = Counter()
    by_protocol: dict[str, Counter[str]] = defaultdict(Counter)
    for der in ders:
        state = der_state(der, delivery)
        cps.setdefault(der.connection_point_id,
                       ConnectionPointView(der.connection_point_id)).ders.append((der, state))
        states[state] += 1
        by_protocol[der.binding.protocol][state] += 1
    tree: dict[str, dict[str, list[ConnectionPointView]]] = {}
    for cp_id, view in sorted(cps.items()):
        cp = topo.connection_points[cp_id]
        tree.setdefault(cp.ldc_id, {}).setdefault(cp.feeder or "(no feeder)", []).append(view)
    return FleetView(dict(sorted(tree.items())), states, dict(sorted(by_protocol.items())))


async def resource_in_view(services: GatewayServices, actor: Participant,
                           resource_id: str) -> Resource:
    topo, visible = await area(services, actor)
    found = topo.resources.get(resource_id)
    if found is None or (visible is not None and resource_id not in visible):
        raise NotFound("no such DER in your view")
    return found


def require_operator(actor: Participant) -> None:
    if actor.role not in OPERATORS:
        raise Forbidden("this page is for operators (admin, ISO, LDC)")


# --- plots --------------------------------------------------------------------------------------


def _epoch(value: datetime) -> float:
    return value.timestamp()


def control_series(control: EffectiveControl | None, now: datetime) -> dict[str, list[Any]]:
    """Step series of the effective range and setpoint: x in epoch seconds, one point at each
    interval's start and end (None between intervals, so gaps show as gaps)."""
    x: list[float] = []
    export: list[float | None] = []
    imp: list[float | None] = []
    setpoint: list[float | None] = []
    for interval in control.intervals if control else ():
        end = interval.end or max(interval.start, now) + timedelta(hours=1)
        for at in (interval.start, end):
            x.append(_epoch(at))
            export.append(interval.export_max_w)
            imp.append(-interval.import_max_w)
            setpoint.append(interval.setpoint_w)
        x.append(_epoch(end) + 0.001)
        export.append(None)
        imp.append(None)
        setpoint.append(None)
    return {"x": x, "export_max_w": export, "import_max_w": imp, "setpoint_w": setpoint}


async def reading_series(services: GatewayServices, resource_id: str,
                         now: datetime) -> dict[str, dict[str, list[float]]]:
    """Power, voltage and state of charge over the last hours, one series each."""
    series: dict[str, dict[str, list[float]]] = {}
    for quantity in PLOTTED:
        found = await services.readings(resource_id=resource_id, quantity=quantity,
                                        since=now - READINGS_WINDOW, limit=MAX_POINTS)
        found.sort(key=lambda r: r.at)
        series[quantity.value] = {"x": [_epoch(r.at) for r in found],
                                  "y": [r.value for r in found]}
    return series


async def latest_acknowledgements(services: GatewayServices, resource_id: str,
                                  keep: int = 50) -> list[Acknowledgement]:
    """The DER's newest acknowledgements (the service pages forward by id)."""
    found: list[Acknowledgement] = []
    after = 0
    while True:
        page = await services.acknowledgements(resource_id=resource_id, since_id=after,
                                               limit=1000)
        found = (found + page)[-keep:]
        if len(page) < 1000 or page[-1].id is None:
            return found
        after = page[-1].id


# --- instructions -----------------------------------------------------------------------------


async def instruction_in_view(services: GatewayServices, actor: Participant,
                              instruction_id: str) -> tuple[Instruction, list[str]]:
    topo, visible = await area(services, actor)
    found = await services.instruction(instruction_id)
    targets = topo.resolve(found.target) if found else []
    if found is None or not instruction_visible(actor, found, visible, targets):
        raise NotFound("no such instruction in your view")
    shown = [t for t in targets if visible is None or t in visible]
    return found, shown


async def instructions_in_view(services: GatewayServices,
                               actor: Participant) -> list[Instruction]:
    topo, visible = await area(services, actor)
    found = await services.instructions(live_only=False, limit=500)
    return [i for i in found if instruction_visible(actor, i, visible, topo.resolve(i.target))]


def latency_stats(instruction: Instruction, acks: list[Acknowledgement]) -> dict[str, Any]:
    """Seconds from the instruction's record to each DER's first acknowledgement of it."""
    first: dict[str, float] = {}
    for ack in sorted(acks, key=lambda a: a.at):
        first.setdefault(ack.resource_id, (ack.at - instruction.created_at).total_seconds())
    values = sorted(first.values())
    if not values:
        return {"count": 0}
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return {"count": len(values), "p50": statistics.median(values), "p95": p95,
            "max": values[-1]}


async def last_event_id(db: Database) -> int:
    """The newest outbox id: a live view follows the event stream from here."""
    async with db.read() as session:
        found = (await session.execute(select(func.max(col(OutboxRow.id))))).scalar_one()
    return int(found or 0)


def now() -> datetime:
    return utcnow()
