"""Each operator sees its LDC's area only: real asyncua clients over Basic256Sha256 +
SignAndEncrypt, logged in as different users of the same server.

The area is the platform's: an LDC sees its own connection points and DERs and those of every
LDC embedded below it; a user acting for the admin sees the whole fleet. A node outside the
area answers Bad_NodeIdUnknown, like a node that does not exist, and the server goes on.
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import ua

from tests.opcua.support import (
    ADMIN_VIEWER,
    AGGREGATOR_VIEWER,
    CONTROLLER,
    CORE_WARNINGS,
    HOST_VIEWER,
    NAMESPACE_URI,
    VIEWER,
    VIEWER_B,
    WINDOW,
    Collector,
    connect_encrypted,
    wait_for,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]


async def fleet_tree(client) -> dict[str, set[str]]:
    """LDC folders under DerFleet and the DERs browsable below each of them."""
    ns = await client.get_namespace_index(NAMESPACE_URI)
    fleet = await client.nodes.objects.get_child(f"{ns}:DerFleet")
    tree: dict[str, set[str]] = {}
    for ldc in await fleet.get_children(refs=ua.ObjectIds.Organizes):
        ders: set[str] = set()
        for cp in await ldc.get_children(refs=ua.ObjectIds.Organizes):
            if (await cp.read_browse_name()).Name == "TdNodes":
                continue
            ders |= {(await d.read_browse_name()).Name
                     for d in await cp.get_children(refs=ua.ObjectIds.Organizes)}
        tree[(await ldc.read_browse_name()).Name] = ders
    return tree


async def browse_statuses(client, node_ids) -> list[str]:
    params = ua.BrowseParameters()
    for nid in node_ids:
        desc = ua.BrowseDescription()
        desc.NodeId, desc.BrowseDirection = nid, ua.BrowseDirection.Forward
        params.NodesToBrowse.append(desc)
    return [r.StatusCode.name for r in await client.uaclient.browse(params)]


def var(ns: int, ident: str):
    return ua.NodeId(ident, ns)


async def read_statuses(client, node_ids) -> list[str]:
    params = ua.ReadParameters()
    for nid in node_ids:
        rv = ua.ReadValueId()
        rv.NodeId, rv.AttributeId = nid, ua.AttributeIds.Value
        params.NodesToRead.append(rv)
    return [dv.StatusCode.name for dv in await client.uaclient.read(params)]


async def test_two_ldc_operators_see_only_their_own_areas(served):
    gw, _ = served
    async with await connect_encrypted(gw, VIEWER) as a, await connect_encrypted(gw, VIEWER_B) as b:
        tree_a, tree_b = await fleet_tree(a), await fleet_tree(b)
        assert tree_a == {"ldc-a": {"d1"}}
        assert tree_b == {"ldc-b": {"d2", "d3"}}
        ns = await a.get_namespace_index(NAMESPACE_URI)
        d1 = var(ns, "der/d1.Control.ExportLimitW")
        d2 = var(ns, "der/d2.Control.ExportLimitW")
        agg_b = var(ns, "cp/cp-b1.Aggregates.DerCount")
        td_b = var(ns, "ldc/ldc-b/TdNodes/N-B.Aggregates.DerCount")
        # one Read request, per-item answers: hidden nodes do not exist for this operator
        assert await read_statuses(a, [d1, d2, agg_b, td_b]) == [
            "Good", "BadNodeIdUnknown", "BadNodeIdUnknown", "BadNodeIdUnknown"]
        assert await read_statuses(b, [d1, d2, agg_b, td_b]) == [
            "BadNodeIdUnknown", "Good", "Good", "Good"]
        # the same answer as for a DER that does not exist at all
        assert await read_statuses(a, [var(ns, "der/no-such-der.Control.ExportLimitW")]) == [
            "BadNodeIdUnknown"]
        assert await browse_statuses(a, [var(ns, "der/d1"), var(ns, "der/d2"),
                                         var(ns, "der/no-such-der")]) == [
            "Good", "BadNodeIdUnknown", "BadNodeIdUnknown"]
        with pytest.raises(ua.uaerrors.BadNoMatch):  # the browse path leads nowhere for ldc-a
            await a.nodes.objects.get_child([f"{ns}:DerFleet", f"{ns}:ldc-b"])
        assert await a.get_node(d1).read_value() == 10_000.0  # and the server goes on


async def test_subscribing_to_a_hidden_node_is_refused_and_the_rest_is_served(served):
    gw, clients = served
    async with await connect_encrypted(gw, VIEWER_B) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        handler = Collector()
        sub = await client.create_subscription(50, handler)
        hidden = client.get_node(var(ns, "der/d1.Control.ExportLimitW"))
        shown = client.get_node(var(ns, "der/d2.Control.ExportLimitW"))
        results = await sub.subscribe_data_change([hidden, shown], queuesize=10)
        assert isinstance(results[0], ua.StatusCode)  # asyncua returns the failure's status
        assert results[0].name == "BadNodeIdUnknown"
        assert isinstance(results[1], int)
        assert await asyncio.wait_for(handler.values.get(), 5) == 10_000.0
        with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
            await sub.subscribe_data_change(hidden)
        status, body = await clients["ldc-a"].post("/v1/instructions", {  # d1 changes: unseen
            "kind": "limit", "target": {"kind": "resource", "id": "d1"},
            **WINDOW,
            "limits": {"export_max_w": 1234}, "reason": "hidden from ldc-b"})
        assert status == 201, body
        status, body2 = await clients["ldc-b"].post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "d2"},
            **WINDOW,
            "limits": {"export_max_w": 4321}, "reason": "seen by ldc-b"})
        assert status == 201, body2
        assert await asyncio.wait_for(handler.values.get(), 5) == 4321.0
        await asyncio.sleep(0.3)
        assert handler.values.empty()  # nothing about d1 reached ldc-b
        await sub.delete()
        for who, iid in (("ldc-a", body["id"]), ("ldc-b", body2["id"])):
            assert (await clients[who].post(f"/v1/instructions/{iid}/cancel"))[0] == 200


async def test_a_host_ldc_sees_its_embedded_ldcs_ders(served):
    gw, _ = served
    async with await connect_encrypted(gw, HOST_VIEWER) as client:
        assert await fleet_tree(client) == {"ldc-e": {"d6", "d7"}}


async def test_admin_sees_everything_and_an_aggregator_nothing(served):
    gw, _ = served
    async with await connect_encrypted(gw, ADMIN_VIEWER) as client:
        tree = await fleet_tree(client)
        assert {"ldc-a", "ldc-b", "ldc-c", "ldc-e"} <= set(tree)
        assert {"d1", "d2", "d3", "d5", "d6", "d7"} <= set().union(*tree.values())
    async with await connect_encrypted(gw, AGGREGATOR_VIEWER) as client:
        assert await fleet_tree(client) == {}


async def test_a_controller_cannot_reach_other_areas_but_steers_its_own(served):
    gw, clients = served
    async with await connect_encrypted(gw, CONTROLLER) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        other = client.get_node(var(ns, "der/d5"))
        with pytest.raises(ua.uaerrors.BadNodeIdUnknown):
            await other.call_method(var(ns, "type/DerType/Connect"),
                                    ua.Variant(0, ua.VariantType.UInt32), "")
        own = client.get_node(var(ns, "der/d1"))
        iid = await own.call_method(var(ns, "type/DerType/Connect"),
                                    ua.Variant(60, ua.VariantType.UInt32), "area check")
        status, instruction = await clients["ldc-a"].get(f"/v1/instructions/{iid}")
        assert status == 200 and instruction["issuer_id"] == "ldc-a", instruction
        assert (await clients["ldc-a"].post(f"/v1/instructions/{iid}/cancel"))[0] == 200


async def test_the_view_follows_the_platform_topology(served):
    """A DER registered later appears for its LDC's operator, a SCADA participant's operator
    sees its LDC's area, and users acting for the admin are provisioned only by the admin."""
    gw, clients = served
    admin = clients["admin"]
    await admin.ok("POST", "/v1/participants", [{"id": "scada-b", "role": "scada",
                                                 "ldc_id": "ldc-b"}])
    await admin.ok("POST", "/v1/resources", [{
        "id": "d9", "connection_point_id": "cp-b1", "kind": "pv",
        "nameplate": {"export_max_w": 3000}, "aggregator_id": "agg-x",
        "binding": {"protocol": "modbus",
                    "address": {"host": "127.0.0.1", "port": 1502, "unit_id": 9}}}])
    user = {"name": "scada-b-op", "password": "scada-b-pass-1", "role": "viewer",
            "ldc_id": "scada-b"}
    status, body = await clients["ldc-b"].request(
        "PUT", f"/v1/adapters/opcua/users/{user['name']}",
        {k: user[k] for k in ("password", "role", "ldc_id")})
    assert status == 201, body
    async with await connect_encrypted(gw, user) as b, await connect_encrypted(gw, VIEWER) as a:
        async def d9_shown():
            return "d9" in (await fleet_tree(b)).get("ldc-b", set())
        await wait_for(d9_shown)
        assert "d9" not in set().union(*(await fleet_tree(a)).values())
    body = {"password": "admin-view-pass", "role": "viewer", "ldc_id": "admin"}
    status, _ = await clients["ldc-a"].request("PUT", "/v1/adapters/opcua/users/x-admin", body)
    assert status == 403  # the core's area check: the admin is not in ldc-a's area
    status, _ = await admin.request("PUT", "/v1/adapters/opcua/users/x-admin", body)
    assert status == 201
    async with await connect_encrypted(gw, {"name": "x-admin", **body}) as client:
        assert "d9" in set().union(*(await fleet_tree(client)).values())
    assert (await admin.request("DELETE", "/v1/adapters/opcua/users/x-admin"))[0] == 204


async def test_another_users_subscription_cannot_be_used_or_taken_over(served):
    """asyncua keeps subscriptions server-wide: ldc-a's operator must not add items to,
    delete, or transfer to itself the subscription of ldc-b's operator (whose notifications
    carry ldc-b's DERs)."""
    gw, _ = served
    async with await connect_encrypted(gw, VIEWER_B) as b, await connect_encrypted(gw, VIEWER) as a:
        ns = await b.get_namespace_index(NAMESPACE_URI)
        handler = Collector()
        sub = await b.create_subscription(50, handler)
        await sub.subscribe_data_change(b.get_node(var(ns, "der/d2.Control.ExportLimitW")))
        assert await asyncio.wait_for(handler.values.get(), 5) == 10_000.0
        theirs = sub.subscription_id

        item = ua.MonitoredItemCreateRequest()
        item.ItemToMonitor.NodeId = var(ns, "der/d1.Control.ExportLimitW")  # a's own node
        item.ItemToMonitor.AttributeId = ua.AttributeIds.Value
        item.MonitoringMode = ua.MonitoringMode.Reporting
        item.RequestedParameters.ClientHandle = 99
        params = ua.CreateMonitoredItemsParameters()
        params.SubscriptionId, params.ItemsToCreate = theirs, [item]
        with pytest.raises(ua.uaerrors.BadSubscriptionIdInvalid):
            await a.uaclient.create_monitored_items(params)
        assert [s.name for s in await a.uaclient.delete_subscriptions([theirs])] == [
            "BadSubscriptionIdInvalid"]
        transfer = ua.TransferSubscriptionsParameters()
        transfer.SubscriptionIds = [theirs]
        [result] = await a.uaclient.transfer_subscriptions(transfer)
        assert result.StatusCode.name == "BadUserAccessDenied"
        # b's subscription is untouched and still b's
        items = await sub.subscribe_data_change(
            b.get_node(var(ns, "der/d3.Control.ExportLimitW")))
        assert isinstance(items, int)
        assert await asyncio.wait_for(handler.values.get(), 5) == 5_000.0
        await sub.delete()
