"""Retention deletes what is past its time and nothing that coordination still reads."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text

from gateway.delivery import DeliveryQueue, Outgoing
from gateway.domain import (
    Acknowledgement,
    AckStatus,
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Participant,
    Quantity,
    Reading,
    Resource,
    Role,
    Target,
    TargetKind,
    utcnow,
)
from gateway.retention import Retention
from gateway.services import GatewayServices
from gateway.settings import RetentionSettings
from gateway.store.engine import Database
from gateway.store.tables import (
    AcknowledgementRow,
    DeliveryRow,
    OutboxRow,
    ReadingRow,
)


async def count(db: Database, model: type) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def age(db: Database, table: str, column: str, days: float) -> None:
    """Make every row of `table` `days` old (test set-up only)."""
    then = utcnow() - timedelta(days=days)
    async with db.write() as session:
        # (as the store writes them on SQLite: naive UTC text)
        await session.execute(text(f"UPDATE {table} SET {column} = :t"),
                              {"t": then.replace(tzinfo=None).isoformat(sep=" ")})


async def test_old_rows_go_and_live_instructions_keep_their_answers(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    services = GatewayServices(db)
    admin = Participant("admin", Role.ADMIN)
    await services.ensure_participant(admin)
    ldc = Participant("ldc", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION)
    await services.register_participants(admin, [ldc, Participant("agg", Role.AGGREGATOR)])
    await services.register_connection_points(admin, [ConnectionPoint("cp", "ldc", "N")])
    await services.register_resources(admin, [Resource(
        "d1", "cp", DerKind.PV, Nameplate(10_000), Binding("modbus", {
            "host": "127.0.0.1", "port": 502, "unit_id": 1}), "agg")])
    now = utcnow()
    live, _ = await services.submit_instruction(ldc, InstructionDraft(
        InstructionKind.LIMIT, Target(TargetKind.RESOURCE, "d1"), now,
        now + timedelta(hours=1), limits=LimitEnvelope(export_max_w=5000)))
    await services.record_readings([Reading("d1", Quantity.ACTIVE_POWER, 1.0, now, "modbus")
                                    for _ in range(25)])
    await services.record_acknowledgement(Acknowledgement(
        "d1", AckStatus.RECEIVED, "modbus", "ok", now, live.id, "c1"))
    await services.record_acknowledgement(Acknowledgement(
        "d1", AckStatus.RECEIVED, "modbus", "ok", now, None, None))
    queue = DeliveryQueue(db).for_adapter("test")
    await queue.enqueue_many([Outgoing("https://example.com/x", b"{}", "application/json")])
    async with db.write() as session:
        await session.execute(text("UPDATE delivery SET delivered_at = created_at"))
        await session.execute(text("UPDATE outbox SET published_at = created_at"))
    for table, column in (("reading", "at"), ("acknowledgement", "at"), ("outbox", "published_at"),
                          ("delivery", "created_at")):
        await age(db, table, column, 400)

    retention = Retention(db, RetentionSettings(batch=10, pause_s=0))
    done = await retention.run_once()

    assert done["reading"] == 25 and await count(db, ReadingRow) == 0  # in batches of 10
    # The answer to the live limit stays (coordination reads it); the other goes.
    async with db.read() as session:
        left = list((await session.execute(select(AcknowledgementRow.instruction_id))).scalars())
    assert left == [live.id]
    assert await count(db, OutboxRow) == 0 and await count(db, DeliveryRow) == 0
    assert (await retention.run_once()) == dict.fromkeys(done, 0)  # nothing more to do
    await db.close()


async def test_young_and_pending_rows_stay(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    queue = DeliveryQueue(db).for_adapter("test")
    await queue.enqueue_many([Outgoing("https://example.com/x", b"{}", "application/json")])
    await age(db, "delivery", "created_at", 400)  # old, but never delivered: kept
    done = await Retention(db, RetentionSettings()).run_once()
    assert done["delivery"] == 0 and await count(db, DeliveryRow) == 1
    await db.close()
