"""Concurrent record writes share a transaction and are merged into one statement per kind,
with the same outcome as one at a time: the last word on a key wins, a deletion by key sees
what came before it, and each caller gets its own deliveries' ids."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select

from gateway.delivery import Outgoing
from gateway.records import AdapterRecords, RecordWrite
from gateway.store.engine import Database
from gateway.store.tables import DeliveryRow


async def test_a_batch_is_merged_with_the_outcome_of_one_at_a_time(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    records = AdapterRecords(db, "demo")
    await records.put("k", "gone", {"v": 0})
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2][:60]))

    def hook(i: int) -> Outgoing:
        return Outgoing(f"https://example.com/{i}", b"x", "text/plain", subject=f"s{i}")

    results = await asyncio.gather(
        *(records.write(RecordWrite(puts={"k": {f"r{i}": {"v": i}}}, deliveries=[hook(i)]))
          for i in range(50)),
        records.put("k", "r7", {"v": "last"}),  # the last word on r7
        records.write(RecordWrite(deletes=[("k", "r8")])),  # a deletion in a merged run
        records.delete("k", "gone"),  # a deletion by key: applied after what came before
        records.put("k", "gone", {"v": "again"}))
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) <= 6, statements  # one per kind and one for the deliveries, a batch
    docs = dict(await records.list("k"))
    assert docs["r7"] == {"v": "last"} and "r8" not in docs and docs["r9"] == {"v": 9}
    assert docs["gone"] == {"v": "again"} and results[52] is True
    async with db.read() as session:
        rows = {r.id: r.url for r in (await session.execute(select(DeliveryRow))).scalars()}
    for i in range(50):  # each caller got the id of its own delivery
        (row_id,) = results[i]
        assert rows[row_id] == f"https://example.com/{i}"
    await db.close()


async def test_a_batch_takes_each_sequence_in_one_statement_in_the_callers_order(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    records = AdapterRecords(db, "demo")
    assert await records.next_sequence("ids") == 1
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2][:60]))

    results = await asyncio.gather(
        *(records.next_sequence("ids", 1 + i % 3) for i in range(30)),
        *(records.put("k", f"r{i}", {"v": i}) for i in range(5)),
        records.next_sequence("other"))
    taken = results[:30]
    # Each caller has the last of its own numbers; together they are 2.. with no gap or
    # overlap, in the callers' order.
    counts = [1 + i % 3 for i in range(30)]
    expected, last = [], 1
    for count in counts:
        last += count
        expected.append(last)
    assert taken == expected
    assert results[-1] == 1  # another sequence keeps its own count
    sequence_statements = [s for s in statements if "sequence" in s.lower()]
    assert len(sequence_statements) <= 2 * 2, statements  # one per sequence name, a batch
    assert await records.next_sequence("ids") == expected[-1] + 1
    await db.close()
