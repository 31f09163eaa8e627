"""With several processes, a client may list an EndDevice at one process and read it at
another before the event log has brought it there: the registry reads an id it does not know
from the store (a 404 ends a client's walk), remembers a miss until EndDevices change, and
re-reads by key the EndDevices another process wrote."""

from __future__ import annotations

from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.settings import Settings
from adapters.ieee2030_5.state import AdapterState, EndDeviceRecord
from gateway.records import AdapterRecords
from gateway.store.engine import Database


def device(edev_id: int, resource_id: str) -> EndDeviceRecord:
    return EndDeviceRecord(id=edev_id, lfdi="AB" * 20, sfdi=1, changed_time=0,
                           registered_time=0, pin=111115, resource_id=resource_id)


async def test_an_end_device_another_process_made_is_read_through(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    try:
        other = AdapterState(AdapterRecords(db, "ieee2030_5"))  # the process that made it
        here = AdapterState(AdapterRecords(db, "ieee2030_5"))
        registry = EndDeviceRegistry(None, here, Settings(), "ieee2030_5")  # type: ignore[arg-type]
        await registry.load()
        await other.save_end_device(device(447, "der-447"))
        assert registry.by_id(447) is None  # not heard of yet
        found = await registry.recall(447)
        assert found is not None and found.resource_id == "der-447"
        assert registry.by_id(447) is found and registry.by_resource("der-447") is found

        reads = 0
        real = here.end_device

        async def counted(edev_id: int) -> EndDeviceRecord | None:
            nonlocal reads
            reads += 1
            return await real(edev_id)

        here.end_device = counted  # type: ignore[method-assign]
        assert await registry.recall(9) is None and await registry.recall(9) is None
        assert reads == 1  # a miss is remembered ...
        await other.save_end_device(device(9, "der-9"))
        await registry.reread([9])  # ... until EndDevices change
        assert registry.by_id(9) is not None

        await other.records.delete("edev", "0000000447")  # gone at the other process
        await registry.reread([447])
        assert registry.by_id(447) is None and registry.by_resource("der-447") is None
    finally:
        await db.close()
