"""SQLite connections going back to the pool: rolled back only when a transaction is open."""

from __future__ import annotations

from sqlalchemy.pool import PoolResetState

from gateway.store.engine import Database, _rollback_if_open

STATE = PoolResetState(transaction_was_reset=False, terminate_only=False, asyncio_safe=True)


async def test_an_open_transaction_is_rolled_back_and_a_closed_one_is_left_alone(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'e.db'}")
    await db.upgrade()
    try:
        async with db.engine.connect() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            await conn.commit()
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")  # left open

            def reset(sync_conn):  # the pool's reset hook, as it runs on return
                dbapi = sync_conn.connection.dbapi_connection
                before = dbapi._connection.in_transaction
                _rollback_if_open(dbapi, None, STATE)
                return before, dbapi._connection.in_transaction

            assert await conn.run_sync(reset) == (True, False)
            assert await conn.run_sync(reset) == (False, False)  # nothing open: no rollback
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 0
    finally:
        await db.close()
