"""The OPC UA server end to end: the real gateway, real sockets, signed and encrypted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua

from gateway.domain import Acknowledgement, AckStatus, Quantity, Reading
from tests.opcua.support import (
    CONTROLLER,
    CORE_WARNINGS,
    NAMESPACE_URI,
    VIEWER,
    VIEWER_B,
    Collector,
    make_client,
    wait_for,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]


async def call_raw(client, object_id, method_id, args) -> ua.CallMethodResult:
    """One Call, its result as the server sent it (per-argument results included)."""
    request = ua.CallMethodRequest()
    request.ObjectId, request.MethodId = object_id, method_id
    request.InputArguments = [a if isinstance(a, ua.Variant) else ua.Variant(a) for a in args]
    [result] = await client.uaclient.call([request])
    return result


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def der_node(client, rid: str, ldc: str = "ldc-a", cp: str = "cp-a1"):
    ns = await client.get_namespace_index(NAMESPACE_URI)
    return await client.nodes.objects.get_child(
        [f"{ns}:DerFleet", f"{ns}:{ldc}", f"{ns}:{cp}", f"{ns}:{rid}"]), ns


async def test_browse_and_read_the_der_model(served):
    gw, _ = served
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER) as client:
        der, ns = await der_node(client, "d1")
        names = {(await c.read_browse_name()).Name for c in await der.get_children()}
        assert {"Measurements", "Control", "Acknowledgement", "RatedExportW",
                "SetOperatingLimit", "Dispatch", "Connect", "Disconnect"} <= names
        rated = await der.get_child(f"{ns}:RatedExportW")
        assert await rated.read_value() == 10_000.0
        export = await der.get_child([f"{ns}:Control", f"{ns}:ExportLimitW"])

        async def nameplate_cap():  # the DERs were registered a moment ago
            value = await export.read_data_value(raise_on_bad_status=False)
            return value.StatusCode.is_good() and value.Value.Value == 10_000.0
        await wait_for(nameplate_cap)
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER_B) as client:
        td = await client.nodes.objects.get_child(
            [f"{ns}:DerFleet", f"{ns}:ldc-b", f"{ns}:TdNodes", f"{ns}:N-B", f"{ns}:Aggregates",
             f"{ns}:DerCount"])
        assert await td.read_value() == 2
        cp = await client.nodes.objects.get_child(
            [f"{ns}:DerFleet", f"{ns}:ldc-b", f"{ns}:cp-b1", f"{ns}:TdNode"])
        assert await cp.read_value() == "N-B"


async def test_subscription_follows_a_platform_limit(served):
    gw, clients = served
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER) as client:
        der, ns = await der_node(client, "d1")
        export = await der.get_child([f"{ns}:Control", f"{ns}:ExportLimitW"])
        handler = Collector()
        sub = await client.create_subscription(50, handler)
        await sub.deadband_monitor(export, 1.0, ua.DeadbandType.Absolute)
        assert await asyncio.wait_for(handler.values.get(), 5) == 10_000.0
        now = datetime.now(UTC)
        status, body = await clients["ldc-a"].post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "d1"},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": 4000}, "reason": "feeder F-A1 thermal"})
        assert status == 201, body
        assert await asyncio.wait_for(handler.values.get(), 5) == 4000.0
        reason = await der.get_child([f"{ns}:Control", f"{ns}:Reason"])
        assert "feeder F-A1 thermal" in await reason.read_value()
        sources = await (await der.get_child([f"{ns}:Control", f"{ns}:Sources"])).read_value()
        assert any(s.startswith(body["id"]) and "|ldc-a|limit|" in s for s in sources)
        status, _ = await clients["ldc-a"].post(f"/v1/instructions/{body['id']}/cancel")
        assert status == 200
        assert await asyncio.wait_for(handler.values.get(), 5) == 10_000.0
        await sub.delete()


async def test_controller_limit_appears_in_the_platform_api(served):
    gw, clients = served
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=CONTROLLER) as client:
        der, ns = await der_node(client, "d1")
        instruction_id = await der.call_method(
            f"{ns}:SetOperatingLimit", ua.Variant(2500.0, ua.VariantType.Double),
            ua.Variant(-1.0, ua.VariantType.Double), ua.Variant(-1.0, ua.VariantType.Double),
            ua.Variant(-1.0, ua.VariantType.Double), ua.Variant(600, ua.VariantType.UInt32),
            "SCADA: voltage rise at F-A1")

        async def platform_export():
            status, control = await clients["ldc-a"].get("/v1/resources/d1/effective-control")
            assert status == 200, control
            return control
        control = await wait_for(platform_export)
        text = str(control)
        assert instruction_id in text and "2500" in text
        status, instruction = await clients["ldc-a"].get(f"/v1/instructions/{instruction_id}")
        assert status == 200 and instruction["issuer_id"] == "ldc-a", instruction
        export = await der.get_child([f"{ns}:Control", f"{ns}:ExportLimitW"])

        async def shows_limit():
            return await export.read_value() == 2500.0
        await wait_for(shows_limit)
        cleared = await der.call_method(f"{ns}:ClearOperatingLimit", "")
        assert cleared == 1

        async def back_to_nameplate():
            return await export.read_value() == 10_000.0
        await wait_for(back_to_nameplate)


async def test_bad_arguments_get_a_status_and_store_nothing(served):
    gw, clients = served
    _, before = await clients["admin"].get("/v1/instructions?all=true&limit=1000")
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=CONTROLLER) as client:
        der, ns = await der_node(client, "d1")
        with pytest.raises(ua.uaerrors.BadInvalidArgument):
            await der.call_method(f"{ns}:SetOperatingLimit", -1.0, -1.0, -1.0, -1.0,
                                  ua.Variant(0, ua.VariantType.UInt32), "nothing capped")
        with pytest.raises(ua.uaerrors.BadInvalidArgument):
            await der.call_method(f"{ns}:Dispatch", "not a number",
                                  ua.Variant(0, ua.VariantType.UInt32), "x")
        with pytest.raises(ua.uaerrors.BadArgumentsMissing):
            await der.call_method(f"{ns}:Dispatch", 100.0)
        # each result names the argument at fault (OPC UA Part 4, 5.11.2.2)
        results = await call_raw(client, der.nodeid, ua.NodeId("type/DerType/Dispatch", ns),
                                 ["not a number", ua.Variant(0, ua.VariantType.UInt32), "x"])
        assert results.StatusCode.name == "BadInvalidArgument"
        assert [r.name for r in results.InputArgumentResults] == [
            "BadTypeMismatch", "Good", "Good"]
        assert "SetpointW" in results.InputArgumentDiagnosticInfos[0].AdditionalInfo
        results = await call_raw(client, der.nodeid,
                                 ua.NodeId("type/DerType/SetOperatingLimit", ns),
                                 [-1.0, -1.0, -1.0, -1.0, ua.Variant(0, ua.VariantType.UInt32),
                                  "nothing capped"])
        assert [r.name for r in results.InputArgumentResults] == [
            "BadInvalidArgument"] * 4 + ["Good", "Good"]
        other = client.get_node(ua.NodeId("der/d2", ns))
        with pytest.raises(ua.uaerrors.BadNodeIdUnknown):  # outside ldc-a's area: not there
            await other.call_method(ua.NodeId("type/DerType/Disconnect", ns),
                                    ua.Variant(0, ua.VariantType.UInt32), "")
        # still serving
        assert await (await der.get_child(f"{ns}:RatedExportW")).read_value() == 10_000.0
    _, after = await clients["admin"].get("/v1/instructions?all=true&limit=1000")
    assert len(after) == len(before) if isinstance(after, list) else after == before


async def test_viewer_may_not_call_methods(served):
    gw, _ = served
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER) as client:
        der, ns = await der_node(client, "d1")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await der.call_method(f"{ns}:Disconnect", ua.Variant(0, ua.VariantType.UInt32), "x")
        export = await der.get_child([f"{ns}:Control", f"{ns}:ExportLimitW"])
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await export.write_value(1.0)


async def test_readings_and_acknowledgements_follow_the_bus(served):
    gw, _ = served
    services = gw.gateway.services  # the gateway's own services, as a DER adapter uses them
    now = datetime.now(UTC).replace(microsecond=0)
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER_B) as client:
        der, ns = await der_node(client, "d2", "ldc-b", "cp-b1")
        total = await client.nodes.objects.get_child(
            [f"{ns}:DerFleet", f"{ns}:ldc-b", f"{ns}:TdNodes", f"{ns}:N-B", f"{ns}:Aggregates",
             f"{ns}:ActivePowerW"])
        handler = Collector()
        sub = await client.create_subscription(50, handler)
        await sub.deadband_monitor(total, 10.0, ua.DeadbandType.Absolute)
        assert await asyncio.wait_for(handler.values.get(), 5) == 0.0
        await services.record_readings([
            Reading("d2", Quantity.ACTIVE_POWER, 1500.0, now, "modbus"),
            Reading("d3", Quantity.ACTIVE_POWER, 500.0, now, "modbus"),
            Reading("d2", Quantity.CONNECTED, 1.0, now, "modbus")])
        assert await asyncio.wait_for(handler.values.get(), 5) == 2000.0
        await services.record_readings(  # inside the 10 W deadband: no notification
            [Reading("d2", Quantity.ACTIVE_POWER, 1504.0, now, "modbus")])
        await services.record_readings(
            [Reading("d2", Quantity.ACTIVE_POWER, 1700.0, now, "modbus")])
        assert await asyncio.wait_for(handler.values.get(), 5) == 2200.0
        measured = await der.get_child([f"{ns}:Measurements", f"{ns}:W"])
        assert await measured.read_value() == 1700.0
        data = await measured.read_data_value()
        assert data.SourceTimestamp.replace(tzinfo=UTC) == now
        connected = await der.get_child([f"{ns}:Measurements", f"{ns}:Connected"])
        assert await connected.read_value() is True
        await services.record_acknowledgement(Acknowledgement(
            "d2", AckStatus.CANNOT_COMPLY, "modbus", "exception 4", now,
            detail="device busy"))
        status = await der.get_child([f"{ns}:Acknowledgement", f"{ns}:Status"])

        async def acknowledged():
            value = await status.read_data_value(raise_on_bad_status=False)
            return value.StatusCode.is_good() and value.Value.Value == "cannot_comply"
        await wait_for(acknowledged)
        detail = await der.get_child([f"{ns}:Acknowledgement", f"{ns}:ProtocolStatus"])
        assert await detail.read_value() == "exception 4"
        await sub.delete()


async def test_dispatch_and_disconnect_become_ldc_instructions(served):
    gw, clients = served
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=CONTROLLER) as client:
        der, ns = await der_node(client, "d1")
        dispatch_id = await der.call_method(
            f"{ns}:Dispatch", ua.Variant(4200.0, ua.VariantType.Double),
            ua.Variant(300, ua.VariantType.UInt32), "SCADA: voltage support")
        disconnect_id = await der.call_method(
            f"{ns}:Disconnect", ua.Variant(300, ua.VariantType.UInt32), "SCADA: switching")
        for iid, kind in ((dispatch_id, "dispatch"), (disconnect_id, "connection")):
            status, instruction = await clients["ldc-a"].get(f"/v1/instructions/{iid}")
            assert status == 200 and instruction["kind"] == kind, instruction
            assert instruction["issuer_id"] == "ldc-a"
        setpoint = await der.get_child([f"{ns}:Control", f"{ns}:SetpointW"])
        requested = await der.get_child([f"{ns}:Control", f"{ns}:RequestedSetpointW"])
        limited_by = await der.get_child([f"{ns}:Control", f"{ns}:LimitedBy"])
        connect = await der.get_child([f"{ns}:Control", f"{ns}:Connect"])

        async def rendered():  # disconnected: the 4200 W dispatch is clipped to 0 W
            sp = await setpoint.read_data_value(raise_on_bad_status=False)
            return (sp.StatusCode.is_good() and sp.Value.Value == 0.0
                    and await requested.read_value() == 4200.0
                    and await limited_by.read_value() == [disconnect_id]
                    and await connect.read_value() is False)
        await wait_for(rendered)
        _, control = await clients["ldc-a"].get("/v1/resources/d1/effective-control")
        assert dispatch_id in str(control) and disconnect_id in str(control)
        for iid in (dispatch_id, disconnect_id):
            assert (await clients["ldc-a"].post(f"/v1/instructions/{iid}/cancel"))[0] == 200

        async def restored():
            sp = await setpoint.read_data_value(raise_on_bad_status=False)
            return (sp.StatusCode.name == "GoodNoData" and sp.Value.Value is None  # no setpoint
                    and await connect.read_value() is True)
        await wait_for(restored)
