"""The DER model's nodes, made when a session touches them, from the fleet.

No node of a DER, connection point or LDC exists until a session browses, reads, subscribes
to or calls on it: `make(ident)` builds asyncua's NodeData for one identifier from the fleet
(what exists, what is below what, the latest values). So the model costs nothing per DER at
start-up, and a node that is no longer used can be dropped and made again.

Each node is made from a prototype of its shape (one per object type and per variable spec)
built by asyncua's own attribute code, so a made node has exactly the attributes asyncua
would give it. The attributes that are the same for every node of a shape (data type,
access level, description, and the names of variables) are shared; a node owns only its
NodeId, its Value and, for objects named after a platform id, its names. Nobody writes
those shared attributes: operators may write nothing, and asyncua replaces a written
DataValue rather than changing it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from asyncua import ua
from asyncua.server.address_space import (
    AddressSpace as _ScratchSpace,
)
from asyncua.server.address_space import (
    AttributeValue,
    NodeData,
    NodeManagementService,
)
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from adapters.opcua.codec.values import Quality, Value
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.nodes import (
    AGGREGATES,
    CP_PROPERTIES,
    DER_GROUPS,
    DER_PROPERTIES,
    LDC_PROPERTIES,
    VariableSpec,
)
from adapters.opcua.model.wire import DATA_TYPE_IDS, VARIANT_TYPES, data_value, node_id

Reading = tuple[Value, datetime | None, Quality]
_OWN = frozenset({AttributeIds.NodeId, AttributeIds.Value})
_NAMES = frozenset({AttributeIds.BrowseName, AttributeIds.DisplayName})
ORGANIZES = node_id(ObjectIds.Organizes)
HAS_COMPONENT = node_id(ObjectIds.HasComponent)
HAS_PROPERTY = node_id(ObjectIds.HasProperty)
HAS_TYPE = node_id(ObjectIds.HasTypeDefinition)
FOLDER_TYPE = node_id(ObjectIds.FolderType)
OBJECT_TYPE = node_id(ObjectIds.BaseObjectType)
PROPERTY_TYPE = node_id(ObjectIds.PropertyType)
VARIABLE_TYPE = node_id(ObjectIds.BaseDataVariableType)
OBJECTS_FOLDER = node_id(ObjectIds.ObjectsFolder)


class FleetView(ids.Known, Protocol):
    """What the nodes are made from (`state.Fleet`)."""

    generation: int  # bumped whenever what is below what changes

    def ldc_ids(self) -> list[str]: ...
    def cps_of_ldc(self, ldc_id: str) -> list[str]: ...
    def td_nodes_of(self, ldc_id: str) -> list[str]: ...
    def cps_at_td(self, ldc_id: str, td_node: str) -> list[str]: ...
    def ders_of_cp(self, cp_id: str) -> list[str]: ...
    def cp_place(self, cp_id: str) -> tuple[str, str]: ...  # (LDC, T-D node)
    def cp_of(self, resource_id: str) -> str: ...
    def owner(self, resource_id: str) -> str | None: ...
    def properties(self, kind: str, key: str) -> Mapping[str, Value]: ...
    def measurement(self, resource_id: str, name: str) -> Reading: ...
    def control(self, resource_id: str, name: str) -> Reading: ...
    def acknowledgement(self, resource_id: str, name: str) -> Reading: ...
    def total(self, group: str, name: str) -> Reading: ...


class _Prototype:
    """One shape: asyncua's attributes for it, and its type definition reference."""

    def __init__(self, node_class: ua.NodeClass, name: str, ns: int, attributes: object,
                 type_id: ua.NodeId, type_class: ua.NodeClass) -> None:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = node_id("prototype", ns)
        item.BrowseName = ua.QualifiedName(name, ns)
        item.NodeClass = node_class
        item.NodeAttributes = attributes
        made = NodeData(item.RequestedNewNodeId)
        NodeManagementService(_ScratchSpace())._add_node_attributes(made, item, False)
        self.node_class = node_class
        self.type_id = type_id
        self.shared = {a: v for a, v in made.attributes.items() if a not in _OWN}
        self.type_ref = _reference(HAS_TYPE, type_id, type_class, ua.QualifiedName(),
                                   ua.LocalizedText(), ua.NodeId(), forward=True)

    def make(self, nid: ua.NodeId, ns: int, *, name: str | None = None,
             value: ua.DataValue | None = None) -> NodeData:
        node = NodeData(nid)
        node.attributes = dict(self.shared)
        node.attributes[AttributeIds.NodeId] = AttributeValue(
            ua.DataValue(ua.Variant(nid, ua.VariantType.NodeId)))
        if name is not None:  # an object named after a platform id
            node.attributes[AttributeIds.BrowseName] = AttributeValue(ua.DataValue(
                ua.Variant(ua.QualifiedName(name, ns), ua.VariantType.QualifiedName)))
            node.attributes[AttributeIds.DisplayName] = AttributeValue(ua.DataValue(
                ua.Variant(ua.LocalizedText(name), ua.VariantType.LocalizedText)))
        if value is not None:
            node.attributes[AttributeIds.Value] = AttributeValue(value)
        node.references = [self.type_ref]
        return node


def _reference(ref_type: ua.NodeId, target: ua.NodeId, node_class: ua.NodeClass,
               browse_name: ua.QualifiedName, display_name: ua.LocalizedText,
               type_definition: ua.NodeId, *, forward: bool) -> ua.ReferenceDescription:
    ref = ua.ReferenceDescription()
    ref.ReferenceTypeId, ref.NodeId, ref.NodeClass = ref_type, target, node_class
    ref.BrowseName, ref.DisplayName = browse_name, display_name
    ref.TypeDefinition = ua.ExpandedNodeId(type_definition.Identifier,
                                           type_definition.NamespaceIndex)
    ref.IsForward = forward
    return ref


def _object_attributes(name: str) -> ua.ObjectAttributes:
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    return attrs


def _variable_attributes(spec: VariableSpec) -> ua.VariableAttributes:
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(spec.name)
    attrs.Description = ua.LocalizedText(spec.description)
    attrs.DataType = DATA_TYPE_IDS[spec.dtype]
    attrs.ValueRank = 1 if spec.array else -1
    attrs.ArrayDimensions = [0] if spec.array else []
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    attrs.MinimumSamplingInterval = 0.0
    return attrs


class Shapes:
    """Makes the model's nodes. `types` and `methods`: the real nodes of build_base."""

    def __init__(self, ns: int, fleet: FleetView, types: Mapping[str, ua.NodeId],
                 methods: Mapping[str, ua.NodeId]) -> None:
        self.ns = ns
        self._fleet = fleet
        self._types = types
        obj = ua.NodeClass.Object
        self._objects = {
            name: _Prototype(obj, name, ns, _object_attributes(name), type_id,
                             ua.NodeClass.ObjectType)
            for name, type_id in {**types, "Folder": FOLDER_TYPE, "Group": OBJECT_TYPE}.items()}
        # (scope, name) -> the prototype and spec of a variable: scope is "der", "cp" or
        # "ldc" for properties, else the group ("Measurements", ..., "Aggregates")
        self._variables: dict[tuple[str, str], tuple[_Prototype, VariableSpec]] = {}
        scopes: dict[str, tuple[tuple[VariableSpec, ...], bool]] = {
            "der": (DER_PROPERTIES, True), "cp": (CP_PROPERTIES, True),
            "ldc": (LDC_PROPERTIES, True), "Aggregates": (AGGREGATES, False),
            **{group: (specs, False) for group, specs in DER_GROUPS.items()}}
        for scope, (specs, prop) in scopes.items():
            for spec in specs:
                self._variables[(scope, spec.name)] = (_Prototype(
                    ua.NodeClass.Variable, spec.name, ns, _variable_attributes(spec),
                    PROPERTY_TYPE if prop else VARIABLE_TYPE, ua.NodeClass.VariableType), spec)
        self._shared_ids = frozenset(
            id(held) for proto in [*self._objects.values(),
                                   *(p for p, _ in self._variables.values())]
            for held in proto.shared.values())
        self._methods = [
            _reference(HAS_COMPONENT, nid, ua.NodeClass.Method, ua.QualifiedName(name, ns),
                       ua.LocalizedText(name), ua.NodeId(), forward=True)
            for name, nid in methods.items()]
        self._make: dict[str, Callable[[str, ids.NodeRef], NodeData | None]] = {
            "fleet": self._fleet_folder, "ldc": self._ldc, "tdfolder": self._td_folder,
            "td": self._td, "cp": self._cp, "der": self._der}

    def is_shared(self, held: object) -> bool:
        """Whether an attribute value is one every node of a shape shares."""
        return id(held) in self._shared_ids

    def fleet_reference(self) -> ua.ReferenceDescription:
        """The Objects folder's reference to the fleet folder."""
        return self._to_object(ORGANIZES, ids.FLEET, "DerFleet", "FleetType")

    def nid(self, ident: str) -> ua.NodeId:
        return node_id(ident, self.ns)

    def make(self, ident: str) -> NodeData | None:
        """The node `ident` names, as the fleet is now; None if there is no such node."""
        ref = ids.parse(ident, self._fleet)
        return None if ref is None else self._make[ref.kind](ident, ref)

    # -- references ------------------------------------------------------------------------

    def _to_object(self, ref_type: ua.NodeId, ident: str, name: str, type_name: str, *,
                   forward: bool = True) -> ua.ReferenceDescription:
        return _reference(ref_type, self.nid(ident), ua.NodeClass.Object,
                          ua.QualifiedName(name, self.ns), ua.LocalizedText(name),
                          self._objects[type_name].type_id, forward=forward)

    def _to_variable(self, ref_type: ua.NodeId, ident: str, name: str,
                     prop: bool) -> ua.ReferenceDescription:
        return _reference(ref_type, self.nid(ident), ua.NodeClass.Variable,
                          ua.QualifiedName(name, self.ns), ua.LocalizedText(name),
                          PROPERTY_TYPE if prop else VARIABLE_TYPE, forward=True)

    def _object(self, ident: str, type_name: str, name: str, parents: list[
            ua.ReferenceDescription], children: list[ua.ReferenceDescription], *,
                named: bool = True) -> NodeData:
        node = self._objects[type_name].make(self.nid(ident), self.ns,
                                             name=name if named else None)
        node.references = [*node.references, *parents, *children]
        return node

    def _properties(self, ident: str, specs: tuple[VariableSpec, ...]
                    ) -> list[ua.ReferenceDescription]:
        return [self._to_variable(HAS_PROPERTY, ids.member(ident, s.name), s.name, True)
                for s in specs]

    def _variable(self, ident: str, scope: str, name: str, parent: str, reading: Reading
                  ) -> NodeData | None:
        found = self._variables.get((scope, name))
        if found is None:
            return None
        proto, spec = found
        value, at, quality = reading
        node = proto.make(self.nid(ident), self.ns, value=data_value(
            value, VARIANT_TYPES[spec.dtype], quality, at, datetime.now(UTC)))
        back = HAS_PROPERTY if proto.type_id == PROPERTY_TYPE else HAS_COMPONENT
        node.references = [*node.references, _reference(
            back, self.nid(parent), ua.NodeClass.Object, ua.QualifiedName(), ua.LocalizedText(),
            ua.NodeId(), forward=False)]
        return node

    def _aggregates(self, owner_ident: str, ref: ids.NodeRef) -> NodeData | None:
        group = ids.member(owner_ident, "Aggregates")
        if ref.name:
            ident = ids.member(group, ref.name)
            return self._variable(ident, "Aggregates", ref.name, group,
                                  self._fleet.total(owner_ident, ref.name))
        children = [self._to_variable(HAS_COMPONENT, ids.member(group, s.name), s.name, False)
                    for s in AGGREGATES]
        return self._object(group, "Group", "Aggregates", [self._to_object(
            HAS_COMPONENT, owner_ident, "", "Group", forward=False)], children, named=True)

    def _property(self, owner_ident: str, kind: str, key: str, name: str) -> NodeData | None:
        value = self._fleet.properties(kind, key).get(name)
        return self._variable(ids.member(owner_ident, name), kind, name, owner_ident,
                              (value, None, Quality.CURRENT))

    # -- the objects, by kind --------------------------------------------------------------

    def _fleet_folder(self, ident: str, ref: ids.NodeRef) -> NodeData:
        parent = _reference(ORGANIZES, OBJECTS_FOLDER, ua.NodeClass.Object, ua.QualifiedName(),
                            ua.LocalizedText(), ua.NodeId(), forward=False)
        return self._object(ident, "FleetType", "DerFleet", [parent], [
            self._to_object(ORGANIZES, ids.ldc(ldc), ldc, "LdcType")
            for ldc in self._fleet.ldc_ids()])

    def _ldc(self, ident: str, ref: ids.NodeRef) -> NodeData | None:
        ldc = ref.key
        if ref.member:
            return None if ref.name else self._property(ids.ldc(ldc), "ldc", ldc, ref.member)
        children = [*self._properties(ident, LDC_PROPERTIES),
                    self._to_object(ORGANIZES, ids.td_folder(ldc), "TdNodes", "Folder"),
                    *(self._to_object(ORGANIZES, ids.cp(cp), cp, "ConnectionPointType")
                      for cp in self._fleet.cps_of_ldc(ldc))]
        return self._object(ident, "LdcType", ldc, [self._to_object(
            ORGANIZES, ids.FLEET, "DerFleet", "FleetType", forward=False)], children)

    def _td_folder(self, ident: str, ref: ids.NodeRef) -> NodeData | None:
        if ref.member:
            return None
        ldc = ref.key
        return self._object(ident, "Folder", "TdNodes", [self._to_object(
            ORGANIZES, ids.ldc(ldc), ldc, "LdcType", forward=False)], [
            self._to_object(ORGANIZES, ids.td_node(ldc, td), td, "TdNodeType")
            for td in self._fleet.td_nodes_of(ldc)], named=True)

    def _td(self, ident: str, ref: ids.NodeRef) -> NodeData | None:
        ldc, td = ids.split_td_key(ref.key)
        owner_ident = ids.td_node(ldc, td)
        if ref.member:
            return self._aggregates(owner_ident, ref) if ref.member == "Aggregates" else None
        children = [self._to_object(HAS_COMPONENT, ids.member(ident, "Aggregates"),
                                    "Aggregates", "Group"),
                    *(self._to_object(ORGANIZES, ids.cp(cp), cp, "ConnectionPointType")
                      for cp in self._fleet.cps_at_td(ldc, td))]
        return self._object(ident, "TdNodeType", td, [self._to_object(
            ORGANIZES, ids.td_folder(ldc), "TdNodes", "Folder", forward=False)], children)

    def _cp(self, ident: str, ref: ids.NodeRef) -> NodeData | None:
        cp = ref.key
        owner_ident = ids.cp(cp)
        if ref.member == "Aggregates":
            return self._aggregates(owner_ident, ref)
        if ref.member:
            return None if ref.name else self._property(owner_ident, "cp", cp, ref.member)
        ldc, td = self._fleet.cp_place(cp)
        parents = [self._to_object(ORGANIZES, ids.ldc(ldc), ldc, "LdcType", forward=False),
                   self._to_object(ORGANIZES, ids.td_node(ldc, td), td, "TdNodeType",
                                   forward=False)]
        children = [*self._properties(ident, CP_PROPERTIES),
                    self._to_object(HAS_COMPONENT, ids.member(ident, "Aggregates"),
                                    "Aggregates", "Group"),
                    *(self._to_object(ORGANIZES, ids.der(rid), rid, "DerType")
                      for rid in self._fleet.ders_of_cp(cp))]
        return self._object(ident, "ConnectionPointType", cp, parents, children)

    def _der(self, ident: str, ref: ids.NodeRef) -> NodeData | None:
        rid = ref.key
        owner_ident = ids.der(rid)
        if ref.member in DER_GROUPS:
            return self._der_group(owner_ident, rid, ref)
        if ref.member:
            return None if ref.name else self._property(owner_ident, "der", rid, ref.member)
        cp = self._fleet.cp_of(rid)
        parents = [self._to_object(ORGANIZES, ids.cp(cp), cp, "ConnectionPointType",
                                   forward=False)]
        children = [*self._properties(ident, DER_PROPERTIES),
                    *(self._to_object(HAS_COMPONENT, ids.member(ident, g), g, "Group")
                      for g in DER_GROUPS),
                    *self._methods]
        return self._object(ident, "DerType", rid, parents, children)

    def _der_group(self, owner_ident: str, rid: str, ref: ids.NodeRef) -> NodeData | None:
        group = ids.member(owner_ident, ref.member)
        if not ref.name:
            children = [self._to_variable(HAS_COMPONENT, ids.member(group, s.name), s.name,
                                          False) for s in DER_GROUPS[ref.member]]
            return self._object(group, "Group", ref.member, [self._to_object(
                HAS_COMPONENT, owner_ident, rid, "DerType", forward=False)], children)
        read = _GROUP_VALUES.get(ref.member)
        if read is None:
            return None
        return self._variable(ids.member(group, ref.name), ref.member, ref.name, group,
                              read(self._fleet, rid, ref.name))


_GROUP_VALUES: dict[str, Callable[[FleetView, str, str], Reading]] = {
    "Measurements": lambda fleet, rid, name: fleet.measurement(rid, name),
    "Control": lambda fleet, rid, name: fleet.control(rid, name),
    "Acknowledgement": lambda fleet, rid, name: fleet.acknowledgement(rid, name),
}
