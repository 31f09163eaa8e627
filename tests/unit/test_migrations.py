"""Migrations build exactly the schema the tables describe, and an upgrade keeps the data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from gateway.domain import Participant, Role
from gateway.store import repo
from gateway.store.engine import Database


async def test_migrated_schema_matches_the_tables(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    await db.upgrade()

    def diff(conn):
        return compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    await db.close()


async def test_upgrade_twice_keeps_data(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    db = Database(url)
    await db.upgrade()
    async with db.write() as session:
        await repo.add_participants(session, [Participant("iso", Role.ISO)])
    await db.close()
    db = Database(url)
    await db.upgrade()
    async with db.read() as session:
        assert (await repo.participant(session, "iso")) is not None
    await db.close()
