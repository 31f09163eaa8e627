"""The 2030.5 server over real mutual TLS on loopback, with a fake of the core interface."""

from __future__ import annotations

import ssl

import aiohttp
import pytest
from lxml import etree

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from tests.ieee2030_5.conftest import PEN, limit_control

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
CT = {"Content-Type": "application/sep+xml"}


async def get(session: aiohttp.ClientSession, path: str) -> tuple[int, etree._Element | None]:
    async with session.get(path) as resp:
        data = await resp.read()
        return resp.status, etree.fromstring(data) if data else None


def text(el: etree._Element, path: str) -> str:
    return el.findtext(path, namespaces=NS)


async def test_discovery_to_active_limit(server):
    """A device discovers its EndDevice and sees a platform limit as an active DERControl."""
    server.gateway.controls["der-1"] = limit_control("der-1", 5000.0)
    await server.service.on_control_changed("der-1")
    async with server.client("device-1") as c:
        status, dcap = await get(c, "/dcap")
        assert status == 200
        edev_href = dcap.find("s:EndDeviceListLink", NS).get("href")
        _, edevs = await get(c, edev_href)
        assert edevs.get("all") == "1"
        edev = edevs.find("s:EndDevice", NS)
        assert text(edev, "s:lFDI") == server.lfdi("device-1")
        _, fsas = await get(c, edev.find("s:FunctionSetAssignmentsListLink", NS).get("href"))
        _, programs = await get(c, fsas.find("s:FunctionSetAssignments/s:DERProgramListLink",
                                             NS).get("href"))
        program = programs.find("s:DERProgram", NS)
        _, controls = await get(c, program.find("s:DERControlListLink", NS).get("href"))
        (control,) = controls.findall("s:DERControl", NS)
        assert text(control, "s:EventStatus/s:currentStatus") == "1"
        assert text(control, "s:DERControlBase/c:opModExpLimW/s:value") == "5000"
        assert text(control, "s:mRID").endswith(f"{PEN:08d}")
        _, active = await get(c, program.find("s:ActiveDERControlListLink", NS).get("href"))
        assert active.get("all") == "1"


async def test_device_sees_only_itself_and_aggregator_only_its_own(server):
    async with server.client("device-2") as c:
        _, edevs = await get(c, "/edev")
        lfdis = [text(e, "s:lFDI") for e in edevs.findall("s:EndDevice", NS)]
        assert lfdis == [server.lfdi("device-2")]
    async with server.client("aggregator-1") as c:
        _, edevs = await get(c, "/edev")
        lfdis = {text(e, "s:lFDI") for e in edevs.findall("s:EndDevice", NS)}
        assert server.lfdi("device-1") in lfdis
        assert server.lfdi("device-2") not in lfdis  # another aggregator's DER
    other = server.service.registry.by_resource("der-2")
    async with server.client("aggregator-1") as c:
        status, body = await get(c, f"/edev/{other.id}")
        assert status == 404
        assert body.tag == "{urn:ieee:std:2030.5:ns}Error"


async def test_response_becomes_acknowledgement(server):
    server.gateway.controls["der-1"] = limit_control("der-1")
    await server.service.on_control_changed("der-1")
    rid = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, controls = await get(c, f"/edev/{rid}/derp/1/derc")
        control = controls.find("s:DERControl", NS)
        mrid, reply = text(control, "s:mRID"), control.get("replyTo")
        doc = m.DERControlResponse(createdDateTime=1_700_000_000,
                                   endDeviceLFDI=server.lfdi("device-1"), status=3, subject=mrid)
        async with c.post(reply, data=serialize(doc), headers=CT) as resp:
            assert resp.status == 201
            assert resp.headers["Location"].startswith(reply)
        bad = m.Response(endDeviceLFDI=server.lfdi("device-1"), status=3, subject="ABCDEF")
        async with c.post(reply, data=serialize(bad), headers=CT) as resp:
            assert resp.status == 404
        wrong_status = m.Response(endDeviceLFDI=server.lfdi("device-1"), status=99, subject=mrid)
        async with c.post(reply, data=serialize(wrong_status), headers=CT) as resp:
            assert resp.status == 400
        foreign = m.Response(endDeviceLFDI=server.lfdi("device-2"), status=1, subject=mrid)
        async with c.post(reply, data=serialize(foreign), headers=CT) as resp:
            assert resp.status == 404
    (ack,) = server.gateway.acks
    assert (ack.resource_id, ack.status.value, ack.protocol_status) == ("der-1", "completed", "3")
    assert ack.instruction_id == "ins-1" and ack.control_ref == mrid


async def test_cancelled_control_and_notification(server):
    rid = server.service.registry
    server.gateway.controls["der-1"] = limit_control("der-1")
    await server.service.on_control_changed("der-1")
    edev = rid.by_resource("der-1").id
    href = f"/edev/{edev}/derp/1/derc"
    async with server.client("device-1") as c:
        sub = m.Subscription(subscribedResource=href, encoding=0, level="+S1", limit=10,
                             notificationURI="https://127.0.0.1:9/notify")
        async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as resp:
            assert resp.status == 201
        bad = m.Subscription(subscribedResource="/edev/999999/derp/1/derc", encoding=0,
                             level="+S1", limit=10, notificationURI="https://127.0.0.1:9/n")
        async with c.post(f"/edev/{edev}/sub", data=serialize(bad), headers=CT) as resp:
            assert resp.status == 400
        del server.gateway.controls["der-1"]
        await server.service.on_control_changed("der-1")
        _, controls = await get(c, href)
        assert text(controls, "s:DERControl/s:EventStatus/s:currentStatus") == "2"
    sent = [i for i in server.deliveries.items if i.url == "https://127.0.0.1:9/notify"]
    assert sent, "a change to a subscribed DERControlList is notified"
    note = etree.fromstring(sent[-1].body)
    assert text(note, "s:subscribedResource") == href


async def test_der_settings_put_persisted_and_incomplete_refused(server):
    edev = server.service.registry
    async with server.client("device-1") as c:
        await get(c, "/edev")
        rid = edev.by_resource("der-1").id
        settings = m.DERSettings(setGradW=1000, setMaxW=m.ActivePower(multiplier=0, value=10000),
                                 updatedTime=1_700_000_000, doeModesEnabled="03")
        async with c.put(f"/edev/{rid}/der/1/derg", data=serialize(settings), headers=CT) as r:
            assert r.status == 204
        _, back = await get(c, f"/edev/{rid}/der/1/derg")
        assert text(back, "s:setGradW") == "1000"
        assert text(back, "c:doeModesEnabled") == "03"
        incomplete = (b"<DERSettings xmlns='urn:ieee:std:2030.5:ns'><setGradW>5</setGradW>"
                      b"</DERSettings>")
        async with c.put(f"/edev/{rid}/der/1/derg", data=incomplete, headers=CT) as r:
            assert r.status == 400
        _, back = await get(c, f"/edev/{rid}/der/1/derg")
        assert text(back, "s:setGradW") == "1000"  # nothing stored


async def test_mirror_usage_point_feeds_readings(server):
    lfdi = server.lfdi("device-1")
    mmr = m.MirrorMeterReading(
        mRID="AB01", ReadingType=m.ReadingType(uom=38, powerOfTenMultiplier=0),
        Reading=m.Reading(value=4200, timePeriod=m.DateTimeInterval(duration=60,
                                                                    start=1_700_000_000)))
    mup = m.MirrorUsagePoint(mRID="AB00", roleFlags="03", serviceCategoryKind=0, status=1,
                             deviceLFDI=lfdi, MirrorMeterReading=[mmr])
    async with server.client("device-1") as c:
        async with c.post("/mup", data=serialize(mup), headers=CT) as r:
            assert r.status == 201
            location = r.headers["Location"]
        async with c.post("/mup", data=serialize(mup), headers=CT) as r:
            assert r.headers["Location"] == location  # upsert by mRID
        later = m.MirrorMeterReading(mRID="AB01", Reading=m.Reading(value=3900))
        async with c.post(location, data=serialize(later), headers=CT) as r:
            assert r.status == 201
        _, lst = await get(c, "/mup")
        assert lst.get("all") == "1"
    async with server.client("device-2") as c:
        _, lst = await get(c, "/mup")
        assert lst.get("all") == "0"
        status, _ = await get(c, location)
        assert status == 404
    values = [(r.resource_id, r.value) for r in server.gateway.readings_]
    assert values == [("der-1", 4200.0), ("der-1", 4200.0), ("der-1", 3900.0)]


async def test_inband_registration_rules(server):
    """Duplicate LFDI and a device LFDI not matching its certificate are refused."""
    async with server.client("device-1") as c:
        dup = m.EndDevice(lFDI=server.lfdi("device-1"), sFDI=server.sfdi("device-1"),
                          changedTime=0)
        async with c.post("/edev", data=serialize(dup), headers=CT) as r:
            assert r.status == 409
        other = m.EndDevice(lFDI="AB" * 20, sFDI=1, changedTime=0)
        async with c.post("/edev", data=serialize(other), headers=CT) as r:
            assert r.status == 403
    async with server.client("aggregator-1") as c:
        new = m.EndDevice(lFDI="CD" * 20, sFDI=12345, changedTime=0)
        async with c.post("/edev", data=serialize(new), headers=CT) as r:
            assert r.status == 201
            where = r.headers["Location"]
        status, edev = await get(c, where)
        assert status == 200 and text(edev, "s:lFDI") == "CD" * 20
        _, rg = await get(c, where + "/rg")
        assert text(rg, "s:pIN") == "111115"


async def test_paging(server):
    async with server.client("aggregator-1") as c:
        await get(c, "/edev")
        _, page = await get(c, "/edev?s=1&l=1")
        assert page.get("all") == "2" and page.get("results") == "1"
        status, _ = await get(c, "/edev?l=x")
        assert status == 400


async def test_tls_requires_a_client_certificate(server):
    base = server.pki / "ieee2030_5"
    ctx = ssl.create_default_context(cafile=str(base / "ca-chain.pem"))
    ctx.set_ciphers("ECDHE-ECDSA-AES128-CCM8")
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with aiohttp.ClientSession(server.url, connector=aiohttp.TCPConnector(ssl=ctx)) as c:
        with pytest.raises(aiohttp.ClientError):
            async with c.get("/dcap"):
                pass


async def test_mirror_meter_reading_mrid_has_one_owner(server):
    """A MirrorMeterReading mRID already used by another device's MUP is refused."""
    def mup(name: str, mup_mrid: str) -> bytes:
        return serialize(m.MirrorUsagePoint(
            mRID=mup_mrid, roleFlags="03", serviceCategoryKind=0, status=1,
            deviceLFDI=server.lfdi(name), MirrorMeterReading=[m.MirrorMeterReading(
                mRID="ABCDEF01", ReadingType=m.ReadingType(uom=38), Reading=m.Reading(value=1))]))

    async with server.client("device-2") as c, c.post("/mup", data=mup("device-2", "B1"),
                                                      headers=CT) as r:
        assert r.status == 201
    async with server.client("device-1") as c:
        async with c.post("/mup", data=mup("device-1", "A1"), headers=CT) as r:
            assert r.status == 400
        _, lst = await get(c, "/mup")
        assert lst.get("all") == "0"


async def test_revoked_client_is_refused(server):
    async with server.client("device-1") as c:
        assert (await get(c, "/edev"))[0] == 200
        await server.service.registry.set_client_access(server.lfdi("device-1"), None, False)
        status, body = await get(c, "/edev")
        assert status == 403 and body.tag.endswith("Error")
        await server.service.registry.set_client_access(server.lfdi("device-1"), None, True)
        assert (await get(c, "/edev"))[0] == 200


async def test_concurrent_first_sight_makes_one_end_device(server):
    """The bus follower and a polling client racing for one DER must not make two EndDevices."""
    import asyncio

    resource = server.gateway.resources_["der-1"]
    made = await asyncio.gather(*(server.service.registry.ensure_resource(resource)
                                  for _ in range(5)))
    assert len({r.id for r in made}) == 1
    assert len(server.service.registry.by_lfdi(server.lfdi("device-1"))) == 1


async def test_connection_point_must_be_an_nmi_or_known(server):
    rid = None
    async with server.client("device-1") as c:
        await get(c, "/edev")
        rid = server.service.registry.by_resource("der-1").id
        bad = serialize(m.ConnectionPoint(connectionPointId="NOTAVALIDID"))
        async with c.put(f"/edev/{rid}/cp", data=bad, headers=CT) as r:
            assert r.status == 400
            assert text(etree.fromstring(await r.read()), "s:reasonCode") == "1"
        good = serialize(m.ConnectionPoint(connectionPointId="41020000002"))
        async with c.put(f"/edev/{rid}/cp", data=good, headers=CT) as r:
            assert r.status == 201 and r.headers["Location"] == f"/edev/{rid}/cp"
        _, cp = await get(c, f"/edev/{rid}/cp")
        assert text(cp, "c:connectionPointId") == "41020000002"


async def test_default_control_change_is_notified(server):
    from dataclasses import replace

    server.gateway.controls["der-1"] = limit_control("der-1")
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    href = f"/edev/{edev}/derp/1/dderc"
    async with server.client("device-1") as c:
        sub = m.Subscription(subscribedResource=href, encoding=0, level="+S1", limit=1,
                             notificationURI="https://127.0.0.1:9/dderc")
        async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as resp:
            assert resp.status == 201
    server.gateway.controls["der-1"] = replace(server.gateway.controls["der-1"],
                                               default_control={"export_max_w": 1500})
    await server.service.on_control_changed("der-1")
    await server.service.on_control_changed("der-1")  # unchanged: no second notification
    sent = [i for i in server.deliveries.items if i.url == "https://127.0.0.1:9/dderc"]
    assert len(sent) == 1
    note = etree.fromstring(sent[0].body)
    assert text(note, "s:Resource/s:DERControlBase/c:opModExpLimW/s:value") == "1500"


async def test_paging_after_filters_by_time(server):
    server.gateway.controls["der-1"] = limit_control("der-1")
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, lst = await get(c, f"/edev/{edev}/derp/1/derc")
        created = int(text(lst, "s:DERControl/s:creationTime"))
        _, later = await get(c, f"/edev/{edev}/derp/1/derc?a={created + 1}")
        assert later.get("all") == "1" and later.get("results") == "0"
        _, same = await get(c, f"/edev/{edev}/derp/1/derc?a={created}")
        assert same.get("results") == "1"


async def test_aggregator_has_one_subscription_list(server):
    """An aggregator keeps its subscriptions on its own EndDevice: only that one links a
    SubscriptionList; a device's own EndDevice links one too."""
    async with server.client("aggregator-1") as c:
        _, edevs = await get(c, "/edev")
        holders = [text(e, "s:lFDI") for e in edevs.findall("s:EndDevice", NS)
                   if e.find("s:SubscriptionListLink", NS) is not None]
        assert holders == [server.lfdi("aggregator-1")]
    async with server.client("device-1") as c:
        _, edevs = await get(c, "/edev")
        assert edevs.find("s:EndDevice/s:SubscriptionListLink", NS) is not None


async def test_poll_rate_change_notifies_list_subscribers(server):
    async with server.client("aggregator-1") as c:
        _, edevs = await get(c, "/edev")
        own = next(e for e in edevs.findall("s:EndDevice", NS)
                   if text(e, "s:lFDI") == server.lfdi("aggregator-1"))
        sub = m.Subscription(subscribedResource="/edev", encoding=0, level="+S1", limit=5,
                             notificationURI="https://127.0.0.1:9/edev")
        async with c.post(own.get("href") + "/sub", data=serialize(sub), headers=CT) as resp:
            assert resp.status == 201
    await server.service.set_rate("poll", "EndDeviceList", 30)
    (note,) = [etree.fromstring(i.body) for i in server.deliveries.items
               if i.url == "https://127.0.0.1:9/edev"]
    assert note.find("s:Resource", NS).get("pollRate") == "30"
    assert note.find("s:Resource", NS).get("all") == "2"


async def test_ended_control_leaves_the_list_but_takes_late_responses(server):
    """2030.5 has no 'completed' status: a control that ran to its end is no longer listed,
    and the client's 'completed' Response after the end is still accepted."""
    import asyncio
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    control = limit_control("der-1")
    short = replace(control.intervals[0], end=datetime.now(UTC) + timedelta(seconds=2))
    server.gateway.controls["der-1"] = replace(control, intervals=(short,))
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, lst = await get(c, f"/edev/{edev}/derp/1/derc")
        mrid = text(lst, "s:DERControl/s:mRID")
        assert lst.get("all") == "1" and mrid
        await asyncio.sleep(2.2)
        await server.service.on_control_changed("der-1")  # a re-render keeps it on record
        _, lst = await get(c, f"/edev/{edev}/derp/1/derc")
        assert lst.get("all") == "0"
        _, program = await get(c, f"/edev/{edev}/derp/1")
        assert program.find("s:DERControlListLink", NS).get("all") == "0"
        done = m.DERControlResponse(createdDateTime=int(datetime.now(UTC).timestamp()),
                                    endDeviceLFDI=server.lfdi("device-1"), status=3,
                                    subject=mrid)
        async with c.post("/rsps/1/rsp", data=serialize(done), headers=CT) as resp:
            assert resp.status == 201


async def test_standing_curves_are_linked_from_the_default_control(server):
    """1547 settings are standing: the DefaultDERControl links each DERCurve, so a client
    applies them whenever no event says otherwise; a change is notified."""
    from dataclasses import replace

    server.gateway.controls["der-1"] = replace(
        limit_control("der-1"), function_settings={"volt_var": [[95, 40], [105, -40]],
                                                   "freq_watt": [[60.2, 100], [61.0, 0]]})
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, dderc = await get(c, f"/edev/{edev}/derp/1/dderc")
        base = dderc.find("s:DERControlBase", NS)
        links = {el.tag.split("}")[1]: el.get("href") for el in base
                 if el.get("href") is not None}
        assert set(links) == {"opModVoltVar", "opModFreqWatt"}
        _, curve = await get(c, links["opModVoltVar"])
        assert text(curve, "s:curveType") == "11"
        _, curve = await get(c, links["opModFreqWatt"])
        assert text(curve, "s:curveType") == "0"
        assert text(curve, "s:CurveData/s:xvalue") == "6020"  # Hz, multiplier -2


async def test_repeating_a_cancelled_control_is_a_new_event(server):
    """A new instruction with the window and values of a cancelled one (CSIP-AUS S-ALL-41:
    cancel, then schedule the same again) gets its own mRID, stable across renders."""
    control = limit_control("der-1")
    server.gateway.controls["der-1"] = control
    await server.service.on_control_changed("der-1")
    del server.gateway.controls["der-1"]
    await server.service.on_control_changed("der-1")
    server.gateway.controls["der-1"] = control
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id

    async def listed():
        async with server.client("device-1") as c:
            _, lst = await get(c, f"/edev/{edev}/derp/1/derc")
        return {text(d, "s:mRID"): text(d, "s:EventStatus/s:currentStatus")
                for d in lst.findall("s:DERControl", NS)}

    first = await listed()
    assert sorted(first.values()) == ["1", "2"] and len(first) == 2
    await server.service.on_control_changed("der-1")
    assert await listed() == first


FREQ_DROOP = {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05, "k_uf": 0.05,
              "response_s": 5}


def _with_functions(rid: str, functions: dict):
    from dataclasses import replace

    from gateway.domain import InstructionKind, Source

    return replace(limit_control(rid), function_settings=functions, function_source=Source(
        "ins-fs", "ldc-1", InstructionKind.FUNCTION_SETTINGS, "function_settings"))


async def test_freq_droop_is_carried_inline_by_the_controls(server):
    """freq_droop is a FreqDroopType inside DERControlBase (no DERCurve): every DERControl
    carries it, since it stays in force through any event."""
    server.gateway.controls["der-1"] = _with_functions("der-1", {"freq_droop": FREQ_DROOP})
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, derc = await get(c, f"/edev/{edev}/derp/1/derc")
        droop = derc.find("s:DERControl/s:DERControlBase/s:opModFreqDroop", NS)
        assert [(etree.QName(el).localname, el.text) for el in droop] == [
            ("dBOF", "36"), ("dBUF", "36"), ("kOF", "50"), ("kUF", "50"), ("openLoopTms", "500")]
        _, curves = await get(c, f"/edev/{edev}/derp/1/dc")
        assert text(curves, "s:DERCurve") is None  # nothing to link
    assert server.gateway.acks == []


async def test_freq_droop_is_in_the_default_control(server):
    server.gateway.controls["der-1"] = _with_functions("der-1", {"freq_droop": FREQ_DROOP})
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, dderc = await get(c, f"/edev/{edev}/derp/1/dderc")
    assert text(dderc, "s:DERControlBase/s:opModFreqDroop/s:kOF") == "50"


async def test_unrepresentable_freq_droop_is_acknowledged_cannot_comply(server, caplog):
    """A bad freq_droop is left out (the rest is still published), logged, and acknowledged
    cannot_comply once per change of the function settings."""
    bad = {"volt_var": [[95, 40], [105, -40]], "freq_droop": {**FREQ_DROOP, "k_of": -1}}
    server.gateway.controls["der-1"] = _with_functions("der-1", bad)
    await server.service.on_control_changed("der-1")
    await server.service.on_control_changed("der-1")  # unchanged: no second acknowledgement
    (ack,) = server.gateway.acks
    assert (ack.status, ack.instruction_id, ack.resource_id) == (
        "cannot_comply", "ins-fs", "der-1")
    assert "k_of -1 is outside" in ack.detail
    assert "not representable" in caplog.text
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, derc = await get(c, f"/edev/{edev}/derp/1/derc")
        assert derc.find("s:DERControl/s:DERControlBase/c:opModExpLimW", NS) is not None
        assert derc.find(".//s:opModFreqDroop", NS) is None
        _, dderc = await get(c, f"/edev/{edev}/derp/1/dderc")
        assert dderc.find("s:DERControlBase/s:opModVoltVar", NS) is not None


async def test_ramp_rates_and_curve_references_reach_the_client(server):
    """Over mTLS: setGradW (from the function settings, winning over the default control's)
    and setSoftGradW in the DefaultDERControl, openLoopTms on the volt-watt DERCurve, each
    curve's yRefType; a curve with a y reference its type cannot use is left out, unlinked,
    and acknowledged cannot_comply."""
    from dataclasses import replace

    functions = {"set_grad_w": 2000, "set_soft_grad_w": 50,
                 "volt_var": [[95, 40], [105, -40]],  # no y_ref: %setMaxVar
                 "volt_watt": [[106, 100], [110, 0]], "volt_watt_response_s": 2,
                 "watt_var": [[50, 0], [100, -44]], "watt_var_y_ref": 3,
                 "freq_watt": [[60.036, 100], [62.4, 0]], "freq_watt_y_ref": 2}
    control = _with_functions("der-1", functions)
    server.gateway.controls["der-1"] = replace(control, default_control={"set_grad_w": 27})
    await server.service.on_control_changed("der-1")
    edev = server.service.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        _, dderc = await get(c, f"/edev/{edev}/derp/1/dderc")
        _, curves = await get(c, f"/edev/{edev}/derp/1/dc")
    assert (text(dderc, "s:setGradW"), text(dderc, "s:setSoftGradW")) == ("2000", "50")
    got = {text(dc, "s:curveType"): (text(dc, "s:yRefType"), text(dc, "s:openLoopTms"),
                                     dc.get("href"))
           for dc in curves.findall("s:DERCurve", NS)}
    base = f"/edev/{edev}/derp/1/dc"
    assert got == {"11": ("2", None, f"{base}/1"), "12": ("1", "200", f"{base}/2"),
                   "14": ("3", None, f"{base}/3")}  # no freq-watt (0)
    assert dderc.find("s:DERControlBase/s:opModFreqWatt", NS) is None
    assert dderc.find("s:DERControlBase/s:opModWattVar", NS).get("href") == f"{base}/3"
    (ack,) = server.gateway.acks
    assert (ack.status, ack.instruction_id) == ("cannot_comply", "ins-fs")
    assert ack.detail.startswith("freq_watt: freq_watt_y_ref 2 is not a y reference")
    # the default control's set_grad_w applies when the function settings carry none
    server.gateway.controls["der-1"] = replace(
        control, function_settings={"volt_var": [[95, 40], [105, -40]]},
        default_control={"set_grad_w": 27})
    await server.service.on_control_changed("der-1")
    async with server.client("device-1") as c:
        _, dderc = await get(c, f"/edev/{edev}/derp/1/dderc")
    assert (text(dderc, "s:setGradW"), text(dderc, "s:setSoftGradW")) == ("27", None)


async def test_an_inband_device_mirrors_readings_from_the_start(server):
    """Issue 12, finding 9: an in-band device got 404 on POST /mup under the default settings.
    Its readings are kept until the platform knows the DER, then reach it."""
    from pki.devpki import DevPki

    DevPki(server.pki).issue_2030_5_client("inband-1")
    lfdi = DevPki(server.pki).write_identities()["ieee2030_5/inband-1"]["lfdi"]
    reading = m.MirrorMeterReading(mRID="0B02", ReadingType=m.ReadingType(uom=38),
                                   Reading=m.Reading(value=1234, timePeriod=m.DateTimeInterval(
                                       duration=60, start=1_800_000_000)))
    async with server.client("inband-1") as c:
        own = m.EndDevice(lFDI=lfdi, sFDI=1, changedTime=0)
        async with c.post("/edev", data=serialize(own), headers=CT) as r:
            assert r.status == 201
            edev = r.headers["Location"]
        mup = m.MirrorUsagePoint(mRID="0B01", roleFlags="03", serviceCategoryKind=0, status=1,
                                 deviceLFDI=lfdi, MirrorMeterReading=[reading])
        async with c.post("/mup", data=serialize(mup), headers=CT) as r:
            assert r.status == 201, await r.text()
            where = r.headers["Location"]
        assert server.gateway.readings_ == []  # the platform does not know the DER yet
        server.gateway.connection_points_["cp-9"] = object()
        server.service.registry.inband_owner = "agg-1"
        async with c.put(f"{edev}/cp", data=serialize(m.ConnectionPoint(
                connectionPointId="cp-9")), headers=CT) as r:
            assert r.status == 201
        reading.Reading.timePeriod.start += 60
        async with c.post(where, data=serialize(m.MirrorMeterReadingList(
                MirrorMeterReading=[reading])), headers=CT) as r:
            assert r.status == 201
    assert [(x.resource_id, x.value) for x in server.gateway.readings_] == \
        [(f"2030.5-{lfdi.lower()}", 1234.0)] * 2


async def test_subscriptions_are_capped_per_client(server):
    """Issue 12, finding 4: one device made 1,000 Subscriptions. Past the cap: 400 with
    reasonCode 2 (resource limit reached), nothing stored; deleting one makes room."""
    settings = server.service.settings
    cap = settings.max_subscriptions + settings.max_subscriptions_per_der  # one DER
    async with server.client("device-1") as c:
        await c.get("/edev")
        edev = server.service.registry.by_resource("der-1").id
        sub = m.Subscription(subscribedResource=f"/edev/{edev}/derp/1/derc", encoding=0,
                             level="+S1", limit=1, notificationURI="https://127.0.0.1:9/n")
        for _ in range(cap):
            async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as r:
                assert r.status == 201
        async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as r:
            assert r.status == 400
            assert text(etree.fromstring(await r.read()), "s:reasonCode") == "2"
        assert len(await server.service.state.subscriptions(edev)) == cap
        async with c.delete(f"/edev/{edev}/sub/1") as r:
            assert r.status == 204
        async with c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT) as r:
            assert r.status == 201
