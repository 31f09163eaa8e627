"""The topology cache never outlives a write: a load that overlapped a committed write is
used by its caller but not kept (else a new LDC is "not found" right after it was made).
And many callers arriving at an empty cache share one load (a fan-out's thousands of
acknowledgements each reading the whole topology exhausted SQLite's connection pool)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.domain import ConnectionPoint, DsoModel, Participant, Role
from gateway.services import GatewayServices
from gateway.store import repo
from gateway.store.engine import Database


@pytest.fixture
async def store(tmp_path):
    """Services over a fresh store holding only the admin, with an empty topology cache."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await db.upgrade()
    try:
        services = GatewayServices(db)
        admin = Participant("admin", Role.ADMIN)
        await services.register_participants(admin, [admin])
        services.uow.invalidate()
        yield db, services, admin
    finally:
        await db.close()


async def test_a_load_overlapping_a_write_is_not_kept(store, monkeypatch):
    db, services, admin = store
    reading, release = asyncio.Event(), asyncio.Event()
    real = repo.participants

    async def slow_participants(session):  # a reader that has begun its snapshot
        found = await real(session)
        reading.set()
        await release.wait()
        return found

    monkeypatch.setattr(repo, "participants", slow_participants)

    async def load_in_its_own_read():  # (a caller's read: the load is not serialised)
        async with db.read() as session:
            return await services.uow.topology(session)

    slow = asyncio.create_task(load_in_its_own_read())
    await reading.wait()
    monkeypatch.setattr(repo, "participants", real)
    await services.register_participants(admin, [
        Participant("ldc-a", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION)])
    release.set()
    stale = await slow
    assert "ldc-a" not in stale.participants  # what the overlapping reader saw...
    # ...is not what the next caller gets
    await services.register_connection_points(admin, [ConnectionPoint("cp", "ldc-a", "N")])
    assert "cp" in (await services.topology()).connection_points


async def test_callers_at_an_empty_cache_share_one_load(store, monkeypatch):
    _db, services, _admin = store
    loads = 0
    real = repo.participants

    async def counted(session):
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)  # long enough for every caller to arrive meanwhile
        return await real(session)

    monkeypatch.setattr(repo, "participants", counted)
    seen = await asyncio.gather(*(services.topology() for _ in range(200)))
    assert loads == 1
    assert all("admin" in t.participants for t in seen)


async def test_a_follower_never_reads_the_topology_before_it_is_marked_stale(store):
    """Another process registered something: this process's followers of that event must
    find the topology cache already marked, whichever of them runs first. (A follower did
    the marking; with two workers a Modbus follower read the cache before it, missed a
    batch of new DERs and never polled them.)"""
    from gateway.bus import InProcessBus
    from gateway.outbox import OutboxRelay
    from gateway.runtime import _marking_topology

    db, services, admin = store
    here = GatewayServices(db)  # this process; `services` stands for the other one
    await here.topology()  # cached
    bus = InProcessBus()
    relay = OutboxRelay(db, bus, name="here")
    await relay.drain()
    with _marking_topology(bus, here):
        async with bus.subscription("participant.changed") as sub:
            await services.register_participants(admin, [
                Participant("ldc-b", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION)])
            await relay.drain()
            event = await asyncio.wait_for(sub.get(), 5)
            assert event.payload.get("id", "ldc-b") == "ldc-b"
            assert "ldc-b" in (await here.topology()).participants
