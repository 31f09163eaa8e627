"""Down: the platform's topology and effective controls -> the address space.

Topology and control changes only mark DERs dirty (no I/O in the event handler); `run()`
re-reads the dirty ones from the store in batches and renders them: a DER's nodes are placed
(or moved, or removed), its Control variables show the effective interval in force now, and
the aggregates above it follow its caps. `rerender_due()` renders again the DERs whose
interval in force has just begun or ended.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from adapters.opcua.codec.values import Quality
from adapters.opcua.mapper import control_values
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.aggregates import Aggregates
from adapters.opcua.state import (
    DerRecord,
    Fleet,
    cp_properties,
    der_properties,
    ldc_properties,
)
from gateway.domain import ConnectionPoint, EffectiveControl, Participant, Resource, Role

if TYPE_CHECKING:
    from gateway.ports import GatewayPort

log = logging.getLogger(__name__)

_REASON_CACHE = 4096
_REFRESH_BATCH = 500
_YIELD_EVERY = 500  # DERs placed or rendered between turns of the event loop


class ControlRenderer:
    def __init__(self, gateway: GatewayPort, space: AddressSpace, fleet: Fleet,
                 aggregates: Aggregates, *,
                 on_topology: Callable[[bool], None] = lambda moved: None,
                 on_online: Callable[[str, bool | None], None] = lambda rid, online: None,
                 on_dropped: Callable[[str], None] = lambda rid: None) -> None:
        self._gateway = gateway
        self._space = space
        self._fleet = fleet
        self._aggregates = aggregates
        # told once per change of the model (True: DERs moved to other connection points)
        self._on_topology = on_topology
        self._on_online = on_online  # a DER became reachable (True) or unreachable (False)
        self._on_dropped = on_dropped  # a DER left the fleet
        self._moved = False
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._due: list[tuple[datetime, str]] = []  # (when, resource): interval boundaries
        self._dirty_resources: set[str] = set()
        self._dirty_controls: set[str] = set()
        self._wake = asyncio.Event()

    # -- events (no I/O) -------------------------------------------------------------------

    def resource_changed(self, resource_id: str) -> None:
        self._dirty_resources.add(resource_id)
        self._wake.set()

    def control_changed(self, resource_id: str) -> None:
        self._dirty_controls.add(resource_id)
        self._wake.set()

    def participant_changed(self) -> None:
        """No node changes (a participant's nodes come with its first DER), but the areas
        may: a participant an operator acts for now exists, an LDC is embedded below a host."""
        self._on_topology(False)

    # -- from the store --------------------------------------------------------------------

    async def rebuild(self) -> None:
        """Everything again from the store, the truth."""
        topology = await self._gateway.topology()
        ldcs = {p.id: p for p in topology.participants.values() if p.role is Role.LDC}
        cps = dict(topology.connection_points)
        resources = await self._gateway.resources()  # their online state is the store's
        for count, res in enumerate(resources, 1):
            cp = cps.get(res.connection_point_id)
            if cp is None:
                cp = await self._gateway.connection_point(res.connection_point_id)
            if cp is not None:
                self._place(res, cp, ldcs)
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # the other listeners keep the loop
        for rid in set(self._fleet.ders) - {r.id for r in resources}:
            await self._drop(rid)
        controls = await self._gateway.effective_controls(list(self._fleet.ders))
        for count, (rid, control) in enumerate(controls.items(), 1):
            await self._render(rid, control)
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._topology_changed()

    async def run(self) -> None:
        """Render what the events marked dirty, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._refresh()
            except Exception:  # the store may be briefly unavailable; try again on next wake
                log.exception("opcua: refresh from the store failed")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _refresh(self) -> None:
        if self._dirty_resources:
            wanted, self._dirty_resources = self._dirty_resources, set()
            ldcs = {p.id: p for p in await self._gateway.participants(Role.LDC)}
            found = {r.id: r for r in await self._gateway.resources(ids=list(wanted))}
            cps: dict[str, ConnectionPoint | None] = {}
            for cp_id in {r.connection_point_id for r in found.values()}:
                cps[cp_id] = await self._gateway.connection_point(cp_id)
            for rid in wanted:
                res = found.get(rid)
                cp = cps.get(res.connection_point_id) if res is not None else None
                if res is not None and cp is not None:
                    self._place(res, cp, ldcs)
                    self._dirty_controls.add(rid)
                else:
                    await self._drop(rid)
            self._topology_changed()
        while self._dirty_controls:
            batch = sorted(self._dirty_controls)[:_REFRESH_BATCH]
            self._dirty_controls.difference_update(batch)
            controls = await self._gateway.effective_controls(batch)
            for rid in batch:
                await self._render(rid, controls.get(rid))
            await asyncio.sleep(0)

    def _topology_changed(self) -> None:
        moved, self._moved = self._moved, False
        self._on_topology(moved)

    # -- topology --------------------------------------------------------------------------

    def _place(self, res: Resource, cp: ConnectionPoint, ldcs: dict[str, Participant]) -> None:
        """Add (or move, or update) a DER in the fleet; its nodes follow on demand."""
        old = self._fleet.ders.get(res.id)
        record = DerRecord.of(res)
        self._space.changed(self._fleet.place(res.id, record, cp, ldcs.get(cp.ldc_id)))
        if old is not None and old.connection_point_id != cp.id:
            self._space.changed([ids.der(res.id)])  # its parent reference
            self._moved = True
        if old is None or old != record:
            self._space.stage_group(ids.der(res.id), der_properties(record))
        self._space.stage_group(ids.cp(cp.id), cp_properties(cp))
        self._space.stage_group(ids.ldc(cp.ldc_id), ldc_properties(cp.ldc_id,
                                                                   ldcs.get(cp.ldc_id)))
        self._aggregates.place(res.id, _groups(cp), online=res.online is True)
        self._space.stage(ids.member(ids.member(ids.der(res.id), "Measurements"), "Online"),
                          res.online, quality=Quality.INITIAL)  # None: nothing connected yet
        if old is None or old.online != res.online:
            self._on_online(res.id, res.online)

    async def _drop(self, rid: str) -> None:
        if rid not in self._fleet.ders:
            return
        self._aggregates.remove(rid)
        await self._space.remove_der(rid)
        self._space.changed(self._fleet.drop(rid))
        self._on_dropped(rid)

    # -- controls --------------------------------------------------------------------------

    async def _render(self, rid: str, control: EffectiveControl | None) -> None:
        record = self._fleet.ders.get(rid)
        if record is None:
            return
        now = datetime.now(UTC)
        interval = control.at(now) if control else None
        if control is None:
            self._fleet.controls.pop(rid, None)
        else:
            self._fleet.controls[rid] = control
        if interval is None:
            self._fleet.control_values.pop(rid, None)  # the nameplate's, made when asked
            values = control_values(None, {}, record.nameplate)
        else:
            reasons = await self._reasons_of(interval.instruction_ids)
            values = self._fleet.control_values[rid] = control_values(
                interval, reasons, record.nameplate)
        self._space.stage_group(ids.member(ids.der(rid), "Control"), values)
        self._aggregates.set_caps(
            rid, interval.export_max_w if interval else record.nameplate.export_max_w,
            interval.import_max_w if interval else record.nameplate.import_max_w)
        boundary = next_boundary(control, now)
        if boundary is not None:
            heapq.heappush(self._due, (boundary, rid))

    async def _reasons_of(self, instruction_ids: Iterable[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for iid in instruction_ids:
            if iid not in self._reasons:
                ins = await self._gateway.instruction(iid)
                self._reasons[iid] = ins.reason if ins else ""
                while len(self._reasons) > _REASON_CACHE:
                    self._reasons.popitem(last=False)
            out[iid] = self._reasons[iid]
        return out

    async def rerender_due(self) -> None:
        """Render again the DERs whose interval in force began or ended since last time."""
        now = datetime.now(UTC)
        due: set[str] = set()
        while self._due and self._due[0][0] <= now:
            due.add(heapq.heappop(self._due)[1])
        for rid in due:
            if rid in self._fleet.controls:
                await self._render(rid, self._fleet.controls[rid])


def _groups(cp: ConnectionPoint) -> tuple[str, ...]:
    return (ids.cp(cp.id), ids.td_node(cp.ldc_id, cp.td_node))


def next_boundary(control: EffectiveControl | None, now: datetime) -> datetime | None:
    """The next instant at which the interval in force changes."""
    if control is None:
        return None
    times = [t for iv in control.intervals for t in (iv.start, iv.end) if t is not None and t > now]
    return min(times, default=None)
