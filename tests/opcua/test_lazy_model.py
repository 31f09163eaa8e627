"""The DER model on a real (in-memory) asyncua server, made on demand from the fleet: nothing
exists before a session touches it, made nodes look as asyncua's own AddNodes makes them,
share what is the same for every node of their shape, and stay bounded; a node with a
monitored item is kept, and keeps receiving its values."""

from __future__ import annotations

import asyncio
import tracemalloc
from datetime import UTC, datetime

import pytest_asyncio
from asyncua import ua
from asyncua.server.server import Server

from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.nodes import METHODS
from adapters.opcua.state import DerRecord, Fleet
from gateway.domain import ConnectionPoint, Nameplate, Participant, Role

CP = ConnectionPoint("cp1", "ldc-a", "N1", "F1")
LDC = Participant("ldc-a", Role.LDC)


def record(cp: str = "cp1") -> DerRecord:
    return DerRecord(cp, "pv", "modbus", "agg", Nameplate(5000.0), True)


async def _space(ders: int, capacity: int = 20_000) -> tuple[Server, AddressSpace, Fleet]:
    server = Server()
    await server.init()
    ns = await server.register_namespace("urn:test:lazy")
    fleet = Fleet()
    for n in range(ders):
        fleet.place(f"d{n}", record(), CP, LDC)
    space = AddressSpace(server, ns, fleet, capacity=capacity)

    async def handler(*_: object) -> list[ua.Variant]:
        return []

    await space.build_base({m.name: handler for m in METHODS})
    return server, space, fleet


@pytest_asyncio.fixture
async def small():
    return await _space(50)


def refs(space: AddressSpace, ident: str) -> list[tuple]:
    data = space.server.iserver.aspace.get(ua.NodeId(ident, space.ns))
    return sorted((r.ReferenceTypeId.to_string(), r.NodeId.to_string(), r.IsForward,
                   r.NodeClass, r.BrowseName.to_string(), r.DisplayName.Text,
                   r.TypeDefinition.to_string()) for r in data.references)


async def test_nothing_is_made_until_a_session_looks(small):
    server, space, _ = small
    assert not space.nodes.cache and not space.nodes.pinned
    node = server.get_node(ua.NodeId(ids.cp("cp1"), space.ns))
    children = {d.BrowseName.Name for d in await node.get_children_descriptions()}
    assert {f"d{n}" for n in range(50)} <= children and {"TdNode", "Aggregates"} <= children
    made = set(space.nodes.cache)
    assert ids.cp("cp1") in made and ids.der("d7") not in made  # DERs only when touched
    der = server.get_node(ua.NodeId(ids.der("d7"), space.ns))
    assert (await der.read_type_definition()) == space.types["DerType"]
    assert (await der.get_parent()).nodeid == node.nodeid
    assert space.owner(der.nodeid) == "ldc-a"
    assert server.iserver.aspace.get(ua.NodeId(ids.der("nope"), space.ns)) is None


async def test_made_nodes_are_linked_as_asyncua_links_them(small):
    server, space, _ = small
    # The same object added through asyncua's own AddNodes, for comparison.
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText("twin")
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = ua.NodeId("twin", space.ns)
    item.BrowseName = ua.QualifiedName("twin", space.ns)
    item.NodeClass = ua.NodeClass.Object
    item.ParentNodeId = ua.NodeId(ids.cp("cp1"), space.ns)
    item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.Organizes)
    item.TypeDefinition = space.types["DerType"]
    item.NodeAttributes = attrs
    [result] = await server.iserver.isession.add_nodes([item])
    assert result.StatusCode.is_good()

    cp_refs = refs(space, ids.cp("cp1"))
    (ours,) = [r for r in cp_refs if r[1].endswith("der/d7")]
    (theirs,) = [r for r in cp_refs if r[1].endswith("s=twin")]
    kind = (0, 2, 3, 6)  # reference type, direction, node class, type definition
    assert [ours[i] for i in kind] == [theirs[i] for i in kind]
    up = [r[:3] for r in refs(space, ids.der("d7")) if not r[2]]
    assert up == [(r[0], r[1].replace("s=twin", "s=der/d7"), r[2])
                  for r in refs(space, "twin") if not r[2]]
    made = server.iserver.aspace.get(ua.NodeId(ids.der("d7"), space.ns))
    twin = server.iserver.aspace.get(ua.NodeId("twin", space.ns))
    assert set(made.attributes) == set(twin.attributes)


async def test_fixed_attributes_are_shared_and_values_are_not(small):
    server, space, _ = small
    aspace = server.iserver.aspace

    def variable(rid):
        return aspace.get(ua.NodeId(f"der/{rid}.Measurements.W", space.ns))
    one, two = variable("d1"), variable("d2")
    for attr in (ua.AttributeIds.BrowseName, ua.AttributeIds.DisplayName,
                 ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel):
        assert one.attributes[attr] is two.attributes[attr], attr
    for attr in (ua.AttributeIds.NodeId, ua.AttributeIds.Value):
        assert one.attributes[attr] is not two.attributes[attr], attr
    space.stage("der/d1.Measurements.W", 1234.0, datetime.now(UTC))
    await space.flush()
    assert one.attributes[ua.AttributeIds.Value].value.Value.Value == 1234.0
    assert two.attributes[ua.AttributeIds.Value].value.Value.Value is None  # not known yet
    assert two.attributes[ua.AttributeIds.Value].value.StatusCode.name == \
        "UncertainInitialValue"


async def test_the_cache_is_bounded_and_monitored_nodes_stay():
    server, space, _ = await _space(300, capacity=200)
    aspace = server.iserver.aspace
    changes: asyncio.Queue = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node, val, data):
            changes.put_nowait(val)

    sub = await server.create_subscription(10, Handler())
    watched = server.get_node(ua.NodeId("der/d0.Measurements.W", space.ns))
    await sub.subscribe_data_change(watched)
    assert await asyncio.wait_for(changes.get(), 2) is None  # not known yet
    for n in range(300):  # a sweep over every DER's export cap
        assert aspace.read_attribute_value(
            ua.NodeId(f"der/d{n}.Control.ExportLimitW", space.ns),
            ua.AttributeIds.Value).Value.Value == 5000.0
    assert len(space.nodes.cache) <= 200
    assert "der/d0.Measurements.W" in space.nodes.pinned
    space.stage("der/d0.Measurements.W", 42.0, datetime.now(UTC))
    await space.flush()
    assert await asyncio.wait_for(changes.get(), 2) == 42.0
    await sub.delete()
    space.sweep()  # no item samples it any more: it may go like any other
    assert "der/d0.Measurements.W" not in space.nodes.pinned


async def test_a_der_costs_its_record_until_it_is_used():
    """What the OPC UA side holds per DER at rest (no session has touched it)."""
    _, space, fleet = await _space(0)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(2000):
        cp = ConnectionPoint(f"cp{n // 10}", "ldc-a", f"N{n // 200}", "F1")
        fleet.place(f"der-{n:05d}", record(cp.id), cp, LDC)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_der = sum(s.size_diff for s in after.compare_to(before, "filename")) / 2000
    assert not space.nodes.cache
    assert per_der < 2_000, per_der  # bytes; the eager model cost ~160 KB
