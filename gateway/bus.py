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
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from gateway.events import Event, Topic, with_typed

__all__ = ["Bus", "Event", "InProcessBus", "Subscription", "Topic"]

log = logging.getLogger(__name__)


class Bus(Protocol):
    """What publishers and subscribers rely on; `InProcessBus` is the single-process one."""

    async def publish(self, event: Event) -> None: ...

    def subscription(
        self, *topics: str, maxsize: int = 10_000
    ) -> AbstractAsyncContextManager[Subscription]: ...


class Subscription:
    """A bounded queue of events for one subscriber.

    A subscriber that falls `maxsize` events behind is marked `overflowed` and stops
    receiving: it must rebuild from the store (which is the truth) and subscribe again. This
    keeps one slow consumer from growing memory without bound.
    """

    def __init__(self, topics: frozenset[str], maxsize: int) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or (self.topics and event.topic not in self.topics):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("bus subscriber overflowed at event %s; it must resync", event.id)

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

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    async def publish(self, event: Event) -> None:
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
