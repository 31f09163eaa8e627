"""What the OpenADR feedback remembers of acknowledgements it recorded: one read per event
(not per DER), and a write by another process is read again once it is announced."""

from __future__ import annotations

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


async def test_one_read_per_event_and_another_process_write_is_seen_once_announced(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
    await db.upgrade()
    try:
        records = CountingRecords(db, "openadr3")
        await records.put_many(ACK, {f"3.1.0:e1:der-{n}": {"ref": "e1@t1", "status": "started"}
                                     for n in range(3)})
        await records.put(ACK, "3.1.0:e2:der-0", {"ref": "e2@t1", "status": "started"})
        feedback = Feedback(service=None, gateway=None, records=records, name="openadr3")

        assert await feedback._last_ack("3.1.0:e1:der-0") == {"ref": "e1@t1", "status": "started"}
        assert await feedback._last_ack("3.1.0:e1:der-2") == {"ref": "e1@t1", "status": "started"}
        assert await feedback._last_ack("3.1.0:e1:der-9") == {}  # none recorded: no read either
        assert records.reads == 1
        assert await feedback._last_ack("3.1.0:e2:der-0") == {"ref": "e2@t1", "status": "started"}
        assert records.reads == 2  # another event: its own read

        # Another process records der-9's acknowledgement of e1 and announces the key.
        other = AdapterRecords(db, "openadr3")
        await other.put(ACK, "3.1.0:e1:der-9", {"ref": "e1@t2", "status": "completed"})
        feedback.forget(("3.1.0:e1:der-9",))
        assert await feedback._last_ack("3.1.0:e1:der-9") == {"ref": "e1@t2",
                                                              "status": "completed"}
        assert records.reads == 3

        feedback.forget(None)  # fell behind the event log: everything is read again
        assert await feedback._last_ack("3.1.0:e2:der-0") == {"ref": "e2@t1", "status": "started"}
        assert records.reads == 4
    finally:
        await db.close()
