"""What the OpenADR feedback remembers of the acknowledgements it recorded: every record is
read once at start-up, so a DER's first report on a changed event costs no read; a write by
another process is read again once it is announced; past the bound, keys are read one by
one."""

from __future__ import annotations

from contextlib import asynccontextmanager

from adapters.openadr3 import feedback as module
from adapters.openadr3.feedback import ACK, Feedback
from gateway.records import AdapterRecords
from gateway.store.engine import Database


class CountingRecords(AdapterRecords):
    """The real records, counting the reads that reach the database."""

    reads = 0

    async def get(self, kind, key):
        self.reads += 1
        return await super().get(kind, key)

    async def list(self, kind, prefix=None):
        self.reads += 1
        return await super().list(kind, prefix)


STARTED = {"ref": "e1@t1", "status": "started"}


@asynccontextmanager
async def three_recorded(tmp_path):
    """A store with three acknowledgement records, and a Feedback that has loaded them."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    await db.upgrade()
    try:
        records = CountingRecords(db, "openadr3")
        await records.put_many(ACK, {f"3.1.0:e{n}:der-{n}": STARTED for n in range(3)})
        feedback = Feedback(service=None, gateway=None, records=records, name="openadr3")
        await feedback.load()
        yield db, records, feedback
    finally:
        await db.close()


async def test_one_read_at_start_and_another_process_write_is_read_once_announced(tmp_path):
    async with three_recorded(tmp_path) as (db, records, feedback):
        assert records.reads == 1

        assert await feedback._last_ack("3.1.0:e1:der-1") == STARTED
        assert await feedback._last_ack("3.1.0:e9:der-9") == {}  # never recorded: no read
        assert records.reads == 1

        # Another process records der-9's acknowledgement and announces the key.
        other = AdapterRecords(db, "openadr3")
        done = {"ref": "e9@t2", "status": "completed"}
        await other.put(ACK, "3.1.0:e9:der-9", done)
        feedback.forget(("3.1.0:e9:der-9",))
        assert await feedback._last_ack("3.1.0:e9:der-9") == done
        assert await feedback._last_ack("3.1.0:e9:der-9") == done
        assert records.reads == 2  # that key alone, once


async def test_past_the_bound_keys_are_read_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(module, "ACKED_CACHE", 2)
    async with three_recorded(tmp_path) as (_, records, feedback):  # past the bound: none kept
        assert await feedback._last_ack("3.1.0:e2:der-2") == STARTED
        assert await feedback._last_ack("3.1.0:e7:der-7") == {}
        assert records.reads == 3  # the list, then each key: absence is no longer known
