"""With several processes, a client may list an EndDevice at one process and read it at
another before the event log has brought it there: the registry reads an id it does not know
from the store (a 404 ends a client's walk), remembers a miss until EndDevices change, and
re-reads by key the EndDevices and Subscriptions another process wrote."""

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


async def test_subscriptions_another_process_wrote_are_reread_by_key(tmp_path):
    """A fleet subscribing at one process: the other keeps each new Subscription by key
    (found by the href it names and by its holder), and drops one deleted there; it does
    not reload every EndDevice and Subscription for each."""
    from adapters.ieee2030_5.function_sets.pubsub import Notifier
    from adapters.ieee2030_5.state import Subscription, subscription_key

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    try:
        other = AdapterState(AdapterRecords(db, "ieee2030_5"))
        here = AdapterState(AdapterRecords(db, "ieee2030_5"))

        async def any_url(url: str) -> None:
            return None

        notifier = Notifier(here, None, any_url)
        await notifier.load()
        subs = [Subscription(id=100 + i, edev_id=1, resource=f"/edev/{5 + i}/derp/1/derc",
                             notification_uri="https://127.0.0.1:1/n", limit=1)
                for i in range(3)]
        for sub in subs:
            await other.save_subscription(sub)
        keys = [subscription_key(s.edev_id, s.id)[1] for s in subs]
        await notifier.reread(keys)
        assert [s.id for s in notifier.subscriptions(1)] == [100, 101, 102]
        assert [s.id for s in notifier.to("/edev/6/derp/1/derc", {1})] == [101]
        assert notifier.to("/edev/6/derp/1/derc", {2}) == []  # held by another EndDevice

        await other.records.delete("sub", keys[1])
        await notifier.reread([keys[1]])
        assert [s.id for s in notifier.subscriptions(1)] == [100, 102]
        assert notifier.to("/edev/6/derp/1/derc", {1}) == [] and notifier.by_id(101) is None
    finally:
        await db.close()


async def test_responses_and_mirror_usage_points_another_process_wrote_are_reread_by_key(
        tmp_path):
    """Each Response or MirrorUsagePoint stored at another process is read here by its key,
    not by reading every device's again (which made a two-process fan-out quadratic)."""
    from adapters.ieee2030_5.feedback import Feedback
    from adapters.ieee2030_5.function_sets.documents import RESPONSE_SET
    from adapters.ieee2030_5.state import MupRecord, ResponseRecord

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.upgrade()
    try:
        other = AdapterState(AdapterRecords(db, "ieee2030_5"))
        here = AdapterState(AdapterRecords(db, "ieee2030_5"))
        feedback = Feedback(None, here, None, "ieee2030_5")  # type: ignore[arg-type]
        assert await feedback._kept_responses() == {}
        index = await feedback._index()

        first = ResponseRecord(id=7, set_id=RESPONSE_SET, subject="AA", lfdi="L1", status=1,
                               created=0)
        await other.save_response(first, [])
        await feedback.reread_responses([f"{RESPONSE_SET:010d}/{7:010d}"])
        second = ResponseRecord(id=8, set_id=RESPONSE_SET, subject="AA", lfdi="L1", status=2,
                                created=1)
        await other.save_response(second, [first])  # the other process drops the oldest
        await feedback.reread_responses([f"{RESPONSE_SET:010d}/{8:010d}",
                                         f"{RESPONSE_SET:010d}/{7:010d}"])
        assert [r.id for r in (await feedback._kept_responses())["L1"]] == [8]

        mup = MupRecord(id=3, mrid="M3", lfdi="L1", edev_id=None, role_flags="03",
                        service_category=0, status=0)
        await other.save_mup(mup)
        await feedback.reread_mups([f"{3:010d}"])
        assert index.by_mrid["M3"] == 3 and index.by_lfdi["L1"] == {3}
        await other.delete_mup(3)
        await feedback.reread_mups([f"{3:010d}"])
        assert 3 not in index.by_id and "M3" not in index.by_mrid
    finally:
        await db.close()
