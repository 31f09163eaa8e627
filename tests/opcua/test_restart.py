"""After a restart on the same store, the address space shows what it showed before: each
DER's latest acknowledgement (however old) and its recent readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua

from gateway.domain import (
    Acknowledgement,
    AckStatus,
    DeliveryMark,
    DeliveryState,
    Quantity,
    Reading,
)
from tests.opcua.support import (
    CORE_WARNINGS,
    NAMESPACE_URI,
    VIEWER_B,
    make_client,
    opcua_ready,
    wait_for,
)
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = [pytest.mark.asyncio, *CORE_WARNINGS]

ACK_VARIABLES = ("Status", "ProtocolStatus", "InstructionId", "Detail", "At")


async def read_group(gw, rid: str, group: str, names) -> dict[str, ua.DataValue]:
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER_B,
                                 mode=ua.MessageSecurityMode.SignAndEncrypt) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        return {name: await client.get_node(ua.NodeId(f"der/{rid}.{group}.{name}", ns))
                .read_data_value(raise_on_bad_status=False) for name in names}


async def test_latest_acknowledgement_is_shown_again_after_a_restart(tmp_path):
    config = {"listen": f"opc.tcp://127.0.0.1:{free_port()}", "users": [VIEWER_B],
              "flush_interval_ms": 50}
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=2)  # far outside restore_window_s: acknowledgements have none
    async with gateway_in_process(tmp_path, opcua=config) as gw:
        await seed_platform(gw)
        services = gw.gateway.services
        _, body = await gw.client("ldc-b").post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "d2"},
            "start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
            "limits": {"export_max_w": 2000}, "reason": "restart check"})
        instruction_id = body["id"]
        await services.record_acknowledgement(Acknowledgement(
            "d2", AckStatus.RECEIVED, "modbus", "written", old - timedelta(minutes=1),
            instruction_id=instruction_id))
        await services.record_acknowledgement(Acknowledgement(
            "d2", AckStatus.CANNOT_COMPLY, "modbus", "704 read-back mismatch", old,
            instruction_id=instruction_id, detail="WMaxLimPct=100 (wanted 20)"))
        await services.record_acknowledgement(Acknowledgement(
            "d3", AckStatus.COMPLETED, "modbus", "704 read-back verified", now))
        await services.record_readings([Reading("d3", Quantity.ACTIVE_POWER, 777.0, now,
                                                "modbus")])
    # the same data directory and PKI: the store is the one the first gateway wrote
    async with gateway_in_process(tmp_path, opcua=config) as gw:
        await opcua_ready(gw)
        d2 = await read_group(gw, "d2", "Acknowledgement", ACK_VARIABLES)
        assert {k: v.StatusCode.name for k, v in d2.items()} == dict.fromkeys(
            ACK_VARIABLES, "Good")
        assert d2["Status"].Value.Value == "cannot_comply"
        assert d2["ProtocolStatus"].Value.Value == "704 read-back mismatch"
        assert d2["InstructionId"].Value.Value == instruction_id
        assert d2["Detail"].Value.Value == "WMaxLimPct=100 (wanted 20)"
        assert d2["At"].Value.Value.replace(tzinfo=UTC) == old
        d3 = await read_group(gw, "d3", "Acknowledgement", ("Status", "InstructionId"))
        assert d3["Status"].Value.Value == "completed"
        assert d3["InstructionId"].StatusCode.name == "GoodNoData"  # none was acknowledged
        measured = await read_group(gw, "d3", "Measurements", ("W",))
        assert measured["W"].Value.Value == 777.0


async def test_alarms_are_raised_again_after_a_restart(tmp_path):
    """A DER that is offline, and one whose control is undeliverable, when the gateway
    starts: their conditions are retained at once (ConditionRefresh shows them)."""
    config = {"listen": f"opc.tcp://127.0.0.1:{free_port()}", "users": [VIEWER_B],
              "flush_interval_ms": 50}
    async with gateway_in_process(tmp_path, opcua=config) as gw:
        await seed_platform(gw)
        await gw.gateway.services.set_online_many({"d2": False})
        await gw.gateway.services.mark_delivery([DeliveryMark(
            "d3", DeliveryState.UNDELIVERABLE, reason="no client polls")])
    async with gateway_in_process(tmp_path, opcua=config) as gw:
        await opcua_ready(gw)
        async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER_B,
                                     mode=ua.MessageSecurityMode.SignAndEncrypt) as client:
            events = []

            class Handler:
                def event_notification(self, event):
                    events.append((event.SourceName, event.ConditionName))

            sub = await client.create_subscription(50, Handler())
            await sub.subscribe_events(client.nodes.server, ua.ObjectIds.OffNormalAlarmType)
            await client.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
            wanted = {("d2", "CommunicationLost"), ("d3", "ControlUndeliverable")}

            async def both():
                return wanted <= set(events)
            await wait_for(both)
