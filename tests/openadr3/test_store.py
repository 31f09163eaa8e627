"""The VTN object store's index of the resource objects standing for a platform DER."""

from __future__ import annotations

from adapters.openadr3.state import ObjectStore, StoredObject
from gateway.records import AdapterRecords
from gateway.store.engine import Database


def resource(n: int, der: str | None) -> StoredObject:
    body = {"id": f"resource-{n}", "resourceName": f"r{n}", "venID": "ven-1"}
    return StoredObject("3.1.0", "resource", n, body, "client", (f"ven-1/r{n}",),
                        {"resource_id": der} if der else {})


async def test_resource_objects_are_found_by_the_der_they_stand_for(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    await db.upgrade()
    try:
        store = ObjectStore(AdapterRecords(db, "openadr3"))
        for n, der in ((1, "d1"), (2, "d2"), (3, "d1"), (4, None)):
            await store.save(resource(n, der))
        assert [o.id for o in store.standing_for("3.1.0", "d1")] == ["resource-1", "resource-3"]
        assert store.standing_for("3.0.1", "d1") == []

        moved = store.get("3.1.0", "resource", "resource-3")
        moved.meta = {}  # changed in place, then saved (as the bridge does)
        await store.save(moved)
        assert [o.id for o in store.standing_for("3.1.0", "d1")] == ["resource-1"]
        await store.remove(store.get("3.1.0", "resource", "resource-2"))
        assert store.standing_for("3.1.0", "d2") == []

        again = ObjectStore(AdapterRecords(db, "openadr3"))  # a restart
        await again.load()
        assert [o.id for o in again.standing_for("3.1.0", "d1")] == ["resource-1"]
    finally:
        await db.close()


async def test_objects_are_found_by_owner_in_creation_order(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    await db.upgrade()
    try:
        store = ObjectStore(AdapterRecords(db, "openadr3"))
        for n in (1, 2, 3):
            await store.save(resource(n, None))
        other = resource(4, None)
        other.owner = "someone-else"
        await store.save(other)
        assert [o.id for o in store.owned("3.1.0", "resource", "client")] == [
            "resource-1", "resource-2", "resource-3"]
        first = store.get("3.1.0", "resource", "resource-1")
        first.body = {**first.body, "resourceName": "renamed"}
        await store.save(first)  # an update keeps its place
        await store.remove(store.get("3.1.0", "resource", "resource-2"))
        assert [o.id for o in store.owned("3.1.0", "resource", "client")] == [
            "resource-1", "resource-3"]
        assert store.count_owned("3.1.0", "resource", "someone-else") == 1
        assert store.owned("3.0.1", "resource", "client") == []

        again = ObjectStore(AdapterRecords(db, "openadr3"))  # a restart
        await again.load()
        assert [o.id for o in again.owned("3.1.0", "resource", "client")] == [
            "resource-1", "resource-3"]
    finally:
        await db.close()
