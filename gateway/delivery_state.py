"""Whether each DER's control reaches it: no silent loss of control, on any protocol.

Adapters report what they know (`DeliveryMark`: fetched, delivered, pending, undeliverable
with a reason). The core keeps the latest per DER, shows it on the DER
(`GET /v1/resources/{id}`), announces each change of state (`delivery.changed`), marks a DER
online at its first contact, and - when a DER whose control is in force or coming becomes
undeliverable - raises a notice to the issuers of that control, the DER's aggregator and
its LDC (and the hosts above it).

Fetches happen on every poll of every client: a DER's timestamps are written at most once a
`refresh_s` unless its state changes, and marks that arrive together share a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.batching import Coalescer
from gateway.coordination.topology import Topology
from gateway.domain import (
    DeliveryMark,
    DeliveryState,
    EffectiveControl,
    LimitationNotice,
    LimitingInstruction,
    NoticeKind,
    Target,
    TargetKind,
    utcnow,
)
from gateway.events import Topic
from gateway.jsonform import to_json
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)
CONTACT = frozenset({DeliveryState.FETCHED, DeliveryState.DELIVERED})


@dataclass(frozen=True, slots=True)
class _Known:
    state: DeliveryState
    reason: str
    written_at: datetime


class DeliveryStates:
    def __init__(self, db: Database, topology: Callable[[], Awaitable[Topology]],
                 on_commit: Callable[[], None], refresh_s: float = 60.0) -> None:
        self._db = db
        self._topology = topology
        self._on_commit = on_commit
        self._refresh = timedelta(seconds=refresh_s)
        self._known: dict[str, _Known] = {}  # one small record per DER
        self._marks: Coalescer[Sequence[DeliveryMark], list[str]] = Coalescer(self._store)

    async def mark(self, marks: Sequence[DeliveryMark]) -> list[str]:
        """Record marks; returns the DERs seen for the first time (to be marked online)."""
        due = [m for m in marks if self._due(m)]
        if not due:
            return []
        return await self._marks.submit(due)

    def _due(self, mark: DeliveryMark) -> bool:
        known = self._known.get(mark.resource_id)
        return (known is None or known.state is not mark.state or known.reason != mark.reason
                or mark.at - known.written_at >= self._refresh)

    def forget(self, resource_id: str) -> None:
        self._known.pop(resource_id, None)

    def heard(self, changes: Iterable[tuple[str, str, str]]) -> None:
        """States the event log announced (resource id, state, reason), maybe written by
        another process: where one differs from what this process last wrote, that is
        forgotten, so that its next mark is written rather than skipped as a repeat."""
        for resource_id, state, reason in changes:
            known = self._known.get(resource_id)
            if known is not None and (known.state.value, known.reason) != (state, reason):
                del self._known[resource_id]

    def forget_all(self) -> None:
        """After falling behind the event log: nothing known here may still hold."""
        self._known.clear()

    async def _store(self, batches: list[Sequence[DeliveryMark]]) -> list[list[str]]:
        latest: dict[str, DeliveryMark] = {}
        for batch in batches:
            for mark in batch:
                latest[mark.resource_id] = mark  # in order: the last word wins
        topo = await self._topology()
        marks = [m for m in latest.values() if m.resource_id in topo.resources]
        async with self._db.write() as session:
            changes = await repo.put_resource_deliveries(session, marks)
            events = [(Topic.DELIVERY_CHANGED,
                       {"resource_id": m.resource_id, "state": m.state.value,
                        "reason": m.reason or None})
                      for m, previous in changes if previous is not m.state]
            await repo.add_outbox_many(session, events)
            await self._notify_undeliverable(session, topo, [
                m for m, previous in changes
                if m.state is DeliveryState.UNDELIVERABLE
                and previous is not DeliveryState.UNDELIVERABLE])
        now = utcnow()
        for mark in marks:
            self._known[mark.resource_id] = _Known(mark.state, mark.reason, now)
        if changes:
            self._on_commit()
        first = [m.resource_id for m in marks if m.state in CONTACT
                 and topo.resources[m.resource_id].online is not True]
        return [first for _ in batches]

    async def _notify_undeliverable(self, session: AsyncSession, topo: Topology,
                                    marks: list[DeliveryMark]) -> None:
        if not marks:
            return
        controls = await repo.controls(session, [m.resource_id for m in marks])
        notices = [n for m in marks
                   if (n := _notice(m, controls.get(m.resource_id), topo)) is not None]
        stored = await repo.add_notices(session, notices, utcnow())
        await repo.add_outbox_many(session, [(Topic.NOTICE, {"id": i, **to_json(n)})
                                             for i, n in stored])
        for _, notice in stored:
            log.warning("control of %s is undeliverable: %s", notice.subject.id, notice.reason)


def _notice(mark: DeliveryMark, control: EffectiveControl | None, topo: Topology
            ) -> LimitationNotice | None:
    """A notice if the DER has a control in force or coming; None if nothing is lost."""
    if control is None:
        return None
    live = [i for i in control.intervals if i.end is None or i.end > mark.at]
    sources = [s for i in live for s in i.sources]
    for extra in (control.default_source, control.function_source):
        if extra is not None:
            sources.append(extra)
    if not sources:
        return None
    resource = topo.resources[mark.resource_id]
    ldc = topo.ldc_of(mark.resource_id)
    recipients = list(dict.fromkeys(
        [s.issuer_id for s in sources]
        + ([resource.aggregator_id] if resource.aggregator_id else [])
        + ([ldc.id, *topo.hosts_of(ldc.id)] if ldc else [])))
    limiting = tuple(dict.fromkeys(
        LimitingInstruction(s.instruction_id, s.issuer_id, s.quantity, "undeliverable")
        for s in sources))
    return LimitationNotice(
        kind=NoticeKind.UNDELIVERABLE, subject=Target(TargetKind.RESOURCE, mark.resource_id),
        start=mark.at, end=None, requested_w=0.0, effective_w=0.0,
        dispatch_id=sources[0].instruction_id, limiting=limiting, recipients=tuple(recipients),
        reason=f"the control of {mark.resource_id} cannot be delivered: "
               f"{mark.reason or 'no reason given'}")


def marks_for(resource_ids: Sequence[str], state: DeliveryState, reason: str = "",
              at: datetime | None = None) -> list[DeliveryMark]:
    when = at or utcnow()
    return [DeliveryMark(rid, state, reason, when) for rid in resource_ids]
