"""Internal publish/subscribe, woken by the outbox relay.

The bus carries no truth: every event it delivers was first committed to the outbox in the
same transaction as the change it announces. Subscribers must tolerate a repeated event
(at-least-once after a crash) and may de-duplicate by `Event.id`, the outbox row id.

`Bus` is a protocol so that a multi-instance deployment can swap the in-process bus for
PostgreSQL LISTEN/NOTIFY or NATS without touching publishers or subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Protocol

from gateway.events import Event, Topic, with_typed

__all__ = ["Bus", "Event", "InProcessBus", "Subscription", "Topic"]

log = logging.getLogger(__name__)


class History(Protocol):
    """Reads the committed events after `after`, of `topics` (all if empty), in order, up
    to `limit`; None when they are no longer all kept (retention passed them)."""

    async def __call__(self, topics: Collection[str], after: int, limit: int
                       ) -> list[Event] | None: ...


class Bus(Protocol):
    """What publishers and subscribers rely on; `InProcessBus` is the single-process one."""

    async def publish(self, event: Event) -> None: ...

    def subscription(
        self, *topics: str, maxsize: int = 10_000
    ) -> AbstractAsyncContextManager[Subscription]: ...

    async def history(self, topics: Collection[str], after: int, limit: int
                      ) -> list[Event] | None: ...


class Subscription:
    """A bounded queue of events for one subscriber.

    A subscriber that falls `maxsize` events behind is marked `overflowed` and stops
    receiving: it subscribes again and reads what it missed back from the event log
    (`InProcessBus.history`), or rebuilds from the store (the truth) when it cannot. This
    keeps one slow consumer from growing memory without bound.
    """

    def __init__(self, topics: frozenset[str], maxsize: int) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.first_id: int | None = None  # of the first event offered: where it starts

    def offer(self, event: Event) -> None:
        if self.overflowed or (self.topics and event.topic not in self.topics):
            return
        if self.first_id is None:
            self.first_id = event.id
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("bus subscriber overflowed at event %s; it will read on from the log",
                        event.id)

    async def get(self) -> Event:
        return await self.queue.get()

    def drain(self, limit: int) -> list[Event]:
        """Up to `limit` events already queued, without waiting."""
        out: list[Event] = []
        while len(out) < limit and not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while not self.overflowed:
            yield await self.queue.get()


class InProcessBus:
    """The single-process bus: fan-out to bounded per-subscriber queues."""

    def __init__(self, history: History | None = None) -> None:
        self._subscribers: set[Subscription] = set()
        self._taps: list[tuple[frozenset[str], Callable[[Event], None]]] = []
        self._history = history

    @contextmanager
    def tapped(self, topics: Collection[str], hook: Callable[[Event], None]) -> Iterator[None]:
        """While entered, `hook` sees each event of `topics` as it is published, before any
        subscriber can act on it. For marking a cache stale: a subscriber that reads the
        cache on the same event must find it marked (a follower that marked it raced the
        others: with two workers, a Modbus follower read the topology before the topology
        follower had marked it, missed a batch of new DERs and never polled them)."""
        entry = (frozenset(topics), hook)
        self._taps.append(entry)
        try:
            yield
        finally:
            self._taps.remove(entry)

    async def history(self, topics: Collection[str], after: int, limit: int
                      ) -> list[Event] | None:
        """What a subscriber that fell behind missed, read back from the event log (the
        outbox); None without one (a bare bus) or when retention has passed `after`."""
        if self._history is None:
            return None
        return await self._history(topics, after, limit)

    async def publish(self, event: Event) -> None:
        for topics, hook in self._taps:
            if event.topic in topics:
                hook(event)
        if self._subscribers:
            event = with_typed(event)  # decoded once here, not once per subscriber
        for sub in tuple(self._subscribers):
            sub.offer(event)

    def subscribe(self, *topics: str, maxsize: int = 10_000) -> Subscription:
        sub = Subscription(frozenset(topics), maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @asynccontextmanager
    async def subscription(
        self, *topics: str, maxsize: int = 10_000
    ) -> AsyncIterator[Subscription]:
        sub = self.subscribe(*topics, maxsize=maxsize)
        try:
            yield sub
        finally:
            self.unsubscribe(sub)
