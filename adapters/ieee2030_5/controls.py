"""Publishing effective controls as DERControls, with the EventStatus lifecycle.

Each effective interval is one DERControl whose mRID is a digest of what it says, so an
unchanged interval keeps its mRID across re-renders. A published control that disappears is
marked superseded (a new control overlaps it) or cancelled (nothing replaces it), and kept
for `retain_s` so clients polling late still see the change.

A control that runs to its end leaves the lists at once (2030.5 has no "completed"
status: the client reports completion), but stays on record for `retain_s` so its late
Responses still find it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from lxml import etree

from adapters.ieee2030_5 import mapper, programs
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import build, serialize
from adapters.ieee2030_5.state import AdapterState, ControlRecord, Published
from gateway.domain import Acknowledgement, AckStatus, EffectiveControl, Protocol, utcnow

log = logging.getLogger(__name__)

SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOM, SUPERSEDED = 0, 1, 2, 3, 4
LIVE = 0  # stored status of a control still in force (scheduled or active by time)


@dataclass(frozen=True, slots=True)
class PublishOptions:
    pen: int
    horizon_s: int
    retain_s: int = 24 * 3600
    dispatch_as: str = "target_w"


def _overlaps(a: ControlRecord, b: ControlRecord) -> bool:
    """Whether `b` would supersede `a`: same DERProgram, overlapping in time."""
    return a.program == b.program and \
        a.start < b.start + b.duration and b.start < a.start + a.duration


def live_status(control: ControlRecord, now: int) -> int:
    if control.status != LIVE:
        return control.status
    return ACTIVE if control.start <= now else SCHEDULED


def open_end(start: int, now: int, horizon: int) -> int:
    """End of a DERControl for an open-ended interval: whole horizons from its start, at
    least half a horizon ahead. Stable between renders (so is the mRID); a re-render (the
    adapter's periodic refresh) extends it well before it lapses."""
    spans = max(1, math.ceil((now - start) / horizon + 0.5))
    return start + spans * horizon


def listed(control: ControlRecord, now: int) -> bool:
    """Whether a DERControlList shows the control: until it ends if in force; a cancelled or
    superseded one while retained, but not past a minute after its window."""
    end = control.start + control.duration
    if control.status == LIVE:
        return end > now
    return end > now - 60


class ControlPublisher:
    """Renders effective controls into published DERControls, many DERs per transaction.

    Keeps a cache of what is published (loaded from the records on first use, written
    through on every change): the records stay the truth after a restart.
    """

    def __init__(self, gateway: Any, state: AdapterState, options: PublishOptions) -> None:
        self.gateway = gateway
        self.state = state
        self.options = options
        self._published: dict[str, Published] = {}

    async def effective(self, resource_id: str) -> EffectiveControl | None:
        control: EffectiveControl | None = await self.gateway.effective_control(resource_id)
        return control

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
        """Re-render the given DERs (id -> export rating) from the store, in one read and one
        write, each with its program settings and layout; returns which DERs' DERControls
        and DefaultDERControls changed."""
        now = int(time.time())
        controls = await self.gateway.effective_controls(list(resources))
        updates: dict[str, Published] = {}
        changes = Changes(set(), set())
        refusals: list[Acknowledgement] = []
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
                    refusals += refused_settings(control)
            if changed or default != old.default or len(merged) != len(old.controls):
                updates[rid] = Published(merged, default)
        if updates:
            await self.state.save_published(updates)
            self._published.update(updates)
        for ack in refusals:
            log.warning("2030.5 %s: function settings %s not representable: %s",
                        ack.resource_id, ack.instruction_id, ack.detail)
            await self.gateway.record_acknowledgement(ack)
        return changes


@dataclass(frozen=True, slots=True)
class Changes:
    controls: set[str]
    defaults: set[str]


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


def refused_settings(control: EffectiveControl | None) -> list[Acknowledgement]:
    """A cannot_comply acknowledgement of the function-settings instruction when part of it
    cannot be expressed in 2030.5 (what can is still published); none otherwise."""
    if control is None or control.function_source is None:
        return []
    refusals = mapper.standing_functions(control.function_settings or {}).refusals
    if not refusals:
        return []
    return [Acknowledgement(
        resource_id=control.resource_id, status=AckStatus.CANNOT_COMPLY,
        protocol=Protocol.IEEE2030_5, protocol_status="not representable", at=utcnow(),
        instruction_id=control.function_source.instruction_id, detail="; ".join(refusals))]


def der_control(c: ControlRecord, href: str, reply_to: str, now: int) -> m.DERControl:
    base_el = etree.fromstring(c.base_xml.encode())
    status = live_status(c, now)
    return m.DERControl(
        href=href, replyTo=reply_to, responseRequired="03", subscribable=0,
        mRID=c.mrid, description="effective control", version=0, creationTime=c.created,
        EventStatus=m.EventStatus(currentStatus=status,
                                  dateTime=c.status_time if c.status != LIVE else c.created,
                                  potentiallySuperseded=False),
        interval=m.DateTimeInterval(duration=c.duration, start=c.start),
        randomizeStart=c.randomize_start,
        DERControlBase=build(m.DERControlBase, base_el),
    )


def sort_key(c: ControlRecord) -> tuple[int, int, str]:
    """DERControlList order: start ascending, then newest creation, then mRID descending."""
    return (c.start, -c.created, "".join(chr(255 - ord(x)) for x in c.mrid))
