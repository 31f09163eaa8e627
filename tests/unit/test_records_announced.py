"""With several processes, an adapter's record writes are announced on the event log in the
same transaction, naming the writer and the keys, so the others refresh their caches."""

from __future__ import annotations

from sqlalchemy import select

from gateway.bus import InProcessBus
from gateway.events import Event, RecordsChanged, decode
from gateway.outbox import OutboxRelay
from gateway.records import MAX_KEYS_ANNOUNCED, AdapterRecords, RecordWrite
from gateway.store.engine import Database
from gateway.store.tables import OutboxRow


async def announced(db: Database) -> list[RecordsChanged]:
    async with db.read() as session:
        rows = (await session.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars()
        events = [decode(Event(r.id, r.topic, r.payload)) for r in rows]
    return [e for e in events if isinstance(e, RecordsChanged)]


async def test_writes_are_announced_with_their_keys(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    records = AdapterRecords(db, "demo", announce_as="host/worker-1")
    await records.put("sub", "1", {"a": 1})
    await records.write(RecordWrite(puts={"ctl": {"x": {}, "y": {}}}, deletes=[("sub", "1")]))
    await records.put_many("big", {str(i): {} for i in range(MAX_KEYS_ANNOUNCED + 1)})
    found = await announced(db)
    assert [(e.adapter, e.by) for e in found] == [("demo", "host/worker-1")] * 3
    assert found[0].changes == {"sub": ("1",)}
    assert found[1].changes == {"ctl": ("x", "y"), "sub": ("1",)}
    assert found[2].changes == {"big": None}  # too many to name: reload the kind
    await db.close()


async def test_one_process_announces_nothing(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    await AdapterRecords(db, "demo").put("sub", "1", {"a": 1})
    assert await announced(db) == []
    relay = OutboxRelay(db, InProcessBus())
    assert await relay.drain() == 0
    await db.close()
