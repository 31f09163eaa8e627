"""Whether each DER's control reaches it: no silent loss of control (issue 13, for 2030.5).

2030.5 clients pull: the server learns of a DER only from its client's requests and from
what becomes of the notifications sent to it. So this tells the core (`mark_delivery`):

- `fetched` when a client reads a DER's control documents (DERControlList,
  ActiveDERControlList, DefaultDERControl) - the core throttles the writes, and this the
  calls (at most one a `REMARK_S` per DER unless the state changes);
- `delivered` when a notification about the DER was delivered, `undeliverable` when one
  failed for good (the receiver refused it, or stayed away for every retry);
- `undeliverable` when the DER has a live control that no client fetched (nor took as a
  notification) within `missed_polls` poll intervals of its publication (or of the
  adapter's start), and offline (`set_online_many`) once its client has not been heard of
  for as long; the next fetch or delivered notification brings it back online.

The poll interval is the DERProgramList's pollRate: what the server tells clients to poll
their programs and controls at. What was fetched when is kept in memory, and for a DER not
heard of here the core's record is asked too (several processes: a client may poll
another; the core's timestamps are at most a minute old). After a restart every DER gets
`missed_polls` intervals again before it is called unreachable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from adapters.ieee2030_5.function_sets.documents import LIVE
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.pubsub import Notifier, edev_of, subscription_of
from adapters.ieee2030_5.state import ControlRecord, EndDeviceRecord
from gateway.domain import DeliveryMark, DeliveryState
from gateway.ports import DeliveryOutcome, GatewayPort

log = logging.getLogger(__name__)
REMARK_S = 30.0  # a DER's unchanged state is re-told at most this often


@dataclass(slots=True)
class _Told:
    state: DeliveryState
    reason: str
    at: float  # time.time()


class ReachTracker:
    def __init__(self, gateway: GatewayPort, registry: EndDeviceRegistry, notifier: Notifier,
                 published: Callable[[str], Awaitable[list[ControlRecord]]],
                 poll_interval_s: Callable[[], float], missed_polls: int) -> None:
        self.gateway = gateway
        self.registry = registry
        self.notifier = notifier
        self.published = published
        self.poll_interval_s = poll_interval_s
        self.missed_polls = missed_polls
        self.started = time.time()
        # DER -> its client's last contact: it read its controls, or took a notification
        self._fetched: dict[str, float] = {}
        self._told: dict[str, _Told] = {}
        self._offline: set[str] = set()  # DERs this adapter marked offline
        self._unflushed: set[str] = set()  # DERs fetched since the last flush

    @property
    def patience_s(self) -> float:
        """How long a DER's client may leave its controls unread."""
        return self.missed_polls * self.poll_interval_s()

    def fetched(self, record: EndDeviceRecord) -> None:
        """A client read the DER's control documents (told to the core by `flush`, off
        the request's path: a poll never waits for the core's bookkeeping)."""
        rid = record.resource_id
        if rid is None:
            return
        self._fetched[rid] = time.time()
        self._unflushed.add(rid)

    async def flush(self) -> None:
        """Tell the core of the fetches since the last flush (and bring back online the
        DERs this marked offline)."""
        fetched, self._unflushed = self._unflushed, set()
        if not fetched:
            return
        back = {rid: True for rid in fetched if rid in self._offline}
        if back:
            self._offline.difference_update(back)
            await self.gateway.set_online_many(back)
        await self._tell({rid: (DeliveryState.FETCHED, "") for rid in fetched}, time.time())

    async def on_outcomes(self, outcomes: list[DeliveryOutcome]) -> None:
        """What became of notifications: delivered, or failed for good (the DER they were
        about is then unreachable by push, with the receiver's answer as the reason)."""
        marks: dict[str, tuple[DeliveryState, str]] = {}
        now = time.time()
        back: dict[str, bool] = {}
        for outcome in outcomes:
            rid = self._der_of(outcome.subject)
            if rid is None or not (outcome.delivered or outcome.final):
                continue
            if outcome.delivered:  # its client's listener took the control: contact
                self._fetched[rid] = now
                if rid in self._offline:
                    self._offline.discard(rid)
                    back[rid] = True
                marks[rid] = (DeliveryState.DELIVERED, "")
            else:
                sub = self.notifier.by_id(subscription_of(outcome.subject) or -1)
                host = urlsplit(sub.notification_uri).netloc if sub else "its listener"
                marks[rid] = (DeliveryState.UNDELIVERABLE,
                              f"2030.5 notifications to {host} failed for good: "
                              f"{outcome.error or 'no answer'}")
        if back:
            await self.gateway.set_online_many(back)
        await self._tell(marks, now)

    def _der_of(self, subject: str | None) -> str | None:
        """The DER a notification was about: the EndDevice its subscribed resource lies
        under (None for the EndDeviceList, which is about no one DER)."""
        sub = self.notifier.by_id(subscription_of(subject) or -1)
        edev = edev_of(sub.resource) if sub is not None else None
        record = self.registry.by_id(edev) if edev is not None else None
        return record.resource_id if record is not None else None

    async def check(self) -> None:
        """One round of the watch: DERs whose client stopped polling go offline; DERs with a
        live control nobody fetched in time become undeliverable."""
        now = time.time()
        patience = self.patience_s
        offline: dict[str, bool] = {}
        marks: dict[str, tuple[DeliveryState, str]] = {}
        stale = {r.resource_id: r for r in self.registry.all_records()
                 if r.resource_id is not None
                 and now - self._fetched.get(r.resource_id, self.started) > patience}
        heard = await self._heard_elsewhere(list(stale))
        for rid, record in stale.items():
            last = max(self._fetched.get(rid, 0.0), heard.get(rid, 0.0)) or None
            if last is not None and now - last > patience and rid not in self._offline:
                offline[rid] = False
            if now - (last or self.started) <= patience:
                continue  # (read recently, or not yet given its chance)
            unread = [c for c in await self.published(rid)
                      if c.status == LIVE and c.start + c.duration > now
                      and c.created > (last or 0)
                      and now - max(c.created, self.started) > patience]
            if unread:
                marks[rid] = (DeliveryState.UNDELIVERABLE, self._unread_reason(record, last))
        if offline:
            self._offline.update(offline)
            await self.gateway.set_online_many(offline)
            log.info("2030.5: %d DERs' clients stopped polling; marked offline", len(offline))
        await self._tell(marks, now)

    async def _heard_elsewhere(self, resource_ids: list[str]) -> dict[str, float]:
        """When the core last heard of these DERs (fetched or delivered, possibly through
        another gateway process; its timestamps are at most a minute old)."""
        if not resource_ids:
            return {}
        states = await self.gateway.delivery_states(resource_ids)
        out: dict[str, float] = {}
        for rid, state in states.items():
            times = [t.timestamp() for t in (state.last_fetched_at, state.last_delivered_at)
                     if t is not None]
            if times:
                out[rid] = max(times)
        return out

    def _unread_reason(self, record: EndDeviceRecord, last: float | None) -> str:
        when = "has not fetched them since" if last is not None else "has fetched none of them"
        return (f"no 2030.5 client {when} they were published: LFDI {record.lfdi} was not "
                f"polled within {self.missed_polls} poll intervals "
                f"({self.patience_s:.0f} s)")

    async def _tell(self, marks: dict[str, tuple[DeliveryState, str]], now: float) -> None:
        due = []
        for rid, (state, reason) in marks.items():
            told = self._told.get(rid)
            if told is None or told.state is not state or told.reason != reason \
                    or now - told.at >= REMARK_S:
                due.append(DeliveryMark(rid, state, reason))
                self._told[rid] = _Told(state, reason, now)
        if due:
            await self.gateway.mark_delivery(due)
