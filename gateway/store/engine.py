"""Engine, sessions and schema migrations (alembic, run programmatically)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import PoolResetState

MIGRATIONS = Path(__file__).with_name("migrations")


def json_text(value: Any) -> str:
    """The text of a JSON column. orjson: encoding and decoding JSON columns (the event
    log's payloads, records, controls) was the largest single item of a fan-out's profile.
    Keys that are not strings become strings, as the standard library makes them; what
    orjson refuses (an integer past 64 bits) is left to the standard library."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # (orjson.JSONEncodeError)
        return json.dumps(value)


def json_value(text: str | bytes) -> Any:
    """A JSON column's value (the standard library reads what orjson will not, such as the
    NaN an earlier version may have stored)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class Database:
    """One engine per process; one short transaction per unit of work."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        # SQLite: the pool's rollback on return only if a transaction is still open (see
        # _rollback_if_open), not always.
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not self.is_sqlite, json_serializer=json_text,
            json_deserializer=json_value,
            **({"pool_reset_on_return": None} if self.is_sqlite else {}))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "reset", _rollback_if_open)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer; serialising writers here avoids "database is locked".
        self.write_lock = asyncio.Lock()

    @property
    def asyncpg_dsn(self) -> str:
        """The URL as asyncpg itself takes it (for LISTEN on a connection of its own)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction that commits on success and rolls back on any error."""
        async with self.write_lock, self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_now(self) -> AsyncIterator[AsyncSession]:
        """A small transaction that must not queue behind this process's other writes (a
        lease renewal: queued behind a fan-out's commits for longer than its lease lasts, it
        lost the lease to a process that then redid the whole rendering). PostgreSQL takes
        it beside them; SQLite, with one writer, still in turn."""
        if self.is_sqlite:
            async with self.write() as session:
                yield session
            return
        async with self.sessions() as session, session.begin():
            yield session

    async def upgrade(self) -> None:
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Several workers start at once on a fresh database: one migrates, the
                # others wait for it and then find nothing to do (concurrent CREATEs
                # collided on PostgreSQL's catalogue and killed a worker at its start).
                # The lock is the transaction's: it ends with the migration's commit.
                await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                   {"name": "der-gateway:migrations"})
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # big recomputes commit tens of MB
    cursor.close()


def _rollback_if_open(dbapi_conn: Any, _record: object, state: PoolResetState) -> None:
    """A connection goes back to the pool: roll back what is still open. Sessions end their
    transactions themselves, so the pool's unconditional rollback was one more trip through
    aiosqlite's thread and the event loop per use (a fifth of a small write's trips); the
    check itself reads sqlite3's flag without a trip."""
    inner = getattr(dbapi_conn, "_connection", dbapi_conn)
    if state.asyncio_safe and not state.terminate_only and getattr(inner, "in_transaction",
                                                                    True):
        dbapi_conn.rollback()


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
