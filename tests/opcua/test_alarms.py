"""SCADA gets alarms, not Bad values: a simulated SunSpec inverter goes silent, the gateway
marks its DER offline, and OPC UA clients of its LDC receive a CommunicationLost alarm
(Part 9 Alarms & Conditions), which a controller acknowledges and a viewer cannot; another
LDC's operator never hears of it. Healthy DERs read Good or the documented Uncertain/NoData
statuses, never Bad."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.common.events import Event
from asyncua.ua.uaerrors import UaStatusCodeError

from gateway.domain import Acknowledgement, AckStatus, DeliveryMark, DeliveryState
from simulators.sunspec.fleet import FleetConfig, running_fleet
from tests.opcua.support import (
    CONTROLLER,
    CORE_WARNINGS,
    NAMESPACE_URI,
    VIEWER,
    VIEWER_B,
    connect_encrypted,
    wait_for,
)
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import modbus_der, seed_platform

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]

MODBUS = {"poll_interval_s": 0.2, "telemetry_interval_s": 0.3, "timeout_s": 0.5,
          "offline_after": 2, "flush_interval_s": 0.1}
# The statuses a healthy DER's variables may carry (docs/opcua.md, "Value status").
HEALTHY = {"Good", "GoodNoData", "UncertainInitialValue"}
ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
CONDITION_TYPE = ua.NodeId(ua.ObjectIds.ConditionType)


class Alarms:
    """An event handler that keeps every alarm event it receives."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def event_notification(self, event: Event) -> None:
        self.events.append(event)

    def of(self, rid: str, **fields) -> list[Event]:
        return [e for e in self.events if e.SourceName == rid
                and all(getattr(e, k, None) == v for k, v in fields.items())]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory):
    """d1 and d2 (LDC A) and d3 (LDC B) are simulated inverters on their own ports."""
    tmp = tmp_path_factory.mktemp("alarms")
    opcua = {"listen": f"opc.tcp://127.0.0.1:{free_port()}", "flush_interval_ms": 50,
             "users": [CONTROLLER, VIEWER, VIEWER_B]}
    async with AsyncExitStack() as stack:
        fleet = await stack.enter_async_context(running_fleet(FleetConfig(
            count=3, first_port=0, units_per_port=1, tick_s=0.2)))
        gw = await stack.enter_async_context(gateway_in_process(tmp, opcua=opcua,
                                                                modbus=MODBUS))
        ders = []
        for i, (rid, cp) in enumerate((("d1", "cp-a1"), ("d2", "cp-a1"), ("d3", "cp-b1"))):
            host, port, unit = fleet.address(i)
            der = modbus_der(rid, cp, 10_000, unit=unit)
            der["binding"]["address"].update(host=host, port=port)
            ders.append(der)
        clients = await seed_platform(gw, ders)

        async def all_online():
            bodies = [(await clients["admin"].get(f"/v1/resources/{rid}"))[1]
                      for rid in ("d1", "d2", "d3")]
            return all(body.get("online") is True for body in bodies)
        await wait_for(all_online, 60)  # the inverters are polled; a busy machine is slow
        yield gw, fleet, clients


async def subscribe_alarms(client) -> tuple[Alarms, object]:
    handler = Alarms()
    sub = await client.create_subscription(50, handler)
    await sub.subscribe_events(client.nodes.server, ua.ObjectIds.OffNormalAlarmType)
    return handler, sub


async def statuses(client, rid: str) -> dict[str, str]:
    """Every variable of a DER's three groups, with the name of its status code."""
    ns = await client.get_namespace_index(NAMESPACE_URI)
    out = {}
    for group in ("Measurements", "Control", "Acknowledgement"):
        node = client.get_node(ua.NodeId(f"der/{rid}.{group}", ns))
        for var in await node.get_children():
            value = await var.read_data_value(raise_on_bad_status=False)
            out[f"{group}.{(await var.read_browse_name()).Name}"] = value.StatusCode.name
    return out


async def acknowledge(client, condition_id: ua.NodeId, event_id: bytes, comment: str
                      ) -> ua.CallMethodResult:
    request = ua.CallMethodRequest()
    request.ObjectId, request.MethodId = condition_id, ACKNOWLEDGE
    request.InputArguments = [ua.Variant(event_id, ua.VariantType.ByteString),
                              ua.Variant(ua.LocalizedText(comment), ua.VariantType.LocalizedText)]
    [result] = await client.uaclient.call([request])
    return result


async def test_healthy_ders_read_good_or_the_documented_uncertain_status(rig):
    gw, _, _ = rig
    async with await connect_encrypted(gw, VIEWER) as client:
        async def measured():
            found = await statuses(client, "d2")
            return found if found["Measurements.W"] == "Good" else None
        found = await wait_for(measured)
    assert set(found.values()) <= HEALTHY, found
    assert found["Measurements.SoC"] == "UncertainInitialValue"  # a PV inverter has none yet
    assert found["Control.SetpointW"] == "GoodNoData"  # nothing dispatched: no setpoint
    assert found["Acknowledgement.Status"] == "UncertainInitialValue"  # nothing sent yet


async def test_a_silent_der_raises_an_alarm_a_controller_acknowledges(rig):
    gw, fleet, _ = rig
    async with AsyncExitStack() as stack:
        controller = await stack.enter_async_context(await connect_encrypted(gw, CONTROLLER))
        viewer = await stack.enter_async_context(await connect_encrypted(gw, VIEWER))
        other_ldc = await stack.enter_async_context(await connect_encrypted(gw, VIEWER_B))
        heard, _ = await subscribe_alarms(controller)
        seen, viewer_sub = await subscribe_alarms(viewer)
        unseen, _ = await subscribe_alarms(other_ldc)
        ns = await controller.get_namespace_index(NAMESPACE_URI)

        port_server = fleet.servers[0]  # d1's inverter stops answering
        port_server.port = port_server.bound_port  # so that it comes back on the same port
        await port_server.stop()

        async def raised():
            return heard.of("d1", ConditionName="CommunicationLost", Retain=True)
        [alarm] = await wait_for(raised, 20)
        assert getattr(alarm, "ActiveState/Id") is True
        assert getattr(alarm, "AckedState/Id") is False
        assert alarm.NodeId == ua.NodeId("der/d1.Alarms.CommunicationLost", ns)
        assert alarm.SourceNode == ua.NodeId("der/d1", ns) and alarm.Severity == 700
        assert await wait_for(lambda: _now(seen.of("d1", ConditionName="CommunicationLost")))

        # its measurements are now the last usable values, Uncertain (never Bad)
        found = await statuses(controller, "d1")
        assert found["Measurements.W"] == "UncertainNoCommunicationLastUsableValue"
        assert found["Measurements.Online"] == "Good"

        # a viewer may not acknowledge; a stale EventId is refused; the latest one works
        refused = await acknowledge(viewer, alarm.NodeId, alarm.EventId, "seen")
        assert refused.StatusCode.name == "BadUserAccessDenied"
        wrong = await acknowledge(controller, alarm.NodeId, b"not-the-event", "seen")
        assert wrong.StatusCode.name == "BadEventIdUnknown"
        done = await acknowledge(controller, alarm.NodeId, alarm.EventId, "crew dispatched")
        assert done.StatusCode.name == "Good"
        again = await acknowledge(controller, alarm.NodeId, alarm.EventId, "twice")
        assert again.StatusCode.name == "BadEventIdUnknown"  # no longer the latest event

        async def acknowledged():
            return heard.of("d1", ConditionName="CommunicationLost", **{"AckedState/Id": True})
        [acked] = await wait_for(acknowledged)
        assert acked.Retain is True and getattr(acked, "ActiveState/Id") is True
        assert acked.ClientUserId == CONTROLLER["name"]
        assert acked.Comment == ua.LocalizedText("crew dispatched")

        # ConditionRefresh replays the retained conditions, to the caller's subscription only
        # (d1's control may have become undeliverable meanwhile: the Modbus adapter says so)
        before = len(seen.events)
        await viewer.nodes.server.call_method(
            ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
            ua.Variant(viewer_sub.subscription_id, ua.VariantType.UInt32))

        async def replayed():
            return [e for e in seen.events[before:] if e.SourceName == "d1"
                    and e.ConditionName == "CommunicationLost"]
        [again] = await wait_for(replayed)
        assert getattr(again, "AckedState/Id") is True and again.Retain is True
        with pytest.raises(UaStatusCodeError, match="BadSubscriptionIdInvalid"):
            await other_ldc.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(viewer_sub.subscription_id, ua.VariantType.UInt32))

        # back: the condition goes inactive, and (acknowledged) is no longer retained
        await port_server.start()

        async def cleared():
            return heard.of("d1", ConditionName="CommunicationLost",
                            **{"ActiveState/Id": False})
        [clear] = await wait_for(cleared, 20)
        assert clear.Retain is False
        await asyncio.sleep(0.3)
        assert unseen.of("d1") == []  # LDC B's operator heard nothing of LDC A's DER
        assert heard.of("d2") == []  # the healthy DER raised nothing


async def test_a_refused_control_raises_control_refused_until_one_is_accepted(rig):
    """What a DER adapter records when a DER refuses (here directly through the core's
    acknowledgement path, as the Modbus adapter does on a read-back mismatch)."""
    gw, _, _ = rig
    services = gw.gateway.services
    async with await connect_encrypted(gw, CONTROLLER) as controller:
        heard, _ = await subscribe_alarms(controller)
        now = datetime.now(UTC)
        await services.record_acknowledgement(Acknowledgement(
            "d2", AckStatus.CANNOT_COMPLY, "modbus", "704 read-back mismatch", now,
            detail="WMaxLimPct=100 (wanted 20)"))

        async def raised():
            return heard.of("d2", ConditionName="ControlRefused", **{"ActiveState/Id": True})
        [alarm] = await wait_for(raised)
        assert "cannot_comply" in alarm.Message.Text and "WMaxLimPct" in alarm.Message.Text
        assert alarm.Severity == 500
        await services.record_acknowledgement(Acknowledgement(
            "d2", AckStatus.COMPLETED, "modbus", "704 read-back verified",
            now + timedelta(seconds=1)))

        async def cleared():
            return heard.of("d2", ConditionName="ControlRefused", **{"ActiveState/Id": False})
        [clear] = await wait_for(cleared)
        assert clear.Retain is True  # inactive, but nobody acknowledged it yet
        done = await acknowledge(controller, clear.NodeId, clear.EventId, "seen")
        assert done.StatusCode.name == "Good"
        [gone] = await wait_for(lambda: _now(heard.of("d2", ConditionName="ControlRefused",
                                                      **{"AckedState/Id": True})))
        assert gone.Retain is False


async def test_an_undeliverable_control_raises_control_undeliverable(rig):
    """The core's per-DER delivery state (an adapter's `mark_delivery`) reaches SCADA."""
    gw, _, _ = rig
    services = gw.gateway.services
    async with await connect_encrypted(gw, CONTROLLER) as controller:
        heard, _ = await subscribe_alarms(controller)
        await services.mark_delivery([DeliveryMark("d2", DeliveryState.UNDELIVERABLE,
                                                   reason="device unreachable")])

        async def raised():
            return heard.of("d2", ConditionName="ControlUndeliverable",
                            **{"ActiveState/Id": True})
        [alarm] = await wait_for(raised)
        assert "device unreachable" in alarm.Message.Text and alarm.Severity == 800
        await services.mark_delivery([DeliveryMark("d2", DeliveryState.DELIVERED)])

        async def cleared():
            return heard.of("d2", ConditionName="ControlUndeliverable",
                            **{"ActiveState/Id": False})
        await wait_for(cleared)


async def _now(value):
    return value
