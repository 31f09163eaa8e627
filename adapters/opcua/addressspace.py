"""The asyncua address space: builds the DER model's nodes and writes their values.

Values are staged in a dict (latest wins, so it is bounded by the number of variables) and
written in one pass by `flush()`: a reading costs the bus consumer one dict store, and
asyncua's per-write work (type check, data-change callbacks) runs once per flush interval.

Every node below an LDC object (its properties, T-D nodes, connection points, DERs and their
variables) is recorded with that LDC as its *owner*: the access checks (`access.py`) decide
from the owner alone whether an operator may see a node.

Objects are linked to their parent here rather than by asyncua (see `_add_objects`): asyncua
scans every reference of the parent for each child it adds, so the DERs of one connection
point, or the connection points of one LDC, cost O(N²) to place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua

from adapters.opcua.codec import (
    AGGREGATES,
    CP_PROPERTIES,
    DER_GROUPS,
    DER_PROPERTIES,
    LDC_PROPERTIES,
    METHODS,
    OBJECT_TYPES,
    Dt,
    NodeIds,
    VariableSpec,
)
from adapters.opcua.mapper import Value

log = logging.getLogger(__name__)

_DATA_TYPE = {dt: ua.NodeId(getattr(ua.ObjectIds, dt.value)) for dt in Dt}
_VARIANT = {dt: getattr(ua.VariantType, dt.value) for dt in Dt}
_WRITE_CHUNK = 500  # writes between yields: keeps event-loop stalls to a few ms
MethodHandler = Callable[..., Any]


class NodeBatch:
    """AddNodes and AddReferences items for one change of the model, applied together."""

    def __init__(self, ns: int) -> None:
        self.ns = ns
        self.items: list[ua.AddNodesItem] = []
        self.refs: list[ua.AddReferencesItem] = []
        self.variables: dict[str, Dt] = {}
        self.initial: dict[str, Value] = {}
        self.properties: dict[str, set[str]] = {}  # parent ident -> its property names
        self.owners: dict[str, str] = {}  # node ident -> the LDC whose area it belongs to
        self._owner: str | None = None

    def nid(self, ident: str) -> ua.NodeId:
        return ua.NodeId(ident, self.ns)

    @contextmanager
    def owned_by(self, ldc_id: str) -> Iterator[None]:
        """Nodes added inside the block belong to `ldc_id`'s area."""
        previous, self._owner = self._owner, ldc_id
        try:
            yield
        finally:
            self._owner = previous

    def obj(self, ident: str, parent: ua.NodeId, name: str, type_id: ua.NodeId,
            ref: int = ua.ObjectIds.Organizes) -> ua.NodeId:
        attrs = ua.ObjectAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        self.items.append(self._item(ident, parent, name, ua.NodeClass.Object, ref, type_id,
                                     attrs))
        self._own(ident)
        return self.nid(ident)

    def var(self, parent_ident: str, spec: VariableSpec, *, prop: bool = False,
            value: Value = None) -> None:
        ident = NodeIds.member(parent_ident, spec.name)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(spec.name)
        attrs.Description = ua.LocalizedText(spec.description)
        attrs.DataType = _DATA_TYPE[spec.dtype]
        attrs.ValueRank = 1 if spec.array else -1
        attrs.ArrayDimensions = [0] if spec.array else []
        attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        attrs.MinimumSamplingInterval = 0.0
        ref, type_id = ((ua.ObjectIds.HasProperty, ua.ObjectIds.PropertyType) if prop
                        else (ua.ObjectIds.HasComponent, ua.ObjectIds.BaseDataVariableType))
        self.items.append(self._item(ident, self.nid(parent_ident), spec.name,
                                     ua.NodeClass.Variable, ref, ua.NodeId(type_id), attrs))
        if prop:
            self.properties.setdefault(parent_ident, set()).add(spec.name)
        self.variables[ident] = spec.dtype
        self.initial[ident] = value
        self._own(ident)

    def _own(self, ident: str) -> None:
        if self._owner is not None:
            self.owners[ident] = self._owner

    def reference(self, source: ua.NodeId, target: ua.NodeId, ref: int,
                  target_class: ua.NodeClass) -> None:
        item = ua.AddReferencesItem()
        item.SourceNodeId, item.TargetNodeId = source, target
        item.ReferenceTypeId = ua.NodeId(ref)
        item.IsForward = True
        item.TargetNodeClass = target_class
        self.refs.append(item)

    def _item(self, ident: str, parent: ua.NodeId, name: str, cls: ua.NodeClass, ref: int,
              type_id: ua.NodeId, attrs: Any) -> ua.AddNodesItem:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = self.nid(ident)
        item.BrowseName = ua.QualifiedName(name, self.ns)
        item.NodeClass = cls
        item.ParentNodeId = parent
        item.ReferenceTypeId = ua.NodeId(ref)
        item.TypeDefinition = type_id
        item.NodeAttributes = attrs
        return item


class AddressSpace:
    """Our part of one asyncua server's address space."""

    def __init__(self, server: Server, ns: int) -> None:
        self.server = server
        self.ns = ns
        self._aspace = server.iserver.aspace
        self._session = server.iserver.isession
        self._nodes = server.iserver.node_mgt_service
        self._property_names: dict[str, frozenset[str]] = {}  # object ident -> its properties
        self._name_sets: dict[frozenset[str], frozenset[str]] = {}  # one copy of each set
        self._variables: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}
        self._objects: set[str] = set()
        self._pending: dict[str, tuple[Value, datetime | None]] = {}
        self._owners: dict[str, str] = {}
        self.types: dict[str, ua.NodeId] = {}
        self.methods: dict[str, ua.NodeId] = {}
        self._static: dict[tuple[Any, ...], ua.DataValue] = {}  # see _share_static

    # -- structure -------------------------------------------------------------------------

    async def build_base(self, handlers: dict[str, MethodHandler]) -> None:
        """Object types, the shared control methods on DerType, and the Fleet folder."""
        base = self.server.nodes.base_object_type
        for name in OBJECT_TYPES:
            node = await base.add_object_type(ua.NodeId(NodeIds.object_type(name), self.ns),
                                              ua.QualifiedName(name, self.ns))
            self.types[name] = node.nodeid
        der_type = self.server.get_node(self.types["DerType"])
        for spec in METHODS:
            node = await der_type.add_method(
                ua.NodeId(NodeIds.method(spec.name), self.ns), ua.QualifiedName(spec.name, self.ns),
                handlers[spec.name], _arguments(spec.inputs), _arguments(spec.outputs))
            await node.write_attribute(ua.AttributeIds.Description,
                                       ua.DataValue(ua.LocalizedText(spec.description)))
            self.methods[spec.name] = node.nodeid
        batch = self.batch()
        batch.obj(NodeIds.FLEET, self.server.nodes.objects.nodeid, "DerFleet",
                  self.types["FleetType"])
        await self.apply(batch)

    def batch(self) -> NodeBatch:
        return NodeBatch(self.ns)

    def has_object(self, ident: str) -> bool:
        return ident in self._objects

    def owner(self, node_id: ua.NodeId) -> str | None:
        """The LDC whose area a node of ours belongs to; None for shared nodes (the fleet
        folder, types, methods), for other namespaces and for nodes that do not exist."""
        if node_id.NamespaceIndex != self.ns or not isinstance(node_id.Identifier, str):
            return None
        return self._owners.get(node_id.Identifier)

    async def apply(self, batch: NodeBatch) -> None:
        for parent, names in batch.properties.items():
            known = frozenset(names | self._property_names.get(parent, frozenset()))
            self._property_names[parent] = self._name_sets.setdefault(known, known)
        objects = [i for i in batch.items if i.NodeClass == ua.NodeClass.Object]
        others = [i for i in batch.items if i.NodeClass != ua.NodeClass.Object]
        results = await self._add_objects(objects) + await self._session.add_nodes(others)
        for item, result in zip(objects + others, results, strict=True):
            if result.StatusCode.is_good():
                ident = item.RequestedNewNodeId.Identifier
                if ident in batch.owners:
                    self._owners[ident] = batch.owners[ident]
                if item.NodeClass == ua.NodeClass.Object:
                    self._objects.add(ident)
            else:
                log.warning("opcua: could not add node %s: %s", item.RequestedNewNodeId,
                            result.StatusCode.name)
        self._share_static(item.RequestedNewNodeId for item in objects + others)
        if batch.refs:
            await self._session.add_references(batch.refs)
        for ident, dtype in batch.variables.items():
            self._variables[ident] = (batch.nid(ident), _VARIANT[dtype])
        for ident, value in batch.initial.items():
            self.stage(ident, value)

    async def _add_objects(self, items: list[ua.AddNodesItem]) -> list[ua.AddNodesResult]:
        """Add Objects without asyncua's scans of the parent's references, then link them.

        For each child asyncua compares the parent's references with it twice: a property
        browse-name check and a duplicate-reference check. A new node has no reference yet,
        so the second is needless; the first is kept, against the property names recorded
        for the parent. The links are asyncua's own: the parent's forward reference (built
        as asyncua builds it) and the child's inverse one (through asyncua)."""
        results = []
        for item in items:
            parent_id = item.ParentNodeId
            parent = self._aspace.get(parent_id)
            if parent is None:
                results.append(_result(ua.StatusCodes.BadParentNodeIdInvalid))
                continue
            if item.BrowseName.Name in self._property_names.get(parent_id.Identifier, ()):
                results.append(_result(ua.StatusCodes.BadBrowseNameDuplicated))
                continue
            if item.RequestedNewNodeId in self._aspace:
                results.append(_result(ua.StatusCodes.BadNodeIdExists))
                continue
            item.ParentNodeId = ua.NodeId()  # so asyncua adds it without looking at a parent
            try:
                failed = list(self._nodes.try_add_nodes([item], self._session.user, check=False))
            finally:
                item.ParentNodeId = parent_id
            if failed:  # e.g. an unknown type definition
                results.append(_result(ua.StatusCodes.BadNodeIdRejected))
                continue
            parent.references.append(_forward(item))
            await self._session.add_references([_inverse(item, parent)])
            results.append(_result(ua.StatusCodes.Good))
        return results

    def _share_static(self, node_ids: Iterable[ua.NodeId]) -> None:
        """Let nodes share equal values of their fixed attributes (browse and display
        names, data types, access levels, ...): every DER has the same ~37 nodes of ~14
        attributes, and one DataValue, Variant and StatusCode each was ~30 % of the
        gateway's memory at 10,000 DERs. Only the value objects are shared, never asyncua's
        AttributeValue (it holds each node's data-change callbacks). Safe because those
        attributes are written by nobody after creation (operators may write Value only)
        and asyncua replaces a written DataValue rather than changing it."""
        for node_id in node_ids:
            node = self._aspace.get(node_id)
            if node is None:
                continue
            for attr, held in node.attributes.items():
                if attr in _OWN_ATTRIBUTES or held.value is None:
                    continue
                key = _static_key(attr, held.value)
                if key is not None:
                    held.value = self._static.setdefault(key, held.value)
            for ref in node.references:  # reference and type ids, names: shared as well
                for field in _SHARED_REFERENCE_FIELDS:
                    value = getattr(ref, field)
                    key = _value_key(value)
                    if key is not None and not isinstance(value, str | int | float | bool):
                        setattr(ref, field, self._static.setdefault(("ref", type(value), key),
                                                                    value))

    def add_ldc(self, batch: NodeBatch, ldc_id: str, props: dict[str, Value]) -> None:
        ident = NodeIds.ldc(ldc_id)
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(NodeIds.FLEET), ldc_id, self.types["LdcType"])
            for spec in LDC_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            batch.obj(NodeIds.td_folder(ldc_id), batch.nid(ident), "TdNodes",
                      ua.NodeId(ua.ObjectIds.FolderType))

    def add_td_node(self, batch: NodeBatch, ldc_id: str, td_node: str) -> None:
        ident = NodeIds.td_node(ldc_id, td_node)
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(NodeIds.td_folder(ldc_id)), td_node,
                      self.types["TdNodeType"])
            self._aggregates(batch, ident)

    def add_cp(self, batch: NodeBatch, cp_id: str, props: dict[str, str]) -> None:
        ident = NodeIds.cp(cp_id)
        ldc_id, td_node = props["Ldc"], props["TdNode"]
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(NodeIds.ldc(ldc_id)), cp_id,
                      self.types["ConnectionPointType"])
            for spec in CP_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            self._aggregates(batch, ident)
        batch.reference(batch.nid(NodeIds.td_node(ldc_id, td_node)), batch.nid(ident),
                        ua.ObjectIds.Organizes, ua.NodeClass.Object)

    def add_der(self, batch: NodeBatch, resource_id: str, cp_id: str, ldc_id: str,
                props: dict[str, Value]) -> None:
        ident = NodeIds.der(resource_id)
        with batch.owned_by(ldc_id):
            der = batch.obj(ident, batch.nid(NodeIds.cp(cp_id)), resource_id,
                            self.types["DerType"])
            for spec in DER_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            for group, specs in DER_GROUPS.items():
                group_ident = NodeIds.member(ident, group)
                batch.obj(group_ident, der, group, ua.NodeId(ua.ObjectIds.BaseObjectType),
                          ref=ua.ObjectIds.HasComponent)
                for spec in specs:
                    batch.var(group_ident, spec)
        for method in self.methods.values():
            batch.reference(der, method, ua.ObjectIds.HasComponent, ua.NodeClass.Method)

    def _aggregates(self, batch: NodeBatch, parent_ident: str) -> None:
        group = NodeIds.member(parent_ident, "Aggregates")
        batch.obj(group, batch.nid(parent_ident), "Aggregates",
                  ua.NodeId(ua.ObjectIds.BaseObjectType), ref=ua.ObjectIds.HasComponent)
        for spec in AGGREGATES:
            batch.var(group, spec, value=0 if spec.dtype is Dt.UINT32 else 0.0)

    async def move_der(self, resource_id: str, old_cp: str, new_cp: str, ldc_id: str) -> None:
        """Hang a DER under another connection point (and LDC), keeping its nodes: sessions
        that still see it keep their monitored items; the area checks follow the new owner."""
        ident = NodeIds.der(resource_id)
        der, organizes = ua.NodeId(ident, self.ns), ua.NodeId(ua.ObjectIds.Organizes)
        unlink = ua.DeleteReferencesItem()
        unlink.SourceNodeId, unlink.TargetNodeId = ua.NodeId(NodeIds.cp(old_cp), self.ns), der
        unlink.ReferenceTypeId, unlink.IsForward = organizes, True
        unlink.DeleteBidirectional = True
        await self._session.delete_references([unlink])
        links = []
        for source, target, forward in ((NodeIds.cp(new_cp), ident, True),
                                        (ident, NodeIds.cp(new_cp), False)):
            item = ua.AddReferencesItem()
            item.SourceNodeId, item.TargetNodeId = (ua.NodeId(source, self.ns),
                                                    ua.NodeId(target, self.ns))
            item.ReferenceTypeId, item.IsForward = organizes, forward
            item.TargetNodeClass = ua.NodeClass.Object
            links.append(item)
        await self._session.add_references(links)
        for key in _der_idents(ident):
            if key in self._owners:
                self._owners[key] = ldc_id

    async def remove_der(self, resource_id: str, cp_id: str) -> None:
        """Remove a DER's nodes (a DER that left the fleet), and only those: the control
        methods it references are shared by every DER, so no recursive delete.

        Monitored items on the removed nodes get one Bad_NodeIdUnknown value and then nothing
        (OPC UA Part 4: an item whose node is deleted reports Bad_NodeIdUnknown); they are
        told here, because asyncua's own notice on deletion is never delivered."""
        ident = NodeIds.der(resource_id)
        unlink = ua.DeleteReferencesItem()
        unlink.SourceNodeId, unlink.TargetNodeId = (ua.NodeId(NodeIds.cp(cp_id), self.ns),
                                                    ua.NodeId(ident, self.ns))
        unlink.ReferenceTypeId = ua.NodeId(ua.ObjectIds.Organizes)
        unlink.IsForward, unlink.DeleteBidirectional = True, True
        await self._session.delete_references([unlink])
        doomed = _der_idents(ident)
        await self._detach_monitors(doomed)
        params = ua.DeleteNodesParameters()
        for key in doomed:  # its nodes reference only each other, types and the methods
            item = ua.DeleteNodesItem()
            item.NodeId, item.DeleteTargetReferences = ua.NodeId(key, self.ns), False
            params.NodesToDelete.append(item)
        await self._session.delete_nodes(params)
        for key in doomed:
            self._objects.discard(key)
            self._variables.pop(key, None)
            self._pending.pop(key, None)
            self._owners.pop(key, None)
            self._property_names.pop(key, None)

    async def _detach_monitors(self, idents: list[str]) -> None:
        gone = ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
        for ident in idents:
            node = self._aspace.get(ua.NodeId(ident, self.ns))
            for attribute in node.attributes.values() if node is not None else ():
                for handle, callback in list(attribute.datachange_callbacks.items()):
                    self._aspace.delete_datachange_callback(handle)
                    try:
                        await callback(handle, None, gone)
                    except Exception:  # one subscription's failure must not stop the removal
                        log.exception("opcua: telling monitored item %s of a removal failed",
                                      handle)

    # -- values ----------------------------------------------------------------------------

    def stage(self, ident: str, value: Value, source_time: datetime | None = None) -> None:
        """Remember a value to publish at the next flush (latest wins)."""
        if ident in self._variables:
            self._pending[ident] = (value, source_time)

    def stage_group(self, parent_ident: str, values: dict[str, Value],
                    source_time: datetime | None = None) -> None:
        for name, value in values.items():
            self.stage(NodeIds.member(parent_ident, name), value, source_time)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write every staged value; data-change notifications follow from asyncua."""
        staged, self._pending = self._pending, {}
        now = datetime.now(UTC)
        for count, (ident, (value, source_time)) in enumerate(staged.items(), 1):
            node_id, variant = self._variables.get(ident, (None, None))
            if node_id is None:
                continue
            await self._aspace.write_attribute_value(
                node_id, ua.AttributeIds.Value, _data_value(value, variant, source_time, now))
            if count % _WRITE_CHUNK == 0:
                await asyncio.sleep(0)
        return len(staged)

    def read(self, ident: str) -> ua.DataValue:
        node_id, _ = self._variables[ident]
        return self.server.read_attribute_value(node_id)


_SHARED_REFERENCE_FIELDS = ("ReferenceTypeId", "BrowseName", "DisplayName", "TypeDefinition")
# Attributes each node has its own of: never shared.
_OWN_ATTRIBUTES = frozenset({ua.AttributeIds.NodeId, ua.AttributeIds.Value})


def _static_key(attr: ua.AttributeIds, dv: ua.DataValue) -> tuple[Any, ...] | None:
    """A hashable identity of a fixed attribute's DataValue, or None (not shared)."""
    if dv.SourceTimestamp or dv.ServerTimestamp or dv.SourcePicoseconds \
            or dv.ServerPicoseconds or not isinstance(dv.Value, ua.Variant):
        return None
    value = _value_key(dv.Value.Value)
    if value is None:
        return None
    status = dv.StatusCode.value if dv.StatusCode is not None else None
    return (attr, dv.Encoding, status, dv.Value.VariantType, dv.Value.is_array,
            tuple(dv.Value.Dimensions or ()), value)


def _value_key(value: Any) -> tuple[Any, ...] | None:
    if value is None or isinstance(value, bool | int | float | str):
        return (type(value), value)
    if isinstance(value, ua.ExpandedNodeId):
        return ("expanded", value.NamespaceIndex, value.NodeIdType, value.Identifier,
                value.NamespaceUri, value.ServerIndex)
    if isinstance(value, ua.NodeId):
        return ("nodeid", value.NamespaceIndex, value.NodeIdType, value.Identifier)
    if isinstance(value, ua.QualifiedName):
        return ("qname", value.NamespaceIndex, value.Name)
    if isinstance(value, ua.LocalizedText):
        return ("text", value.Locale, value.Text)
    if isinstance(value, list):
        items = [_value_key(v) for v in value]
        return None if any(i is None for i in items) else ("list", *items)
    return None


def _der_idents(ident: str) -> list[str]:
    """Every node of one DER (as `add_der` makes them), without scanning the model."""
    out = [ident, *(NodeIds.member(ident, spec.name) for spec in DER_PROPERTIES)]
    for group, specs in DER_GROUPS.items():
        group_ident = NodeIds.member(ident, group)
        out += [group_ident, *(NodeIds.member(group_ident, spec.name) for spec in specs)]
    return out


def _result(code: int) -> ua.AddNodesResult:
    result = ua.AddNodesResult()
    result.StatusCode = ua.StatusCode(code)
    return result


def _forward(item: ua.AddNodesItem) -> ua.ReferenceDescription:
    """The parent's reference to a new child, as asyncua's AddNodes makes it."""
    ref = ua.ReferenceDescription()
    ref.ReferenceTypeId = item.ReferenceTypeId
    ref.NodeId = item.RequestedNewNodeId
    ref.NodeClass = item.NodeClass
    ref.BrowseName = item.BrowseName
    ref.DisplayName = item.NodeAttributes.DisplayName
    ref.TypeDefinition = item.TypeDefinition
    ref.IsForward = True
    return ref


def _inverse(item: ua.AddNodesItem, parent: Any) -> ua.AddReferencesItem:
    """The child's reference back to its parent."""
    ref = ua.AddReferencesItem()
    ref.SourceNodeId = item.RequestedNewNodeId
    ref.TargetNodeId = item.ParentNodeId
    ref.ReferenceTypeId = item.ReferenceTypeId
    ref.IsForward = False
    ref.TargetNodeClass = parent.attributes[ua.AttributeIds.NodeClass].value.Value.Value
    return ref


def _data_value(value: Value, variant: ua.VariantType, source_time: datetime | None,
                now: datetime) -> ua.DataValue:
    if value is None:
        return ua.DataValue(ua.Variant(None), StatusCode=ua.StatusCode(ua.StatusCodes.BadNoData),
                            SourceTimestamp=source_time or now, ServerTimestamp=now)
    return ua.DataValue(ua.Variant(value, variant), SourceTimestamp=source_time or now,
                        ServerTimestamp=now)


def _arguments(specs: Sequence[Any]) -> list[ua.Argument]:
    out = []
    for spec in specs:
        arg = ua.Argument()
        arg.Name = spec.name
        arg.DataType = _DATA_TYPE[spec.dtype]
        arg.ValueRank = -1
        arg.Description = ua.LocalizedText(spec.description)
        out.append(arg)
    return out



