"""The adapter's in-memory indexes (EndDevices made in batches, each client's visible list,
MirrorUsagePoints) answer as the store does, over real mutual TLS, and survive a restart."""

from __future__ import annotations

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from adapters.ieee2030_5.feedback import Feedback
from adapters.ieee2030_5.function_sets.scope import ClientScope
from gateway.domain import Binding, DerKind, Nameplate, Resource
from tests.ieee2030_5.test_server import CT, NS, get, text


def _der(n: int, aggregator: str = "agg-1") -> Resource:
    lfdi = f"{n:040X}"
    return Resource(id=f"bulk-{n}", connection_point_id="cp-1", kind=DerKind.PV,
                    nameplate=Nameplate(export_max_w=5000.0),
                    binding=Binding("ieee2030_5", {"lfdi": lfdi, "sfdi": n}),
                    aggregator_id=aggregator)


async def test_a_batch_of_new_ders_becomes_end_devices_at_once(server):
    async with server.client("aggregator-1") as c:
        _, before = await get(c, "/edev")  # fills the aggregator's visible list
        first = int(before.get("all"))
        ders = [_der(n) for n in range(1, 41)]
        for der in ders:
            server.gateway.resources_[der.id] = der
        await server.parts.renderer.on_controls_changed([d.id for d in ders])
        ids = sorted(server.parts.registry.by_resource(d.id).id for d in ders)
        assert ids == list(range(ids[0], ids[0] + 40))  # one block of ids
        _, after = await get(c, "/edev")
        assert int(after.get("all")) == first + 40  # the cached list was renewed
        _, window = await get(c, "/edev?s=5&l=3")
        assert (window.get("all"), window.get("results")) == (str(first + 40), "3")
        hrefs = [e.get("href") for e in after.findall("s:EndDevice", NS)]
        assert [e.get("href") for e in window.findall("s:EndDevice", NS)] == hrefs[5:8]
    async with server.client("aggregator-2") as c:
        _, other = await get(c, "/edev")
        lfdis = {text(e, "s:lFDI") for e in other.findall("s:EndDevice", NS)}
        assert not lfdis & {d.binding.address["lfdi"] for d in ders}
    stored = {r.resource_id for r in await server.parts.state.end_devices()}
    assert {d.id for d in ders} <= stored


def _mup(lfdi: str, mrid: str, mmr: str, value: int = 1, uom: int | None = 38) -> bytes:
    return serialize(m.MirrorUsagePoint(
        mRID=mrid, roleFlags="03", serviceCategoryKind=0, status=1, deviceLFDI=lfdi,
        description="pv meter", MirrorMeterReading=[m.MirrorMeterReading(
            mRID=mmr, ReadingType=m.ReadingType(uom=uom) if uom is not None else None,
            Reading=m.Reading(value=value))]))


async def test_mirror_usage_points_index_matches_the_store(server):
    one, two = server.lfdi("device-1"), server.lfdi("device-2")
    async with server.client("device-1") as c:
        async with c.post("/mup", data=_mup(one, "A1", "AA01"), headers=CT) as r:
            assert r.status == 201
            location = r.headers["Location"]
        # refused: no ReadingType for a new MirrorMeterReading; nothing changes
        async with c.post("/mup", data=_mup(one, "A1", "AA02", uom=None), headers=CT) as r:
            assert r.status == 400
        _, doc = await get(c, location)
        assert text(doc, "s:description") == "pv meter"
        (stored,) = await server.parts.state.mups()
        assert set(stored.readings) == {"AA01"}
        async with c.delete(location) as r:
            assert r.status == 204
        assert (await get(c, location))[0] == 404
        _, lst = await get(c, "/mup")
        assert lst.get("all") == "0"
    assert await server.parts.state.mups() == []
    # the deleted MUP's MirrorMeterReading mRID is free again
    async with server.client("device-2") as c, \
            c.post("/mup", data=_mup(two, "B1", "AA01"), headers=CT) as r:
        assert r.status == 201
        location = r.headers["Location"]
    async with server.client("device-1") as c:
        async with c.post("/mup", data=_mup(one, "B1", "CC01"), headers=CT) as r:
            assert r.status == 400  # another device's MUP mRID
        assert (await get(c, location))[0] == 404

    # a restarted adapter reads the same from the store
    fresh = Feedback(server.gateway, server.parts.state, server.parts.registry, "ieee2030_5")
    scope = ClientScope(two, server.sfdi("device-2"), None)
    (mup,) = await fresh.mups(scope)
    assert (mup.mrid, set(mup.readings)) == ("B1", {"AA01"})
    assert await fresh.mup_count(ClientScope(one, server.sfdi("device-1"), None)) == 0


async def test_response_lookup_is_by_key_and_by_owner(server):
    from tests.ieee2030_5.conftest import limit_control

    server.gateway.controls["der-1"] = limit_control("der-1", 4000.0)
    await server.parts.renderer.on_controls_changed(["der-1"])
    (control,) = await server.parts.state.controls("der-1")
    rsp = m.DERControlResponse(endDeviceLFDI=server.lfdi("device-1"), status=1,
                               subject=control.mrid, createdDateTime=1_700_000_000)
    async with server.client("device-1") as c:
        async with c.post("/rsps/1/rsp", data=serialize(rsp), headers=CT) as r:
            assert r.status == 201
            location = r.headers["Location"]
        status, doc = await get(c, location)
        assert status == 200 and text(doc, "s:subject") == control.mrid
        _, lst = await get(c, "/rsps/1/rsp?a=1700000001")
        assert (lst.get("all"), lst.get("results")) == ("1", "0")
        assert (await get(c, "/rsps/1/rsp/999"))[0] == 404
    async with server.client("device-2") as c:
        assert (await get(c, location))[0] == 404
        _, lst = await get(c, "/rsps/1/rsp")
        assert lst.get("all") == "0"


async def test_a_response_to_a_control_another_process_just_published_is_accepted(server):
    """With several processes, a device told of a new DERControl by one may answer at
    another before the event log has brought the change there: the Response is checked
    against the records (written before the device was told), not refused with a 404."""
    from dataclasses import replace

    from adapters.ieee2030_5.state import Published, published_docs
    from gateway.records import RecordWrite
    from tests.ieee2030_5.conftest import limit_control

    server.gateway.controls["der-1"] = limit_control("der-1", 4000.0)
    await server.parts.renderer.on_controls_changed(["der-1"])
    (control,) = await server.parts.state.controls("der-1")
    newer = replace(control, mrid="F" * 32, created=control.created + 1)
    # The other process's write: the records only, nothing told to this process's renderer.
    await server.parts.state.write(RecordWrite(puts={"derc": published_docs(
        {"der-1": Published([control, newer], None)})}))
    cached = await server.parts.renderer.publisher.published("der-1")
    assert newer.mrid not in {c.mrid for c in cached}  # not heard of here yet
    rsp = m.DERControlResponse(endDeviceLFDI=server.lfdi("device-1"), status=1,
                               subject=newer.mrid, createdDateTime=1_700_000_000)
    async with server.client("device-1") as c:
        async with c.post("/rsps/1/rsp", data=serialize(rsp), headers=CT) as r:
            assert r.status == 201, await r.text()
        unknown = replace(rsp, subject="E" * 32)
        async with c.post("/rsps/1/rsp", data=serialize(unknown), headers=CT) as r:
            assert r.status == 404  # a control published nowhere is still refused
