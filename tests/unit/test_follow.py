"""A follower of the event log that falls behind reads what it missed back from the log, in
order, once each; it rebuilds from the store only when the log no longer holds them (at
100,000 DERs a rebuild per overflow took long enough to overflow again)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete

from gateway.bus import InProcessBus
from gateway.events import ControlChanged, Topic
from gateway.outbox import OutboxHistory, OutboxRelay
from gateway.ports import follow
from gateway.store import repo
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow

MAXSIZE = 5


class Follower:
    """A slow adapter: each batch waits until the test lets it go on."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.resyncs = 0
        self.go = asyncio.Event()
        self.go.set()

    async def on_batch(self, events: list) -> None:
        await self.go.wait()
        self.seen.extend(e.resource_id for e in events if isinstance(e, ControlChanged))

    async def resync(self) -> None:
        self.resyncs += 1


async def commit(db: Database, relay: OutboxRelay, ids: range) -> None:
    async with db.write() as session:
        await repo.add_outbox_many(session, [
            (Topic.EFFECTIVE_CONTROL_CHANGED, {"resource_id": f"der-{i}"}) for i in ids])
        await repo.add_outbox(session, Topic.RESOURCE_CHANGED, {"resource_id": "x"})  # not followed
    await relay.drain()


async def started(tmp_path, history: bool = True):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    await db.upgrade()
    bus = InProcessBus(history=OutboxHistory(db) if history else None)
    relay = OutboxRelay(db, bus)
    await relay.drain()
    follower = Follower()
    task = asyncio.create_task(follow(
        bus, {Topic.EFFECTIVE_CONTROL_CHANGED}, on_batch=follower.on_batch,
        resync=follower.resync, name="test", batch=3, maxsize=MAXSIZE))
    for _ in range(20):
        await asyncio.sleep(0)
    return db, relay, follower, task


async def settle(follower: Follower, count: int) -> None:
    for _ in range(500):
        if len(follower.seen) >= count:
            return
        await asyncio.sleep(0.01)


async def test_a_follower_that_fell_behind_reads_on_from_the_log(tmp_path):
    db, relay, follower, task = await started(tmp_path)
    try:
        assert follower.resyncs == 1
        follower.go.clear()  # the adapter is busy: 40 events come meanwhile (bound: 5)
        for start in range(0, 40, 10):
            await commit(db, relay, range(start, start + 10))
        follower.go.set()
        await settle(follower, 40)
        await commit(db, relay, range(40, 43))  # and it follows live events again
        await settle(follower, 43)
        assert follower.seen == [f"der-{i}" for i in range(43)], "lost, repeated or reordered"
        assert follower.resyncs == 1, "it rebuilt from the store instead of reading on"
    finally:
        task.cancel()
        await db.close()


@pytest.mark.parametrize("why", ["retention passed what it missed", "the bus has no log"])
async def test_it_rebuilds_when_it_cannot_read_what_it_missed(tmp_path, why):
    db, relay, follower, task = await started(tmp_path, history=why != "the bus has no log")
    try:
        follower.go.clear()
        await commit(db, relay, range(0, 20))
        if why == "retention passed what it missed":
            async with db.write() as session:
                await session.execute(delete(OutboxRow))
        follower.go.set()
        for _ in range(500):
            if follower.resyncs == 2:
                break
            await asyncio.sleep(0.01)
        assert follower.resyncs == 2
    finally:
        task.cancel()
        await db.close()


async def test_falling_behind_during_the_rebuild_reads_on_from_the_subscription(tmp_path):
    """A rebuild at 100,000 DERs takes minutes: what queued meanwhile overflows before any
    event was handed on. It reads on from the subscription's first event, not from the
    start of the log."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    await db.upgrade()
    bus = InProcessBus(history=OutboxHistory(db))
    relay = OutboxRelay(db, bus)
    await commit(db, relay, range(0, 3))  # before the follower: its rebuild covers them
    follower = Follower()
    rebuilding = asyncio.Event()

    async def slow_resync() -> None:
        follower.resyncs += 1
        await rebuilding.wait()

    task = asyncio.create_task(follow(
        bus, {Topic.EFFECTIVE_CONTROL_CHANGED}, on_batch=follower.on_batch,
        resync=slow_resync, name="test", batch=3, maxsize=MAXSIZE))
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        await commit(db, relay, range(3, 23))
        rebuilding.set()
        await settle(follower, 20)
        await asyncio.sleep(0.1)
        assert follower.seen == [f"der-{i}" for i in range(3, 23)]
        assert follower.resyncs == 1
    finally:
        task.cancel()
        await db.close()
