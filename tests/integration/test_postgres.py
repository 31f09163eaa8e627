"""The same store and services on a real PostgreSQL server (database_url selects it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from gateway.domain import (
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Participant,
    Resource,
    Role,
    SetpointStep,
    Target,
    TargetKind,
)
from gateway.errors import Conflict
from gateway.services import GatewayServices
from gateway.store.engine import Database
from tests.support.postgres import postgres_cluster

pytest.importorskip("asyncpg", reason="asyncpg (the postgres extra) is not installed")


async def test_services_on_postgresql(tmp_path):
    with postgres_cluster(tmp_path) as url:
        db = Database(url)
        await db.upgrade()
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata))
        assert diff == []
        services = GatewayServices(db)
        admin = Participant("admin", Role.ADMIN)
        await services.register_participants(admin, [
            admin, Participant("iso", Role.ISO),
            Participant("a", Role.LDC, dso_model=DsoModel.DUAL_PARTICIPATION),
            Participant("x", Role.AGGREGATOR)])
        await services.register_connection_points(admin, [ConnectionPoint("cp", "a", "N")])
        await services.register_resources(admin, [Resource(
            "d1", "cp", DerKind.PV, Nameplate(10_000), Binding("modbus",
            {"host": "127.0.0.1", "port": 502, "unit_id": 1}), "x")])
        now = datetime.now(UTC)
        ldc, iso = await services.participant("a"), await services.participant("iso")
        limit = InstructionDraft(InstructionKind.LIMIT, Target(TargetKind.RESOURCE, "d1"),
                                 now, now + timedelta(hours=1), "thermal",
                                 limits=LimitEnvelope(export_max_w=5000))
        first, created = await services.submit_instruction(ldc, limit, "key-1")
        again, created_again = await services.submit_instruction(ldc, limit, "key-1")
        assert created and not created_again and first.id == again.id
        with pytest.raises(Conflict):
            await services.submit_instruction(ldc, InstructionDraft(
                InstructionKind.LIMIT, Target(TargetKind.RESOURCE, "d1"), now, None,
                limits=LimitEnvelope(export_max_w=1)), "key-1")
        dispatch = InstructionDraft(InstructionKind.DISPATCH, Target(TargetKind.RESOURCE, "d1"),
                                    now, now + timedelta(hours=1),
                                    schedule=(SetpointStep(now, now + timedelta(hours=1), 8000),))
        await services.submit_instruction(iso, dispatch)
        control = await services.effective_control("d1")
        assert control is not None and control.at(now).setpoint_w == pytest.approx(5000)
        assert control.at(now).start.tzinfo is not None
        notices = await services.notices(iso)
        assert [(n.requested_w, n.effective_w) for _, n in notices] == [(8000, 5000)]
        await db.close()


async def test_latest_acknowledgement_per_der(tmp_path):
    from gateway.domain import Acknowledgement, AckStatus

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await db.upgrade()
    services = GatewayServices(db)
    admin = Participant("admin", Role.ADMIN)
    await services.register_participants(admin, [admin, Participant(
        "a", Role.LDC, dso_model=DsoModel.TOTAL)])
    await services.register_connection_points(admin, [ConnectionPoint("cp", "a", "N")])
    await services.register_resources(admin, [Resource(
        f"d{i}", "cp", DerKind.PV, Nameplate(1000), Binding("modbus",
        {"host": "h", "port": 502, "unit_id": i})) for i in (1, 2)])
    now = datetime.now(UTC)
    for status in (AckStatus.RECEIVED, AckStatus.COMPLETED):
        await services.record_acknowledgement(
            Acknowledgement("d1", status, "modbus", status.value, now))
    latest = await services.latest_acknowledgements()
    assert list(latest) == ["d1"] and latest["d1"].status is AckStatus.COMPLETED
    await db.close()


async def test_workers_starting_at_once_on_a_fresh_database_migrate_it_once(tmp_path):
    """`serve --workers N` on a fresh database: every worker upgrades it at its start; one
    migrates, the others wait and find nothing to do (concurrent CREATEs once collided in
    PostgreSQL's catalogue, `pg_type_typname_nsp_index`, and killed a worker)."""
    import asyncio

    with postgres_cluster(tmp_path) as url:
        dbs = [Database(url) for _ in range(4)]
        try:
            await asyncio.gather(*(db.upgrade() for db in dbs))
            async with dbs[0].engine.connect() as conn:
                version = await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision())
            assert version is not None
        finally:
            for db in dbs:
                await db.close()
