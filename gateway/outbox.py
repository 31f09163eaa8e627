"""The event log: every process follows the outbox and publishes it to its own bus, in order.

The outbox is written in the same transaction as each change it announces, with ids in
commit order (gateway.store.repo.add_outbox_many). Each process follows it from its own
position (`log_position`, kept under the process's name, so a restart resumes where it
stopped), publishes each event to its in-process bus, and marks rows published (the first
follower to reach a row does; retention goes by that mark). It wakes on its own commits at
once, on other processes' commits through PostgreSQL LISTEN/NOTIFY, and polls as a backstop.

A crash after the commit and before the publish loses nothing: the rows are still ahead of
the position and go out when the process starts again. A crash after the publish and
before the position is saved repeats them (at-least-once); subscribers de-duplicate by
event id (= outbox id).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, suppress
from typing import Any

from gateway.bus import Event, InProcessBus
from gateway.domain import utcnow
from gateway.events import with_typed
from gateway.store import repo
from gateway.store.engine import Database

log = logging.getLogger(__name__)

# Fault injection for the crash test only: "crash-before-publish[:TOPIC]" makes the process
# exit between commit and publish (of a batch holding TOPIC, if given).
FAULT_ENV = "DER_GATEWAY_FAULT_INJECT"
CRASH_BEFORE_PUBLISH = "crash-before-publish"
CRASH_EXIT_CODE = 70
GATHER_S = 0.01
READ_LIMIT = 500  # events per read of the log
SAVE_EVERY_S = 2.0  # how often the position is written (a restart repeats at most this much)


class OutboxRelay:
    def __init__(self, db: Database, bus: InProcessBus, name: str = "gateway",
                 poll_s: float | None = None) -> None:
        self._db = db
        self._bus = bus
        self.name = name
        self._wake = asyncio.Event()
        self._position: int | None = None
        self._saved = 0
        self._saved_at = 0.0
        # With others writing too (PostgreSQL), poll often as a backstop to NOTIFY.
        self._poll_s = poll_s if poll_s is not None else (5.0 if db.is_sqlite else 1.0)
        self.published = 0

    @property
    def position(self) -> int:
        return self._position or 0

    def wake(self) -> None:
        self._wake.set()

    async def _start_position(self) -> int:
        async with self._db.read() as session:
            stored = await repo.log_position(session, self.name)
            if stored is not None:
                return stored
            pending = await repo.outbox_pending(session, limit=1)
            if pending and pending[0].id is not None:
                return pending[0].id - 1  # what no one has published yet goes out
            return await repo.outbox_max_id(session)

    async def drain(self) -> int:
        """Publish everything past the position now; returns how many events went out."""
        if self._position is None:
            self._position = await self._start_position()
        total = 0
        while True:
            async with self._db.read() as session:
                rows = await repo.outbox_since(session, self._position, limit=READ_LIMIT)
            if not rows:
                break
            _maybe_crash(rows)
            for row in rows:
                await self._bus.publish(Event(row.id, row.topic, row.payload))
            self._position = rows[-1].id
            total += len(rows)
            self.published += len(rows)
            if len(rows) < READ_LIMIT:
                # The end of the log as it was: whatever commits after that read wakes the
                # follower again (not one more read, empty, after every read of a fan-out).
                break
        await self._save(force=False)
        return total

    async def flush(self) -> None:
        """Save the position now (tests and shutdown)."""
        await self._save(force=True)

    async def _save(self, force: bool) -> None:
        """Save the position and mark what it passed published - every SAVE_EVERY_S, not
        every batch: one small write instead of one per batch of events (a restart repeats
        at most that much, which subscribers tolerate)."""
        if self._position is None or self._position == self._saved:
            return
        if not force and time.monotonic() - self._saved_at < SAVE_EVERY_S:
            return
        async with self._db.write() as session:
            await repo.put_log_position(session, self.name, self._position)
            await repo.mark_published_through(session, self._saved, self._position, utcnow())
        self._saved, self._saved_at = self._position, time.monotonic()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="event-log")
        try:
            async with self._listening():
                yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await self.drain()  # what was committed before shutdown still goes out
            await self._save(force=True)

    @asynccontextmanager
    async def _listening(self) -> AsyncIterator[None]:
        """On PostgreSQL, a connection that LISTENs for other processes' commits."""
        if self._db.is_sqlite:
            yield
            return
        import asyncpg

        conn: Any = await asyncpg.connect(self._db.asyncpg_dsn)

        def woken(*_args: object) -> None:
            self._wake.set()

        await conn.add_listener(repo.OUTBOX_CHANNEL, woken)
        try:
            yield
        finally:
            with suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # keep following; the rows stay ahead of the position
                log.exception("event log follower error; retrying")
                await asyncio.sleep(1.0)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            # Commits come in bursts (a fan-out's acknowledgements): gather a few
            # milliseconds' worth into one read instead of reading after each of them.
            await asyncio.sleep(GATHER_S)
            self._wake.clear()


class OutboxHistory:
    """The event log read back: what a bus subscriber that fell behind missed (the bus's
    `history`). Rows are kept until retention deletes them (`outbox_hours` after they were
    published); a position retention has passed answers None, and the subscriber rebuilds
    from the store instead."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, topics: Collection[str], after: int, limit: int
                       ) -> list[Event] | None:
        async with self._db.read() as session:
            # Missed rows are never the newest, so an empty outbox lost them too. (A gap
            # in the ids reads as a loss as well: rebuilding is right either way.)
            oldest = await repo.outbox_min_id(session)
            if oldest is None or oldest > after + 1:
                return None
            rows = await repo.outbox_since(session, after, limit, topics)
        return [with_typed(Event(row.id, row.topic, row.payload)) for row in rows]


def _maybe_crash(rows: list[repo.OutboxEntry]) -> None:
    fault, _, topic = os.environ.get(FAULT_ENV, "").partition(":")
    if fault == CRASH_BEFORE_PUBLISH and (not topic or any(r.topic == topic for r in rows)):
        log.error("fault injection: exiting between commit and publish")
        os._exit(CRASH_EXIT_CODE)
