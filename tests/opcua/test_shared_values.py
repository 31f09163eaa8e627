"""DER nodes share equal values of their fixed attributes (memory), never their own values
or node ids, and a written value stays on its own node."""

from __future__ import annotations

from asyncua import Server, ua

from adapters.opcua.model import node_ids as NodeIds
from adapters.opcua.model.addressspace import AddressSpace
from adapters.opcua.model.nodes import METHODS


async def _two_ders() -> tuple[Server, AddressSpace]:
    server = Server()
    await server.init()
    ns = await server.register_namespace("urn:der-gateway:test")
    space = AddressSpace(server, ns)

    async def handler(*_: object) -> list[ua.Variant]:
        return []

    await space.build_base({m.name: handler for m in METHODS})
    batch = space.batch()
    space.add_ldc(batch, "ldc", {})
    space.add_td_node(batch, "ldc", "N")
    space.add_cp(batch, "cp", {"Ldc": "ldc", "TdNode": "N"})
    for rid in ("d1", "d2"):
        space.add_der(batch, rid, "cp", "ldc", {"Kind": "pv", "Protocol": "modbus"})
    await space.apply(batch)
    return server, space


def _node(space: AddressSpace, ident: str):
    return space._aspace.get(ua.NodeId(ident, space.ns))


async def test_fixed_attributes_are_shared_and_values_are_not():
    server, space = await _two_ders()
    one = _node(space, NodeIds.member(NodeIds.member(NodeIds.der("d1"), "Measurements"), "W"))
    two = _node(space, NodeIds.member(NodeIds.member(NodeIds.der("d2"), "Measurements"), "W"))
    assert one is not None and two is not None
    for attr in (ua.AttributeIds.BrowseName, ua.AttributeIds.DisplayName,
                 ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel):
        assert one.attributes[attr].value is two.attributes[attr].value, attr
        assert one.attributes[attr] is not two.attributes[attr]  # callbacks stay per node
    for attr in (ua.AttributeIds.NodeId, ua.AttributeIds.Value):
        assert one.attributes[attr].value is not two.attributes[attr].value, attr
    assert one.attributes[ua.AttributeIds.NodeId].value.Value.Value != \
        two.attributes[ua.AttributeIds.NodeId].value.Value.Value

    await server.iserver.aspace.write_attribute_value(
        one.nodeid, ua.AttributeIds.Value, ua.DataValue(ua.Variant(1234.0, ua.VariantType.Double)))
    assert one.attributes[ua.AttributeIds.Value].value.Value.Value == 1234.0
    assert two.attributes[ua.AttributeIds.Value].value.Value.Value != 1234.0
    names = {(await server.get_node(n.nodeid).read_browse_name()).Name for n in (one, two)}
    assert names == {"W"}
