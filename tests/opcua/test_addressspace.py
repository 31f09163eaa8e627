"""AddressSpace on a real (in-memory) asyncua server: objects linked without asyncua's
per-child scans of the parent must look exactly as asyncua's own AddNodes makes them."""

from __future__ import annotations

import pytest_asyncio
from asyncua import Server, ua

from adapters.opcua.model import node_ids as NodeIds
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.nodes import METHODS

PROPS = {"Kind": "pv", "Protocol": "modbus", "Aggregator": "agg", "RatedExportW": 5000.0,
         "RatedImportW": 0.0, "RatedVar": 0.0}


@pytest_asyncio.fixture
async def space():
    server = Server()
    await server.init()
    ns = await server.register_namespace("urn:test:addressspace")
    space = AddressSpace(server, ns)
    await space.build_base({m.name: (lambda *_: []) for m in METHODS})
    batch = space.batch()
    space.add_ldc(batch, "ldc-a", {"ParticipantId": "ldc-a", "DsoModel": "total", "HostLdc": ""})
    space.add_td_node(batch, "ldc-a", "N1")
    space.add_cp(batch, "cp1", {"TdNode": "N1", "Feeder": "F1", "Ldc": "ldc-a"})
    await space.apply(batch)
    return space


def refs(space: AddressSpace, ident: str) -> list[tuple]:
    data = space.server.iserver.aspace.get(ua.NodeId(ident, space.ns))
    return sorted((r.ReferenceTypeId.to_string(), r.NodeId.to_string(), r.IsForward,
                   r.NodeClass, r.BrowseName.to_string(), r.DisplayName.Text,
                   r.TypeDefinition.to_string()) for r in data.references)


async def test_placed_ders_are_linked_as_asyncua_links_them(space):
    for n in range(50):
        batch = space.batch()
        space.add_der(batch, f"d{n}", "cp1", "ldc-a", PROPS)
        await space.apply(batch)
    # The same object added through asyncua's own AddNodes, for comparison.
    twin = space.batch()
    twin.obj("der/twin", twin.nid(NodeIds.cp("cp1")), "twin", space.types["DerType"])
    await space.server.iserver.isession.add_nodes(twin.items)

    cp_refs = refs(space, NodeIds.cp("cp1"))
    down = [r for r in cp_refs if r[1].startswith(f"ns={space.ns};s=der/")]
    assert len(down) == 51
    (ours,) = [r for r in down if r[1].endswith("der/d7")]
    (theirs,) = [r for r in down if r[1].endswith("der/twin")]
    kind = (0, 2, 3, 6)  # reference type, direction, node class, type definition
    assert [ours[i] for i in kind] == [theirs[i] for i in kind]
    up = [r for r in refs(space, NodeIds.der("d7")) if not r[2]]
    assert up == [r for r in refs(space, "der/twin") if not r[2]]
    assert up[0][1] == ua.NodeId(NodeIds.cp("cp1"), space.ns).to_string()

    node = space.server.get_node(ua.NodeId(NodeIds.cp("cp1"), space.ns))
    children = {(await c.read_browse_name()).Name for c in await node.get_children()}
    assert {f"d{n}" for n in range(50)} <= children
    der = space.server.get_node(ua.NodeId(NodeIds.der("d7"), space.ns))
    assert (await der.read_type_definition()) == space.types["DerType"]
    assert (await der.get_parent()).nodeid == node.nodeid
    assert space.has_object(NodeIds.der("d7")) and space.owner(der.nodeid) == "ldc-a"


async def test_names_and_ids_asyncua_would_refuse_are_refused(space):
    clash = space.batch()
    space.add_der(clash, "Feeder", "cp1", "ldc-a", PROPS)  # a property of the CP is "Feeder"
    await space.apply(clash)
    assert not space.has_object(NodeIds.der("Feeder"))

    batch = space.batch()
    space.add_der(batch, "d1", "cp1", "ldc-a", PROPS)
    await space.apply(batch)
    again = space.batch()
    again.obj(NodeIds.der("d1"), again.nid(NodeIds.cp("cp1")), "d1", space.types["DerType"])
    await space.apply(again)
    down = [r for r in refs(space, NodeIds.cp("cp1")) if r[1].endswith("der/d1")]
    assert len(down) == 1  # not linked twice
