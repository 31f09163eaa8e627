"""Adapters' records and sequences (single-statement upserts) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

import pytest

from gateway.records import AdapterRecords
from gateway.store.engine import Database
from tests.support.postgres import postgres_cluster


@contextmanager
def database_url(kind: str, tmp_path):
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
        return
    pytest.importorskip("asyncpg", reason="asyncpg (the postgres extra) is not installed")
    with postgres_cluster(tmp_path) as url:
        yield url


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_records_are_inserted_replaced_and_listed(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        db = Database(url)
        await db.upgrade()
        try:
            records, other = AdapterRecords(db, "a"), AdapterRecords(db, "b")
            await records.put("edev", "1", {"lfdi": "X", "n": 1})
            await records.put("edev", "1", {"lfdi": "X", "n": 2})  # replaced, not doubled
            await records.put_many("edev", {"2": {"n": 3}, "3": {"n": 4}, "1": {"n": 5}})
            await other.put("edev", "1", {"n": 99})
            assert await records.list("edev") == [("1", {"n": 5}), ("2", {"n": 3}),
                                                  ("3", {"n": 4})]
            assert await other.get("edev", "1") == {"n": 99}
            assert await records.delete("edev", "2") and await records.get("edev", "2") is None
        finally:
            await db.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_sequences_count_from_one_without_gaps_or_repeats(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        db = Database(url)
        await db.upgrade()
        try:
            a, b = AdapterRecords(db, "a"), AdapterRecords(db, "b")
            got = await asyncio.gather(*(a.next_sequence("edev") for _ in range(20)))
            assert sorted(got) == list(range(1, 21))
            assert await b.next_sequence("edev") == 1  # each adapter has its own
            assert await a.next_sequence("edev", 500) == 520  # 21..520 taken at once
            assert await a.next_sequence("edev") == 521
        finally:
            await db.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_concurrent_writes_share_transactions_and_a_bad_one_fails_alone(kind, tmp_path):
    with database_url(kind, tmp_path) as url:
        db = Database(url)
        await db.upgrade()
        try:
            records = AdapterRecords(db, "a")
            await records.put("k", "gone", {"n": -1})
            writes = [records.put("k", f"d{n:03d}", {"n": n}) for n in range(50)]
            writes.append(records.put("k", "bad", {"n": object()}))  # not JSON
            writes += [records.next_sequence("s") for _ in range(10)]
            writes.append(records.delete("k", "gone"))
            outcomes = await asyncio.gather(*writes, return_exceptions=True)
            assert isinstance(outcomes[50], Exception)
            assert not any(isinstance(o, Exception) for i, o in enumerate(outcomes) if i != 50)
            assert sorted(outcomes[51:61]) == list(range(1, 11))  # each its own number
            assert outcomes[61] is True
            listed = await records.list("k")
            assert [k for k, _ in listed] == [f"d{n:03d}" for n in range(50)]
            assert records._writes.batches < 20  # shared, not one transaction each
        finally:
            await db.close()
