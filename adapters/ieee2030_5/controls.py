"""Publishing effective controls as DERControls, with the EventStatus lifecycle.

Each effective interval is one DERControl whose mRID is a digest of what it says, so an
unchanged interval keeps its mRID across re-renders. A published control that disappears is
marked superseded (a new control overlaps it) or cancelled (nothing replaces it), and kept
for `retain_s` so clients polling late still see the change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import build, serialize
from adapters.ieee2030_5.state import AdapterState, ControlRecord
from gateway.domain import EffectiveControl
from gateway.errors import NotFound

SCHEDULED, ACTIVE, CANCELLED, CANCELLED_RANDOM, SUPERSEDED = 0, 1, 2, 3, 4
LIVE = 0  # stored status of a control still in force (scheduled or active by time)


@dataclass(frozen=True, slots=True)
class PublishOptions:
    pen: int
    horizon_s: int
    retain_s: int = 24 * 3600
    dispatch_as: str = "target_w"


def _overlaps(a: ControlRecord, b: ControlRecord) -> bool:
    return a.start < b.start + b.duration and b.start < a.start + a.duration


def live_status(control: ControlRecord, now: int) -> int:
    if control.status != LIVE:
        return control.status
    return ACTIVE if control.start <= now else SCHEDULED


class ControlPublisher:
    def __init__(self, gateway: Any, state: AdapterState, options: PublishOptions) -> None:
        self.gateway = gateway
        self.state = state
        self.options = options

    async def effective(self, resource_id: str) -> EffectiveControl | None:
        return await self.gateway.effective_control(resource_id)

    async def _render(self, resource_id: str, now: int, program: dict[str, Any]
                      ) -> list[ControlRecord]:
        control = await self.effective(resource_id)
        if control is None:
            return []
        try:
            resource = await self.gateway.resource(resource_id)
            rating = resource.nameplate.export_max_w
        except NotFound:
            rating = 0.0
        settings = control.function_settings or {}
        ramp = settings.get("ramp_s")
        options = mapper.RenderOptions(
            dispatch_as=self.options.dispatch_as, rating_w=rating,
            ramp_tms=None if ramp is None else min(65535, round(float(ramp) * 100)))
        out = []
        for interval in control.intervals:
            start = mapper.epoch(interval.start)
            end = mapper.epoch(interval.end) if interval.end else now + self.options.horizon_s
            if end <= now or not interval.sources:
                continue
            base_xml = serialize(mapper.control_base(interval, options)).decode()
            mrid = mapper.server_mrid(self.options.pen, resource_id, start, end, base_xml)
            out.append(ControlRecord(
                mrid=mrid, start=start, duration=min(end - start, 2**32 - 1), base_xml=base_xml,
                created=now, instruction_ids=list(interval.instruction_ids),
                randomize_start=program.get("randomize_start")))
        return out

    async def refresh(self, resource_id: str, program: dict[str, Any] | None = None) -> bool:
        """Re-render from the store; True when what a client would see changed."""
        now = int(time.time())
        fresh = await self._render(resource_id, now, program or {})
        old = await self.state.controls(resource_id)
        fresh_ids = {c.mrid for c in fresh}
        by_id = {c.mrid: c for c in old}
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
            if c.status_time + self.options.retain_s > now and c.start + c.duration > now - 60:
                kept.append(c)
        for c in fresh:
            if c.mrid in by_id:
                c.created = by_id[c.mrid].created
            else:
                changed = True
        await self.state.save_controls(resource_id, fresh + kept)
        return changed

    async def cancel_all(self, resource_id: str) -> None:
        now = int(time.time())
        controls = await self.state.controls(resource_id)
        for c in controls:
            if c.status == LIVE:
                c.status, c.status_time = CANCELLED, now
        await self.state.save_controls(resource_id, controls)


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


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
