"""The topology cache never outlives a write: a load that overlapped a committed write is
used by its caller but not kept (else a new LDC is "not found" right after it was made)."""

from __future__ import annotations

import asyncio

from gateway.domain import ConnectionPoint, DsoModel, Participant, Role
from gateway.services import GatewayServices
from gateway.store import repo
from gateway.store.engine import Database


async def test_a_load_overlapping_a_write_is_not_kept(tmp_path, monkeypatch):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await db.upgrade()
    try:
        services = GatewayServices(db)
        admin = Participant("admin", Role.ADMIN)
        await services.register_participants(admin, [admin])
        services.uow.invalidate()

        reading, release = asyncio.Event(), asyncio.Event()
        real = repo.participants

        async def slow_participants(session):  # a reader that has begun its snapshot
            found = await real(session)
            reading.set()
            await release.wait()
            return found

        monkeypatch.setattr(repo, "participants", slow_participants)
        slow = asyncio.create_task(services.topology())
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
    finally:
        await db.close()
