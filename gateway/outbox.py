"""The outbox relay: publishes committed outbox rows to the bus, in order, then marks them.

A crash after the commit and before the publish loses nothing: the rows are still unpublished
and the relay sends them when the process starts again. A crash after the publish and before
the mark repeats them (at-least-once); subscribers de-duplicate by event id.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from gateway.bus import Event, InProcessBus
from gateway.domain import utcnow
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)

# Fault injection for the crash test only: "crash-before-publish[:TOPIC]" makes the process
# exit between commit and publish (of a batch holding TOPIC, if given).
FAULT_ENV = "DER_GATEWAY_FAULT_INJECT"
CRASH_BEFORE_PUBLISH = "crash-before-publish"
CRASH_EXIT_CODE = 70


class OutboxRelay:
    def __init__(self, db: Database, bus: InProcessBus) -> None:
        self._db = db
        self._bus = bus
        self._wake = asyncio.Event()
        self.published = 0

    def wake(self) -> None:
        self._wake.set()

    async def drain(self) -> int:
        """Publish everything pending now; returns how many events went out."""
        total = 0
        while True:
            async with self._db.read() as session:
                rows = await repo.outbox_pending(session)
            if not rows:
                return total
            _maybe_crash(rows)
            for row in rows:
                await self._bus.publish(Event(row.id, row.topic, row.payload))  # type: ignore[arg-type]
            async with self._db.write() as session:
                await repo.mark_published(session, [r.id for r in rows], utcnow())  # type: ignore[misc]
            total += len(rows)
            self.published += len(rows)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="outbox-relay")
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await self.drain()  # what was committed before shutdown still goes out

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # keep relaying; the rows stay pending until they go out
                log.exception("outbox relay error; retrying")
                await asyncio.sleep(1.0)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=5.0)
            self._wake.clear()


def _maybe_crash(rows: list) -> None:  # type: ignore[type-arg]
    fault, _, topic = os.environ.get(FAULT_ENV, "").partition(":")
    if fault == CRASH_BEFORE_PUBLISH and (not topic or any(r.topic == topic for r in rows)):
        log.error("fault injection: exiting between commit and publish")
        os._exit(CRASH_EXIT_CODE)
