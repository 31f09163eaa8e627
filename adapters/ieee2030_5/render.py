"""Down the stack: effective controls become the DERControls, DefaultDERControls and
notifications clients see, and the pollable documents are served from what was rendered.

Each effective interval is one DERControl whose mRID is a digest of what it says, so an
unchanged interval keeps its mRID across re-renders. A published control that disappears is
marked superseded (a new control overlaps it) or cancelled (nothing replaces it), and kept
for `retain_s` so clients polling late still see the change.

A control that runs to its end leaves the lists at once (2030.5 has no "completed"
status: the client reports completion), but stays on record for `retain_s` so its late
Responses still find it.

The records of a change and the notifications it implies are one `RecordWrite` (issue 17):
a crash can lose neither alone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from adapters.ieee2030_5.function_sets import documents as docs
from adapters.ieee2030_5.function_sets import programs
from adapters.ieee2030_5.function_sets.documents import (
    CANCELLED,
    CANCELLED_RANDOM,
    LIVE,
    SUPERSEDED,
)
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.pubsub import Notifier
from adapters.ieee2030_5.function_sets.scope import ClientScope
from adapters.ieee2030_5.function_sets.tree import RATED_LISTS, ResourceTree
from adapters.ieee2030_5.state import (
    AdapterState,
    ControlRecord,
    EndDeviceRecord,
    Published,
    Subscription,
    published_docs,
)
from gateway.domain import Acknowledgement, AckStatus, EffectiveControl, utcnow
from gateway.ports import GatewayPort, Outgoing, RecordWrite

log = logging.getLogger(__name__)
RENDERED_MAX_AGE_S = 300  # a rendered document is rebuilt at least this often


@dataclass(frozen=True, slots=True)
class PublishOptions:
    pen: int
    horizon_s: int
    protocol: str  # the adapter's name: the protocol of its DERs' bindings
    retain_s: int = 24 * 3600
    dispatch_as: str = "target_w"


def _overlaps(a: ControlRecord, b: ControlRecord) -> bool:
    """Whether `b` would supersede `a`: same DERProgram, overlapping in time."""
    return a.program == b.program and \
        a.start < b.start + b.duration and b.start < a.start + a.duration


def open_end(start: int, now: int, horizon: int) -> int:
    """End of a DERControl for an open-ended interval: whole horizons from its start, at
    least half a horizon ahead. Stable between renders (so is the mRID); a re-render (the
    adapter's periodic refresh) extends it well before it lapses."""
    spans = max(1, math.ceil((now - start) / horizon + 0.5))
    return start + spans * horizon


EFFECTIVE_KEPT = 100_000  # effective controls kept in memory (see ControlPublisher)


class ControlPublisher:
    """Renders effective controls into published DERControls, many DERs per transaction.

    Keeps a cache of what is published (loaded from the records on first use, written
    through on every change): the records stay the truth after a restart.
    """

    def __init__(self, gateway: GatewayPort, state: AdapterState, options: PublishOptions
                 ) -> None:
        self.gateway = gateway
        self.state = state
        self.options = options
        self._published: dict[str, Published] = {}
        # Each DER's effective control as last rendered or read: a DefaultDERControl or a
        # DERProgram GET read it from the store every time. Replaced by each render, dropped
        # with `forget`; a read that a render overtook is not kept (`_epoch`).
        self._effective: dict[str, EffectiveControl | None] = {}
        self._epoch = 0

    async def effective(self, resource_id: str) -> EffectiveControl | None:
        if resource_id in self._effective:
            return self._effective[resource_id]
        epoch = self._epoch
        control: EffectiveControl | None = await self.gateway.effective_control(resource_id)
        if epoch == self._epoch:
            self._keep_effective({resource_id: control})
        return control

    def _keep_effective(self, controls: dict[str, EffectiveControl | None]) -> None:
        # Bounded for fleets larger than EFFECTIVE_KEPT: the least recently written go
        # first (a dict keeps insertion order), so one DER's GET does not empty the cache.
        for rid, control in controls.items():
            self._effective.pop(rid, None)
            self._effective[rid] = control
        excess = len(self._effective) - EFFECTIVE_KEPT
        if excess > 0:
            for rid in list(itertools.islice(self._effective, excess)):
                del self._effective[rid]

    async def published(self, resource_id: str) -> list[ControlRecord]:
        return (await self._load(resource_id)).controls

    async def _load(self, resource_id: str) -> Published:
        if resource_id not in self._published:
            self._published[resource_id] = await self.state.published(resource_id)
        return self._published[resource_id]

    def _render(self, control: EffectiveControl | None, rating: float, now: int,
                program: dict[str, Any], layout: programs.Layout) -> list[ControlRecord]:
        if control is None:
            return []
        settings = control.function_settings or {}
        ramp = settings.get("ramp_s")
        options = mapper.RenderOptions(
            dispatch_as=self.options.dispatch_as, rating_w=rating,
            ramp_tms=None if ramp is None else min(65535, round(float(ramp) * 100)),
            freq_droop=mapper.standing_functions(settings).freq_droop)
        out = []
        for interval in control.intervals:
            start = mapper.epoch(interval.start)
            end = mapper.epoch(interval.end) if interval.end else \
                open_end(start, now, self.options.horizon_s)
            if end <= now or not interval.sources:
                continue
            base = mapper.control_base(interval, options)
            for spec in layout:
                part = programs.part_of(base, spec.carries)
                if part is None:
                    continue
                base_xml = serialize(part).decode()
                # (the first program's mRIDs leave out its number: unchanged by a layout)
                key = (start, end, base_xml) if spec.index == 1 else \
                    (start, end, base_xml, spec.index)
                out.append(ControlRecord(
                    mrid=mapper.server_mrid(self.options.pen, control.resource_id, *key),
                    start=start, duration=min(end - start, 2**32 - 1), base_xml=base_xml,
                    created=now, instruction_ids=list(interval.instruction_ids),
                    randomize_start=program.get("randomize_start"), program=spec.index))
        return out

    def _merge(self, old: list[ControlRecord], fresh: list[ControlRecord], now: int
               ) -> tuple[list[ControlRecord], bool]:
        """Fresh controls plus the old ones kept as cancelled/superseded; and whether a client
        would see a change."""
        old = [replace(c) for c in old]  # (the cache changes only once the write commits)
        by_id = {c.mrid: c for c in old}
        for c in fresh:
            # The same window and values as a control that was cancelled or superseded (a
            # new instruction repeating a cancelled one, an interval restored when what
            # superseded it is cancelled) is a new event to clients: it gets a new mRID,
            # derived from the dead one so that it is stable across renders.
            while (dead := by_id.get(c.mrid)) is not None and dead.status != LIVE:
                c.mrid = mapper.server_mrid(self.options.pen, c.mrid, dead.status_time)
        fresh_ids = {c.mrid for c in fresh}
        changed = False
        kept: list[ControlRecord] = []
        for c in old:
            if c.mrid in fresh_ids:
                continue
            if c.status == LIVE and c.start + c.duration > now:
                superseded = any(_overlaps(c, n) for n in fresh)
                c.status = SUPERSEDED if superseded else (
                    CANCELLED_RANDOM if c.randomize_start else CANCELLED)
                c.status_time = now
                changed = True
            retained_from = c.start + c.duration if c.status == LIVE else c.status_time
            if retained_from + self.options.retain_s > now:
                kept.append(c)
        for c in fresh:
            if c.mrid in by_id:
                c.created = by_id[c.mrid].created
            else:
                changed = True
        return fresh + kept, changed

    async def refresh_many(self, resources: dict[str, float],
                           settings: dict[str, tuple[dict[str, Any], programs.Layout]]
                           ) -> Changes:
        """Re-render the given DERs (id -> export rating) from the store in one read, each
        with its program settings and layout: which DERs' DERControls and
        DefaultDERControls changed, and what to write. Nothing is written here: the caller
        commits `Changes.updates` with the notifications they imply, then `commit()`s."""
        now = int(time.time())
        self._epoch += 1
        controls = await self.gateway.effective_controls(list(resources))
        self._keep_effective({rid: controls.get(rid) for rid in resources})
        updates: dict[str, Published] = {}
        changes = Changes(set(), set(), updates, [])
        for rid, rating in resources.items():
            control = controls.get(rid)
            old = await self._load(rid)
            program, layout = settings.get(rid, ({}, programs.single()))
            fresh = self._render(control, rating, now, program, layout)
            merged, changed = self._merge(old.controls, fresh, now)
            default = default_digest(control)
            if changed:
                changes.controls.add(rid)
            if default != old.default:
                changes.defaults.add(rid)
                if _functions_of(default) != _functions_of(old.default):
                    changes.refusals.extend(refused_settings(control, self.options.protocol))
            if changed or default != old.default or len(merged) != len(old.controls):
                updates[rid] = Published(merged, default)
        return changes

    async def commit(self, changes: Changes) -> None:
        """After `changes.updates` were written: the cache follows, refusals are told."""
        self._published.update(changes.updates)
        for ack in changes.refusals:
            log.warning("2030.5 %s: function settings %s not representable: %s",
                        ack.resource_id, ack.instruction_id, ack.detail)
            await self.gateway.record_acknowledgement(ack)

    def forget(self, resource_ids: Iterable[str]) -> None:
        self._epoch += 1
        for rid in resource_ids:
            self._published.pop(rid, None)
            self._effective.pop(rid, None)


@dataclass(frozen=True, slots=True)
class Changes:
    controls: set[str]  # DERs whose DERControls changed
    defaults: set[str]  # DERs whose DefaultDERControl changed
    updates: dict[str, Published]  # what to write
    refusals: list[Acknowledgement]  # cannot_comply for settings 2030.5 cannot carry


def default_digest(control: EffectiveControl | None) -> str | None:
    """Identity of what a DefaultDERControl says: the default control and the standing
    1547 settings whose curves it links (None: neither)."""
    if control is None or not (control.default_control or control.function_settings):
        return None
    return json.dumps([control.default_control, control.function_settings], sort_keys=True,
                      default=str)


def _functions_of(digest: str | None) -> Any:
    """The function settings a `default_digest` was made of."""
    return None if digest is None else json.loads(digest)[1]


def refused_settings(control: EffectiveControl | None, protocol: str) -> list[Acknowledgement]:
    """A cannot_comply acknowledgement of the function-settings instruction when part of it
    cannot be expressed in 2030.5 (what can is still published); none otherwise."""
    if control is None or control.function_source is None:
        return []
    refusals = mapper.standing_functions(control.function_settings or {}).refusals
    if not refusals:
        return []
    return [Acknowledgement(
        resource_id=control.resource_id, status=AckStatus.CANNOT_COMPLY,
        protocol=protocol, protocol_status="not representable", at=utcnow(),
        instruction_id=control.function_source.instruction_id, detail="; ".join(refusals))]


class Renderer:
    """What clients see of each DER, kept in step with the store: re-renders DERs whose
    effective control or registration changed, commits the result with its notifications,
    and serves the pollable control documents from what it rendered (issue 12: the
    DefaultDERControl was recomputed on every poll)."""

    def __init__(self, gateway: GatewayPort, state: AdapterState, registry: EndDeviceRegistry,
                 tree: ResourceTree, notifier: Notifier, publisher: ControlPublisher,
                 protocol: str) -> None:
        self.gateway = gateway
        self.state = state
        self.registry = registry
        self.tree = tree
        self.notifier = notifier
        self.publisher = publisher
        self.protocol = protocol
        # EndDevice id -> its generation, bumped whenever what its documents say may have
        # changed; (EndDevice, program, document) -> (generation, valid until, bytes).
        self._generation: dict[int, int] = {}
        self._rendered: dict[tuple[int, int, str], tuple[int, float, bytes]] = {}
        # One re-render at a time: each reads the store, merges with what is published and
        # writes. The periodic refresh and the event log's batches run side by side; a
        # refresh that read a control before a batch wrote its successor wrote the older
        # one back over it (seen with two workers: a client answered the control it had
        # been sent, and its Response was refused as naming no control of its DER).
        self._rendering = asyncio.Lock()

    # --- pollable documents from rendered state -------------------------------------------

    def invalidate(self, edev_ids: Iterable[int] | None = None) -> None:
        """What these EndDevices' documents say may have changed (None: every one)."""
        if edev_ids is None:
            self._rendered.clear()
            self._generation = {k: v + 1 for k, v in self._generation.items()}
            return
        gone = set(edev_ids)
        for edev in gone:
            self._generation[edev] = self._generation.get(edev, 0) + 1
        for key in [k for k in self._rendered if k[0] in gone]:
            del self._rendered[key]

    async def rendered(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                       kind: str) -> bytes:
        """The bytes of a program's DERControlList ("derc"), ActiveDERControlList
        ("actderc") or DefaultDERControl ("dderc"), rendered once and served until what it
        says changes (a new render) or time moves a control to its next status."""
        key = (record.id, spec.index, kind)
        now = time.time()
        hit = self._rendered.get(key)
        generation = self._generation.get(record.id, 0)
        if hit is not None and hit[0] == generation and now < hit[1]:
            return hit[2]
        doc, valid_until = await self._render_document(record, spec, kind, int(now))
        body = serialize(doc)
        if self._generation.get(record.id, 0) == generation:  # (no change while rendering)
            self._rendered[key] = (generation, valid_until, body)
        return body

    async def _render_document(self, record: EndDeviceRecord, spec: programs.ProgramSpec,
                               kind: str, now: int) -> tuple[Any, float]:
        if kind == "dderc":
            return await self.tree.default_control(record, spec), now + RENDERED_MAX_AGE_S
        rows = await self.tree.listed(record, spec, now)
        edges = [t for c in rows for t in (c.start, c.start + c.duration,
                                           c.start + c.duration + 60) if t > now]
        valid_until = min([*edges, now + RENDERED_MAX_AGE_S])
        items = self.tree.control_docs(record, spec, rows, now, active_only=kind == "actderc")
        href = docs.Hrefs(record.id).program(spec.index, kind)
        if kind == "actderc":
            return m.DERControlList(href=href, all=len(items), results=len(items),
                                    DERControl=items), valid_until
        return m.DERControlList(href=href, all=len(items), results=len(items), subscribable=1,
                                DERControl=items), valid_until

    # --- re-rendering -----------------------------------------------------------------------

    async def on_controls_changed(self, resource_ids: Iterable[str]) -> None:
        """Re-render DERs' controls from the store and notify their subscribers; a batch is
        one read of the effective controls and one write of the controls and their
        notifications. A DER the platform removed (or bound to another protocol) loses its
        EndDevice, and its Subscriptions their pending notifications."""
        wanted = set(resource_ids)
        if not wanted:
            return
        async with self._rendering:
            await self._rerender(wanted)

    async def _rerender(self, wanted: set[str]) -> None:
        resources = {r.id: r for r in await self.gateway.resources(ids=wanted)
                     if r.binding.protocol == self.protocol}
        await self._remove([rec for rid in sorted(wanted - set(resources))
                            if (rec := self.registry.by_resource(rid)) is not None])
        new = {rid for rid in resources if self.registry.by_resource(rid) is None}
        records = await self.registry.ensure_resources(list(resources.values()))
        await self.announce_new_devices({rec.aggregator_id for rid, rec in records.items()
                                         if rid in new and rec.aggregator_id})
        self.invalidate(rec.id for rec in records.values())
        changes = await self.publisher.refresh_many(
            {rid: resources[rid].nameplate.export_max_w for rid in records},
            {rid: (self.tree.program_settings(rec.lfdi), self.tree.layout_of(rec))
             for rid, rec in records.items()})
        outgoing: list[Outgoing] = []
        for rid in sorted(changes.controls | changes.defaults):
            outgoing += await self._control_notifications(
                records[rid], changes.updates[rid].controls if rid in changes.controls else None,
                rid in changes.defaults)
        if changes.updates:
            await self.state.write(RecordWrite(puts={"derc": published_docs(changes.updates)},
                                               deliveries=outgoing))
        await self.publisher.commit(changes)
        self.invalidate(rec.id for rec in records.values())  # (and after: now published)

    async def _remove(self, records: list[EndDeviceRecord]) -> None:
        if not records:
            return
        subs = self.notifier.about({r.id for r in records})
        removal = self.notifier.removal(subs)
        await self.state.write(RecordWrite(
            deletes=[*removal.deletes, *(self.state.end_device_key(r.id) for r in records),
                     *(("derc", r.resource_id) for r in records if r.resource_id)],
            cancel=removal.cancel))
        self.notifier.forget(subs)
        self.registry.remove(records)
        self.publisher.forget(r.resource_id for r in records if r.resource_id)
        self.invalidate(r.id for r in records)
        log.info("2030.5: %d EndDevices removed with their DERs (%d subscriptions)",
                 len(records), len(subs))
        await self.announce_new_devices({r.aggregator_id for r in records if r.aggregator_id})

    async def _control_notifications(self, record: EndDeviceRecord,
                                     controls: list[ControlRecord] | None, default: bool
                                     ) -> list[Outgoing]:
        """Notifications of a DER's new DERControlLists (`controls`: everything now
        published for it, None: unchanged) and DefaultDERControl."""
        holders = self.holders(record)
        h = docs.Hrefs(record.id)
        now = int(time.time())
        out: list[Outgoing] = []
        for spec in self.tree.layout_of(record):
            derc, dderc = h.program(spec.index, "derc"), h.program(spec.index, "dderc")
            if controls is not None and (subs := self.notifier.to(derc, holders)):
                rows = sorted((c for c in controls if c.program == spec.index
                               and docs.listed(c, now)), key=docs.sort_key)
                items = self.tree.control_docs(record, spec, rows, now, active_only=False)
                lst = m.DERControlList(href=derc, all=len(items), results=len(items),
                                       subscribable=1, DERControl=items)
                out += self.notifier.notifications(subs, derc, lst)
            if default and "default" in spec.carries and \
                    (subs := self.notifier.to(dderc, holders)):
                out += self.notifier.notifications(subs, dderc,
                                                   await self.tree.default_control(record, spec))
        return out

    def holders(self, record: EndDeviceRecord) -> set[int]:
        """Who may hold subscriptions to a DER's resources: the device itself and its
        aggregator's own EndDevices."""
        if not record.aggregator_id:
            return {record.id}
        return {record.id, *self.registry.own_ids(record.aggregator_id)}

    def subscribers(self, record: EndDeviceRecord) -> list[Subscription]:
        """Subscriptions held by the device itself or by its aggregator's own EndDevice."""
        return [s for holder in sorted(self.holders(record))
                for s in self.notifier.subscriptions(holder)]

    # --- lists that change with registrations and the platform's settings -----------------

    async def announce_end_devices(self, scope: ClientScope) -> None:
        """Notify the client's own EndDevice subscriptions to /edev of the current list."""
        for own in [r for r in self.registry.visible(scope) if r.lfdi == scope.lfdi]:
            subs = [s for s in self.notifier.subscriptions(own.id) if s.resource == "/edev"]
            if not subs:
                continue
            limit = max(s.limit for s in subs)
            await self.notifier.announce(subs, "/edev",
                                         await self.tree.list_document(scope, "/edev", limit))

    async def announce_new_devices(self, aggregator_ids: set[str]) -> None:
        """New (or removed) DERs of an aggregator change what its clients' EndDeviceList
        shows."""
        for aggregator_id in sorted(aggregator_ids):
            for own in self.registry.by_lfdi_any_aggregator(aggregator_id):
                await self.announce_end_devices(ClientScope(own.lfdi, own.sfdi, aggregator_id))

    async def set_program(self, lfdi: str, doc: dict[str, Any]) -> None:
        """A DER's program settings: stored with the FSA and program lists they change, in
        one transaction; then its controls are re-rendered (and announced) from them."""
        self.tree.programs[lfdi.upper()] = doc
        records = [r for r in self.registry.by_lfdi(lfdi) if r.resource_id]
        self.invalidate(r.id for r in self.registry.by_lfdi(lfdi))
        outgoing: list[Outgoing] = []
        for record in records:  # program lists show the new settings; FSAs are re-announced
            subs = self.subscribers(record)
            fsa = self.tree.fsa_list(record)
            outgoing += self.notifier.notifications(subs, fsa.href or "", fsa)
            for number in [None, *programs.fsa_numbers(self.tree.layout_of(record))]:
                lst = await self.tree.program_list(record, number)
                outgoing += self.notifier.notifications(subs, lst.href or "", lst)
        await self.notifier.send(outgoing, puts={"program": {lfdi.upper(): doc}})
        await self.on_controls_changed([r.resource_id for r in records if r.resource_id])

    async def set_rate(self, kind: str, resource: str, seconds: int) -> None:
        """A poll or post rate, stored with the notifications of the lists it changes."""
        self.tree.checked_rate(kind, seconds)
        self.tree.rates.setdefault(kind, {})[resource] = seconds
        tail = RATED_LISTS.get(resource) if kind == "poll" else None
        outgoing = await self._list_notifications(tail) if tail else []
        await self.notifier.send(outgoing, puts={"settings": {"rates": self.tree.rates}})
        self.invalidate()

    async def _list_notifications(self, tail: str) -> list[Outgoing]:
        """Every subscription to a list whose href ends with `tail`, told its current state."""
        outgoing: list[Outgoing] = []
        for holder in self.registry.all_records():
            subs = [s for s in self.notifier.subscriptions(holder.id)
                    if s.resource.endswith(tail)]
            scope = ClientScope(holder.lfdi, holder.sfdi,
                                self.registry.aggregator_clients.get(holder.lfdi))
            for sub in subs:
                doc = await self.tree.list_document(scope, sub.resource, sub.limit)
                if doc is not None:
                    outgoing += self.notifier.notifications([sub], sub.resource, doc)
        return outgoing

    async def refresh_all(self, batch: int = 500) -> None:
        """Rebuild every DER's controls from the store (after a start, or when the event log
        was missed): every 2030.5 DER, and every EndDevice whose DER may have gone."""
        ids = [r.id for r in await self.gateway.resources(protocol=self.protocol)]
        known = set(ids)
        ids += [r.resource_id for r in self.registry.all_records()
                if r.resource_id and r.resource_id not in known]
        for start in range(0, len(ids), batch):
            await self.on_controls_changed(ids[start:start + batch])
