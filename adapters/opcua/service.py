"""Keeps the address space equal to the store: topology, effective controls, feedback.

Three loops, all owned by `running()`:
- the bus follower: readings and acknowledgements become staged values (no I/O); control
  and topology changes only mark resources dirty; participant changes go straight to the
  sessions' areas (`on_topology`);
- the refresher: re-reads dirty resources and controls from the store in batches;
- the flusher: every `flush_interval` publishes the staged values and touched aggregates,
  and re-renders controls whose interval has just begun or ended.
If the bus drops us (a full queue), we rebuild from the store, which is the truth.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.opcua.addressspace import AddressSpace
from adapters.opcua.aggregates import Aggregates
from adapters.opcua.codec import NodeIds
from adapters.opcua.mapper import acknowledgement_values, control_values, reading_update
from gateway import heap
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.domain import ConnectionPoint, EffectiveControl, Resource, Role
from gateway.jsonform import to_json
from gateway.pacing import Pacer

log = logging.getLogger(__name__)

_REASON_CACHE = 4096
_REFRESH_BATCH = 500
_BUS_QUEUE = 100_000  # 10 s of 10,000 readings/s: room for a slow flush
_PLACE_SHARE = 0.5  # at most this share of the event loop goes to building the model
_FREEZE_EVERY = 50  # DERs placed between freezes of the heap (gateway.heap)


class ModelService:
    def __init__(self, ctx: AdapterContext, space: AddressSpace, *,
                 flush_interval: float = 0.1, restore_window_s: float = 120.0,
                 on_topology: Callable[[bool], None] = lambda moved: None) -> None:
        self.ctx = ctx
        # told once per change of the model (True: DERs moved to other connection points)
        self._on_topology = on_topology
        self._moved = False
        self.space = space
        self.flush_interval = flush_interval
        self.restore_window_s = restore_window_s
        self.resources: dict[str, Resource] = {}
        self._cps: dict[str, ConnectionPoint] = {}
        self._controls: dict[str, EffectiveControl] = {}
        self._aggregates = Aggregates()
        self._reasons: OrderedDict[str, str] = OrderedDict()
        self._due: list[tuple[datetime, str]] = []  # (when, resource): interval boundaries
        self._dirty_resources: set[str] = set()
        self._dirty_controls: set[str] = set()
        self._wake = asyncio.Event()
        self._pacer = Pacer(share=_PLACE_SHARE)
        self._placed = 0
        self.resync_count = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            Topic.READING: self._on_reading,
            Topic.ACKNOWLEDGEMENT: self._on_acknowledgement,
            Topic.EFFECTIVE_CONTROL_CHANGED: self._on_control_changed,
            Topic.RESOURCE_CHANGED: self._on_resource_changed,
            Topic.PARTICIPANT_CHANGED: self._on_participant_changed,
        }

    def resource_of_node(self, identifier: object) -> str | None:
        if isinstance(identifier, str) and identifier.startswith("der/"):
            rid = identifier[4:]
            return rid if rid in self.resources else None
        return None

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Subscribe first, then load, so no change between the two is lost."""
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._follow_bus(ready), name="opcua-bus"),
                     group.create_task(self._refresh_loop(), name="opcua-refresh"),
                     group.create_task(self._flush_loop(), name="opcua-flush")]
            try:
                await ready.wait()
                yield
            finally:
                for task in tasks:
                    task.cancel()

    async def load(self) -> None:
        """Rebuild everything from the store."""
        ldcs = {p.id: p for p in await self.ctx.gateway.participants(Role.LDC)}
        resources = await self.ctx.gateway.resources()
        for res in resources:
            await self._place(res, ldcs)
        for rid in set(self.resources) - {r.id for r in resources}:
            await self._drop(rid)
        controls = await self.ctx.gateway.effective_controls(list(self.resources))
        for rid, control in controls.items():
            await self._render(rid, control)
        self._topology_changed()
        await self._restore_readings()
        await self._restore_acknowledgements()
        await self.flush()

    async def _restore_readings(self) -> None:
        since = datetime.now(UTC) - timedelta(seconds=self.restore_window_s)
        since_id = 0
        while True:
            page = await self.ctx.gateway.readings(since=since, since_id=since_id, limit=1000)
            for reading in page:
                self._on_reading(to_json(reading))
            if len(page) < 1000:
                return
            since_id = page[-1].id or since_id + len(page)

    async def _restore_acknowledgements(self) -> None:
        """Each DER's latest acknowledgement, however old: it is the latest until another
        arrives. Bus events queued while loading are applied after this, in order, so the
        newest still wins."""
        latest = await self.ctx.gateway.latest_acknowledgements()
        for ack in latest.values():
            self._on_acknowledgement(to_json(ack))

    # -- the bus ---------------------------------------------------------------------------

    async def _follow_bus(self, ready: asyncio.Event) -> None:
        while True:
            async with self.ctx.bus.subscription(*self._handlers, maxsize=_BUS_QUEUE) as sub:
                await self.load()
                ready.set()
                async for event in sub:
                    self._handle(event)
            self.resync_count += 1
            log.warning("opcua: fell behind the bus; rebuilding from the store")

    def _handle(self, event: Event) -> None:
        handler = self._handlers.get(event.topic)
        if handler is None:
            return
        try:
            handler(event.payload)
        except (KeyError, TypeError, ValueError):
            log.exception("opcua: ignored malformed %s event %s", event.topic, event.id)

    def _on_reading(self, payload: dict[str, Any]) -> None:
        update = reading_update(payload)
        if update is None or update.resource_id not in self.resources:
            return
        ident = NodeIds.member(NodeIds.der(update.resource_id), "Measurements")
        self.space.stage(NodeIds.member(ident, update.variable), update.value, update.at)
        self.space.stage(NodeIds.member(ident, "LastSeen"), update.at, update.at)
        if update.variable == "W":
            self._aggregates.set_power(update.resource_id, w=float(update.value))
        elif update.variable == "var":
            self._aggregates.set_power(update.resource_id, var=float(update.value))

    def _on_acknowledgement(self, payload: dict[str, Any]) -> None:
        rid = str(payload["resource_id"])
        if rid in self.resources:
            values = acknowledgement_values(payload)
            at = values["At"] if isinstance(values["At"], datetime) else None
            self.space.stage_group(NodeIds.member(NodeIds.der(rid), "Acknowledgement"), values, at)

    def _on_control_changed(self, payload: dict[str, Any]) -> None:
        self._dirty_controls.add(str(payload["resource_id"]))
        self._wake.set()

    def _on_resource_changed(self, payload: dict[str, Any]) -> None:
        self._dirty_resources.add(str(payload["resource_id"]))
        self._wake.set()

    def _on_participant_changed(self, payload: dict[str, Any]) -> None:
        """No node changes (a participant's nodes come with its first DER), but the areas
        may: a participant an operator acts for now exists, an LDC is embedded below a host."""
        self._on_topology(False)

    # -- refresh from the store ------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        while True:
            self._pacer.idle()
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
            ids, self._dirty_resources = self._dirty_resources, set()
            ldcs = {p.id: p for p in await self.ctx.gateway.participants(Role.LDC)}
            found = {r.id: r for r in await self.ctx.gateway.resources(ids=ids)}
            for rid in ids:
                if rid in found:
                    await self._place(found[rid], ldcs)
                    self._dirty_controls.add(rid)
                else:
                    await self._drop(rid)
            self._topology_changed()
        while self._dirty_controls:
            batch = sorted(self._dirty_controls)[:_REFRESH_BATCH]
            self._dirty_controls.difference_update(batch)
            controls = await self.ctx.gateway.effective_controls(batch)
            for rid in batch:
                await self._render(rid, controls.get(rid))
                await self._pacer.step()

    def _topology_changed(self) -> None:
        moved, self._moved = self._moved, False
        self._on_topology(moved)

    async def _place(self, res: Resource, ldcs: dict[str, Any]) -> None:
        """Create (or move, or update) a DER's nodes, with its LDC, T-D node and CP if new."""
        cp = await self.ctx.gateway.connection_point(res.connection_point_id)
        if cp is None:
            return
        old = self.resources.get(res.id)
        batch = self.space.batch()
        if not self.space.has_object(NodeIds.ldc(cp.ldc_id)):
            ldc = ldcs.get(cp.ldc_id)
            self.space.add_ldc(batch, cp.ldc_id, {
                "ParticipantId": cp.ldc_id, "DsoModel": _enum(getattr(ldc, "dso_model", None)),
                "HostLdc": getattr(ldc, "host_ldc_id", None) or ""})
        if not self.space.has_object(NodeIds.td_node(cp.ldc_id, cp.td_node)):
            self.space.add_td_node(batch, cp.ldc_id, cp.td_node)
        if not self.space.has_object(NodeIds.cp(cp.id)):
            self.space.add_cp(batch, cp.id, {"TdNode": cp.td_node, "Feeder": cp.feeder,
                                             "Ldc": cp.ldc_id})
        if old is None:
            self.space.add_der(batch, res.id, cp.id, cp.ldc_id, _der_properties(res))
        await self.space.apply(batch)
        if old is not None and old.connection_point_id != cp.id:
            await self.space.move_der(res.id, old.connection_point_id, cp.id, cp.ldc_id)
            self._moved = True
        self._cps[cp.id] = cp
        self.resources[res.id] = res
        self._aggregates.place(res.id, _groups(cp), online=res.online)
        self.space.stage(NodeIds.member(NodeIds.member(NodeIds.der(res.id), "Measurements"),
                                        "Online"), res.online)
        # asyncua adds nodes without yielding (a few ms per DER): placing thousands must
        # leave the other listeners most of the loop, not just one turn between DERs.
        await self._pacer.step()
        self._placed += 1
        if self._placed % _FREEZE_EVERY == 0:
            heap.freeze()  # ~3,200 long-lived objects per DER: keep full collections short

    async def _drop(self, rid: str) -> None:
        res = self.resources.pop(rid, None)
        if res is None:
            return
        self._aggregates.remove(rid)
        self._controls.pop(rid, None)
        await self.space.remove_der(rid, res.connection_point_id)

    async def _render(self, rid: str, control: EffectiveControl | None) -> None:
        if rid not in self.resources:
            return
        if control is None:
            self._controls.pop(rid, None)
        else:
            self._controls[rid] = control
        now = datetime.now(UTC)
        interval = control.at(now) if control else None
        reasons = await self._reasons_of(interval.instruction_ids if interval else ())
        self.space.stage_group(NodeIds.member(NodeIds.der(rid), "Control"),
                               control_values(interval, reasons, self.resources[rid].nameplate))
        nameplate = self.resources[rid].nameplate
        self._aggregates.set_caps(
            rid, interval.export_max_w if interval else nameplate.export_max_w,
            interval.import_max_w if interval else nameplate.import_max_w)
        boundary = _next_boundary(control, now)
        if boundary is not None:
            heapq.heappush(self._due, (boundary, rid))

    async def _reasons_of(self, instruction_ids: tuple[str, ...]) -> dict[str, str]:
        out: dict[str, str] = {}
        for iid in instruction_ids:
            if iid not in self._reasons:
                ins = await self.ctx.gateway.instruction(iid)
                self._reasons[iid] = ins.reason if ins else ""
                while len(self._reasons) > _REASON_CACHE:
                    self._reasons.popitem(last=False)
            out[iid] = self._reasons[iid]
        return out

    # -- publishing ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self._rerender_due()
                await self.flush()
            except Exception:  # one bad write must not stop the server following the bus
                log.exception("opcua: publishing values failed")

    async def _rerender_due(self) -> None:
        now = datetime.now(UTC)
        due: set[str] = set()
        while self._due and self._due[0][0] <= now:
            due.add(heapq.heappop(self._due)[1])
        for rid in due:
            if rid in self._controls:
                await self._render(rid, self._controls[rid])

    async def flush(self) -> int:
        for group, totals in self._aggregates.take_dirty().items():
            self.space.stage_group(NodeIds.member(group, "Aggregates"), dict(totals))
        return await self.space.flush()


def _groups(cp: ConnectionPoint) -> tuple[str, ...]:
    return (NodeIds.cp(cp.id), NodeIds.td_node(cp.ldc_id, cp.td_node))


def _enum(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


def _der_properties(res: Resource) -> dict[str, Any]:
    return {"Kind": _enum(res.kind), "Protocol": _enum(res.binding.protocol),
            "Aggregator": res.aggregator_id or "",
            "RatedExportW": float(res.nameplate.export_max_w),
            "RatedImportW": float(res.nameplate.import_max_w),
            "RatedVar": float(res.nameplate.var_max)}


def _next_boundary(control: EffectiveControl | None, now: datetime) -> datetime | None:
    """The next instant at which the interval in force changes."""
    if control is None:
        return None
    times = [t for iv in control.intervals for t in (iv.start, iv.end) if t is not None and t > now]
    return min(times, default=None)

