"""Open sessions follow their operator's area while the platform changes it: real asyncua
clients over Basic256Sha256 + SignAndEncrypt, changes made through the platform API.

A DER registered in the area becomes readable in the session already open; a DER moved to
another LDC or deleted answers Bad_NodeIdUnknown at once, and its monitored item delivers one
Bad_NodeIdUnknown value and then nothing; a participant registered while a session acting for
it is open gives that session its area, with no DER changing; a removed user's session is
refused and closed.
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import ua

from tests.opcua.support import (
    ADMIN_VIEWER,
    CORE_WARNINGS,
    LATE_VIEWER,
    NAMESPACE_URI,
    VIEWER,
    VIEWER_B,
    WINDOW,
    Collector,
    connect_encrypted,
    wait_for,
)
from tests.support.seed import modbus_der

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]


async def read(client, ns: int, ident: str) -> ua.DataValue:
    rv = ua.ReadValueId()
    rv.NodeId, rv.AttributeId = ua.NodeId(ident, ns), ua.AttributeIds.Value
    params = ua.ReadParameters()
    params.NodesToRead.append(rv)
    [dv] = await client.uaclient.read(params)
    return dv


async def read_status(client, ns: int, ident: str) -> str:
    return (await read(client, ns, ident)).StatusCode.name


async def wait_value(client, ns: int, ident: str, expected: float) -> None:
    """Until the node exists and holds its first rendered value (a new node is Good/null)."""
    async def rendered():
        dv = await read(client, ns, ident)
        return dv.StatusCode.is_good() and dv.Value is not None and dv.Value.Value == expected
    await wait_for(rendered)


async def browse_status(client, ns: int, ident: str) -> str:
    desc = ua.BrowseDescription()
    desc.NodeId, desc.BrowseDirection = ua.NodeId(ident, ns), ua.BrowseDirection.Forward
    params = ua.BrowseParameters()
    params.NodesToBrowse.append(desc)
    [result] = await client.uaclient.browse(params)
    return result.StatusCode.name


class StatusCollector(Collector):
    """Keeps each notification's whole DataValue (value and status)."""

    def datachange_notification(self, node, val, data) -> None:
        self.values.put_nowait(data.monitored_item.Value)


async def next_value(handler: StatusCollector, within: float = 5.0) -> ua.DataValue:
    return await asyncio.wait_for(handler.values.get(), within)


async def limit(client, rid: str, export_w: float) -> str:
    status, body = await client.post("/v1/instructions", {
        "kind": "limit", "target": {"kind": "resource", "id": rid},
        **WINDOW,
        "limits": {"export_max_w": export_w}, "reason": "area change test"})
    assert status == 201, body
    return body["id"]


async def test_a_der_registered_later_is_readable_in_the_open_session(served):
    gw, clients = served
    async with await connect_encrypted(gw, VIEWER) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        ident = "der/n1.Control.ExportLimitW"
        assert await read_status(client, ns, ident) == "BadNodeIdUnknown"
        await clients["ldc-a"].ok("POST", "/v1/resources",
                                  [modbus_der("n1", "cp-a1", 4_000, unit=31)])
        await wait_value(client, ns, ident, 4_000.0)
        assert await browse_status(client, ns, "der/n1") == "Good"
        handler = StatusCollector()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change(client.get_node(ua.NodeId(ident, ns)))
        assert (await next_value(handler)).Value.Value == 4_000.0
        await sub.delete()


async def test_a_der_moved_to_another_ldc_disappears_from_the_open_session(served):
    gw, clients = served
    await clients["ldc-a"].ok("POST", "/v1/resources",
                              [modbus_der("m1", "cp-a1", 6_000, unit=32)])
    async with (await connect_encrypted(gw, VIEWER) as a, await connect_encrypted(gw, VIEWER_B) as b,
                await connect_encrypted(gw, ADMIN_VIEWER) as admin):
        ns = await a.get_namespace_index(NAMESPACE_URI)
        ident = "der/m1.Control.ExportLimitW"
        await wait_value(a, ns, ident, 6_000.0)
        seen_by = {}
        subs = []
        for name, client in (("a", a), ("admin", admin)):
            seen_by[name] = StatusCollector()
            sub = await client.create_subscription(50, seen_by[name])
            await sub.subscribe_data_change(client.get_node(ua.NodeId(ident, ns)))
            assert (await next_value(seen_by[name])).Value.Value == 6_000.0
            subs.append(sub)

        der = modbus_der("m1", "cp-b1", 6_000, unit=32)  # ldc-b's connection point
        status, body = await clients["admin"].request("PUT", "/v1/resources/m1", der)
        assert status == 200, body
        gone = await next_value(seen_by["a"])  # the item is told, once
        assert gone.StatusCode.name == "BadNodeIdUnknown"
        assert await read_status(a, ns, ident) == "BadNodeIdUnknown"
        assert await browse_status(a, ns, "der/m1") == "BadNodeIdUnknown"
        assert await read_status(b, ns, ident) == "Good"
        iid = await limit(clients["ldc-b"], "m1", 2_500)
        # the admin still sees the DER: its item goes on, following ldc-b's limit
        assert (await next_value(seen_by["admin"])).Value.Value == 2_500.0
        await asyncio.sleep(0.5)
        assert seen_by["a"].values.empty()  # nothing about m1 reaches ldc-a any more
        assert (await clients["ldc-b"].post(f"/v1/instructions/{iid}/cancel"))[0] == 200
        for sub in subs:
            await sub.delete()


async def test_a_deleted_der_stops_delivering_to_the_open_session(served):
    gw, clients = served
    await clients["ldc-a"].ok("POST", "/v1/resources",
                              [modbus_der("x1", "cp-a1", 7_000, unit=33)])
    async with await connect_encrypted(gw, VIEWER) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        ident = "der/x1.Control.ExportLimitW"
        await wait_value(client, ns, ident, 7_000.0)
        handler = StatusCollector()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change(client.get_node(ua.NodeId(ident, ns)))
        assert (await next_value(handler)).Value.Value == 7_000.0
        status, _ = await clients["ldc-a"].request("DELETE", "/v1/resources/x1")
        assert status == 204
        gone = await next_value(handler)
        assert gone.StatusCode.name == "BadNodeIdUnknown"
        assert await read_status(client, ns, ident) == "BadNodeIdUnknown"
        await asyncio.sleep(0.3)
        assert handler.values.empty()
        await sub.delete()
        # only x1's nodes went: the control methods all DERs share are still there
        method = client.get_node(ua.NodeId("type/DerType/Connect", ns))
        assert (await method.read_browse_name()).Name == "Connect"
        assert await browse_status(client, ns, "der/d1") == "Good"


async def test_a_users_new_participant_and_removal_reach_its_open_session(served):
    gw, clients = served
    admin = clients["admin"]
    user = {"name": "mover", "password": "mover-pass-1", "role": "viewer", "ldc_id": "ldc-a"}
    body = {k: user[k] for k in ("password", "role", "ldc_id")}
    assert (await admin.request("PUT", "/v1/adapters/opcua/users/mover", body))[0] == 201
    async with await connect_encrypted(gw, user) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        d1, d2 = "der/d1.Control.ExportLimitW", "der/d2.Control.ExportLimitW"
        handler = StatusCollector()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change(client.get_node(ua.NodeId(d1, ns)))
        assert (await next_value(handler)).StatusCode.is_good()
        # the user now acts for ldc-b: d1 leaves its area, d2 enters it
        moved = {**body, "ldc_id": "ldc-b"}
        assert (await admin.request("PUT", "/v1/adapters/opcua/users/mover", moved))[0] == 200
        assert await read_status(client, ns, d1) == "BadNodeIdUnknown"
        assert await read_status(client, ns, d2) == "Good"
        assert (await next_value(handler)).StatusCode.name == "BadNodeIdUnknown"
        # removed: the session is refused from the next request on
        assert (await admin.request("DELETE", "/v1/adapters/opcua/users/mover"))[0] == 204
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            await client.get_node(ua.NodeId(d2, ns)).read_value()


async def test_a_participant_registered_later_gives_the_open_session_its_area(served):
    """Only a participant.changed event: no DER is registered, moved or controlled."""
    gw, clients = served
    async with await connect_encrypted(gw, LATE_VIEWER) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        d2 = "der/d2.Control.ExportLimitW"
        # acting for a participant the platform does not know yet: nothing but shared nodes
        assert await read_status(client, ns, d2) == "BadNodeIdUnknown"
        assert await browse_status(client, ns, "ldc/ldc-b") == "BadNodeIdUnknown"
        await clients["admin"].ok("POST", "/v1/participants", [
            {"id": "scada-late", "role": "scada", "ldc_id": "ldc-b"}])

        async def shown() -> bool:
            return await read_status(client, ns, d2) == "Good"
        await wait_for(shown, within=5.0)
        assert await browse_status(client, ns, "ldc/ldc-b") == "Good"
        assert await read_status(client, ns, "der/d1.Control.ExportLimitW") == "BadNodeIdUnknown"
        handler = StatusCollector()
        sub = await client.create_subscription(50, handler)
        await sub.subscribe_data_change(client.get_node(ua.NodeId(d2, ns)))
        assert (await next_value(handler)).StatusCode.is_good()
        await sub.delete()
