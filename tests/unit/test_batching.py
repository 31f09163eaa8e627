"""Group commit: concurrent submissions share batches, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from gateway.batching import Coalescer
from gateway.bus import Topic
from gateway.domain import (
    Acknowledgement,
    AckStatus,
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    Nameplate,
    Participant,
    Quantity,
    Reading,
    Resource,
    Role,
)
from gateway.services import GatewayServices
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow


async def test_callers_arriving_during_a_write_share_the_next_batch():
    batches: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)  # a transaction's round trips
        return [i * 10 for i in items]

    coalescer = Coalescer(write)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert [len(b) for b in batches] == [50]  # all were queued before the first write ran
    assert await coalescer.submit(7) == 70 and len(batches) == 2


async def test_a_failed_batch_fails_its_callers_only_and_a_caller_may_give_up():
    async def write(items: list[str]) -> list[str]:
        await asyncio.sleep(0.01)
        if "bad" in items:
            raise ValueError("constraint")
        return items

    coalescer = Coalescer(write, max_batch=2)
    outcomes = await asyncio.gather(coalescer.submit("a"), coalescer.submit("bad"),
                                    coalescer.submit("c"), return_exceptions=True)
    assert isinstance(outcomes[0], ValueError) and isinstance(outcomes[1], ValueError)
    assert outcomes[2] == "c"  # the next batch

    quitter = asyncio.create_task(coalescer.submit("x"))
    stayer = asyncio.create_task(coalescer.submit("y"))
    await asyncio.sleep(0)
    quitter.cancel()
    assert await stayer == "y"


async def test_concurrent_acknowledgements_share_transactions_and_are_announced_in_order(tmp_path):
    db, services = await services_with_ders(tmp_path, 20)
    try:
        now = datetime.now(UTC)
        acks = [Acknowledgement(f"d{i}", AckStatus.COMPLETED, "modbus", "ok", now)
                for i in range(20)]
        stored = await asyncio.gather(*(services.record_acknowledgement(a) for a in acks))
        assert [s.resource_id for s in stored] == [f"d{i}" for i in range(20)]
        assert len({s.id for s in stored}) == 20 and services.feedback.acks.batches < 20
        async with db.read() as session:
            rows = (await session.execute(select(OutboxRow).where(
                OutboxRow.topic == Topic.ACKNOWLEDGEMENT).order_by(OutboxRow.id))).scalars()
            announced = [(r.payload["id"], r.payload["resource_id"]) for r in rows]
        # announced in the order they were stored, each with its own id
        assert announced == sorted((s.id, s.resource_id) for s in stored)
        with pytest.raises(Exception, match="no resource"):
            await services.record_acknowledgement(
                Acknowledgement("gone", AckStatus.COMPLETED, "modbus", "ok", now))
    finally:
        await db.close()


async def test_concurrent_readings_share_transactions_and_are_all_stored(tmp_path):
    db, services = await services_with_ders(tmp_path, 10)
    try:
        now = datetime.now(UTC)
        batches = [[Reading(f"d{i}", Quantity.ACTIVE_POWER, float(i * 10 + k), now, "modbus")
                    for k in range(i % 3 + 1)] for i in range(10)]
        counts = await asyncio.gather(*(services.record_readings(b) for b in batches))
        assert counts == [len(b) for b in batches] and services.feedback.readings_batches.batches < 10
        async with db.read() as session:
            rows = (await session.execute(select(OutboxRow).where(
                OutboxRow.topic == Topic.READING).order_by(OutboxRow.id))).scalars()
            values = sorted(r.payload["value"] for r in rows)
        assert values == sorted(r.value for b in batches for r in b)
        with pytest.raises(Exception, match="no resource"):
            await services.record_readings([Reading("gone", Quantity.ACTIVE_POWER, 1.0, now, "modbus")])
    finally:
        await db.close()


async def services_with_ders(tmp_path, count: int) -> tuple[Database, GatewayServices]:
    """A store with one LDC and `count` Modbus DERs d0, d1, ... on one connection point."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    await db.upgrade()
    services = GatewayServices(db)
    admin = Participant("admin", Role.ADMIN)
    await services.register_participants(admin, [
        admin, Participant("a", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION)])
    await services.register_connection_points(admin, [ConnectionPoint("cp", "a", "N")])
    await services.register_resources(admin, [Resource(
        f"d{i}", "cp", DerKind.PV, Nameplate(1000), Binding(
            "modbus", {"host": "h", "port": 502, "unit_id": i})) for i in range(count)])
    return db, services
