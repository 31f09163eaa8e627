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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.values import (
    DATA_TYPE_IDS,
    VARIANT_TYPES,
    Dt,
    Quality,
    Value,
    data_value,
    node_id,
    status,
)
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.nodes import (
    AGGREGATES,
    CP_PROPERTIES,
    DER_GROUPS,
    DER_PROPERTIES,
    GROUP_QUALITY,
    LDC_PROPERTIES,
    METHODS,
    OBJECT_TYPES,
    VariableSpec,
)

log = logging.getLogger(__name__)

_DATA_TYPE = DATA_TYPE_IDS
_VARIANT = VARIANT_TYPES
_WRITE_CHUNK = 500  # writes between yields: keeps event-loop stalls to a few ms
MethodHandler = Callable[..., Any]


class NodeBatch:
    """AddNodes and AddReferences items for one change of the model, applied together."""

    def __init__(self, ns: int) -> None:
        self.ns = ns
        self.items: list[ua.AddNodesItem] = []
        self.refs: list[ua.AddReferencesItem] = []
        self.variables: dict[str, Dt] = {}
        self.initial: dict[str, tuple[Value, Quality]] = {}
        self.properties: dict[str, set[str]] = {}  # parent ident -> its property names
        self.owners: dict[str, str] = {}  # node ident -> the LDC whose area it belongs to
        self._owner: str | None = None

    def nid(self, ident: str) -> ua.NodeId:
        return node_id(ident, self.ns)

    @contextmanager
    def owned_by(self, ldc_id: str) -> Iterator[None]:
        """Nodes added inside the block belong to `ldc_id`'s area."""
        previous, self._owner = self._owner, ldc_id
        try:
            yield
        finally:
            self._owner = previous

    def obj(self, ident: str, parent: ua.NodeId, name: str, type_id: ua.NodeId,
            ref: int = ObjectIds.Organizes) -> ua.NodeId:
        attrs = ua.ObjectAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        self.items.append(self._item(ident, parent, name, ua.NodeClass.Object, ref, type_id,
                                     attrs))
        self._own(ident)
        return self.nid(ident)

    def var(self, parent_ident: str, spec: VariableSpec, *, prop: bool = False,
            value: Value = None, quality: Quality = Quality.CURRENT) -> None:
        ident = ids.member(parent_ident, spec.name)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(spec.name)
        attrs.Description = ua.LocalizedText(spec.description)
        attrs.DataType = _DATA_TYPE[spec.dtype]
        attrs.ValueRank = 1 if spec.array else -1
        attrs.ArrayDimensions = [0] if spec.array else []
        attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        attrs.MinimumSamplingInterval = 0.0
        ref, type_id = ((ObjectIds.HasProperty, ObjectIds.PropertyType) if prop
                        else (ObjectIds.HasComponent, ObjectIds.BaseDataVariableType))
        self.items.append(self._item(ident, self.nid(parent_ident), spec.name,
                                     ua.NodeClass.Variable, ref, node_id(type_id), attrs))
        if prop:
            self.properties.setdefault(parent_ident, set()).add(spec.name)
        self.variables[ident] = spec.dtype
        self.initial[ident] = (value, quality)
        self._own(ident)

    def _own(self, ident: str) -> None:
        if self._owner is not None:
            self.owners[ident] = self._owner

    def reference(self, source: ua.NodeId, target: ua.NodeId, ref: int,
                  target_class: ua.NodeClass) -> None:
        item = ua.AddReferencesItem()
        item.SourceNodeId, item.TargetNodeId = source, target
        item.ReferenceTypeId = node_id(ref)
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
        item.ReferenceTypeId = node_id(ref)
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
        self._pending: dict[str, tuple[Value, datetime | None, Quality]] = {}
        self._owners: dict[str, str] = {}
        self.types: dict[str, ua.NodeId] = {}
        self.methods: dict[str, ua.NodeId] = {}
        self._static: dict[tuple[Any, ...], ua.DataValue] = {}  # see _share_static

    # -- structure -------------------------------------------------------------------------

    async def build_base(self, handlers: dict[str, MethodHandler]) -> None:
        """Object types, the shared control methods on DerType, and the Fleet folder."""
        base = self.server.nodes.base_object_type
        for name in OBJECT_TYPES:
            node = await base.add_object_type(node_id(ids.object_type(name), self.ns),
                                              ua.QualifiedName(name, self.ns))
            self.types[name] = node.nodeid
        der_type = self.server.get_node(self.types["DerType"])
        for spec in METHODS:
            node = await der_type.add_method(
                node_id(ids.method(spec.name), self.ns), ua.QualifiedName(spec.name, self.ns),
                handlers[spec.name], _arguments(spec.inputs), _arguments(spec.outputs))
            await node.write_attribute(AttributeIds.Description,
                                       ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))))
            self.methods[spec.name] = node.nodeid
        batch = self.batch()
        batch.obj(ids.FLEET, self.server.nodes.objects.nodeid, "DerFleet",
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
        ident = node_id.Identifier
        owner = self._owners.get(ident)
        if owner is None and ident.startswith("der/"):  # e.g. a DER's ConditionId
            owner = self._owners.get(ident.split(".", 1)[0])
        return owner

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
        for ident, (value, quality) in batch.initial.items():
            self.stage(ident, value, quality=quality)

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
                results.append(_result(StatusCodes.BadParentNodeIdInvalid))
                continue
            if item.BrowseName.Name in self._property_names.get(parent_id.Identifier, ()):
                results.append(_result(StatusCodes.BadBrowseNameDuplicated))
                continue
            if item.RequestedNewNodeId in self._aspace:
                results.append(_result(StatusCodes.BadNodeIdExists))
                continue
            item.ParentNodeId = node_id()  # so asyncua adds it without looking at a parent
            try:
                failed = list(self._nodes.try_add_nodes([item], self._session.user, check=False))
            finally:
                item.ParentNodeId = parent_id
            if failed:  # e.g. an unknown type definition
                results.append(_result(StatusCodes.BadNodeIdRejected))
                continue
            parent.references.append(_forward(item))
            await self._session.add_references([_inverse(item, parent)])
            results.append(_result(StatusCodes.Good))
        return results

    def _share_static(self, node_ids: Iterable[ua.NodeId]) -> None:
        """Let nodes share equal values of their fixed attributes (browse and display
        names, data types, access levels, ...): every DER has the same ~37 nodes of ~14
        attributes, and one DataValue, Variant and StatusCode each was ~30 % of the
        gateway's memory at 10,000 DERs. Only the value objects are shared, never asyncua's
        AttributeValue (it holds each node's data-change callbacks). Safe because those
        attributes are written by nobody after creation (operators may write Value only)
        and asyncua replaces a written DataValue rather than changing it."""
        for nid in node_ids:
            node = self._aspace.get(nid)
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

    def add_ldc(self, batch: NodeBatch, ldc_id: str, props: Mapping[str, Value]) -> None:
        ident = ids.ldc(ldc_id)
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(ids.FLEET), ldc_id, self.types["LdcType"])
            for spec in LDC_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            batch.obj(ids.td_folder(ldc_id), batch.nid(ident), "TdNodes",
                      node_id(ObjectIds.FolderType))

    def add_td_node(self, batch: NodeBatch, ldc_id: str, td_node: str) -> None:
        ident = ids.td_node(ldc_id, td_node)
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(ids.td_folder(ldc_id)), td_node,
                      self.types["TdNodeType"])
            self._aggregates(batch, ident)

    def add_cp(self, batch: NodeBatch, cp_id: str, props: Mapping[str, str]) -> None:
        ident = ids.cp(cp_id)
        ldc_id, td_node = props["Ldc"], props["TdNode"]
        with batch.owned_by(ldc_id):
            batch.obj(ident, batch.nid(ids.ldc(ldc_id)), cp_id,
                      self.types["ConnectionPointType"])
            for spec in CP_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            self._aggregates(batch, ident)
        batch.reference(batch.nid(ids.td_node(ldc_id, td_node)), batch.nid(ident),
                        ObjectIds.Organizes, ua.NodeClass.Object)

    def add_der(self, batch: NodeBatch, resource_id: str, cp_id: str, ldc_id: str,
                props: Mapping[str, Value]) -> None:
        ident = ids.der(resource_id)
        with batch.owned_by(ldc_id):
            der = batch.obj(ident, batch.nid(ids.cp(cp_id)), resource_id,
                            self.types["DerType"])
            for spec in DER_PROPERTIES:
                batch.var(ident, spec, prop=True, value=props.get(spec.name))
            for group, specs in DER_GROUPS.items():
                group_ident = ids.member(ident, group)
                batch.obj(group_ident, der, group, node_id(ObjectIds.BaseObjectType),
                          ref=ObjectIds.HasComponent)
                quality = GROUP_QUALITY.get(group, Quality.CURRENT)
                for spec in specs:
                    batch.var(group_ident, spec, quality=quality)
        for method in self.methods.values():
            batch.reference(der, method, ObjectIds.HasComponent, ua.NodeClass.Method)

    def _aggregates(self, batch: NodeBatch, parent_ident: str) -> None:
        group = ids.member(parent_ident, "Aggregates")
        batch.obj(group, batch.nid(parent_ident), "Aggregates",
                  node_id(ObjectIds.BaseObjectType), ref=ObjectIds.HasComponent)
        for spec in AGGREGATES:
            batch.var(group, spec, value=0 if spec.dtype is Dt.UINT32 else 0.0)

    async def move_der(self, resource_id: str, old_cp: str, new_cp: str, ldc_id: str) -> None:
        """Hang a DER under another connection point (and LDC), keeping its nodes: sessions
        that still see it keep their monitored items; the area checks follow the new owner."""
        ident = ids.der(resource_id)
        der, organizes = node_id(ident, self.ns), node_id(ObjectIds.Organizes)
        unlink = ua.DeleteReferencesItem()
        unlink.SourceNodeId, unlink.TargetNodeId = node_id(ids.cp(old_cp), self.ns), der
        unlink.ReferenceTypeId, unlink.IsForward = organizes, True
        unlink.DeleteBidirectional = True
        await self._session.delete_references([unlink])
        links = []
        for source, target, forward in ((ids.cp(new_cp), ident, True),
                                        (ident, ids.cp(new_cp), False)):
            item = ua.AddReferencesItem()
            item.SourceNodeId, item.TargetNodeId = (node_id(source, self.ns),
                                                    node_id(target, self.ns))
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
        ident = ids.der(resource_id)
        unlink = ua.DeleteReferencesItem()
        unlink.SourceNodeId, unlink.TargetNodeId = (node_id(ids.cp(cp_id), self.ns),
                                                    node_id(ident, self.ns))
        unlink.ReferenceTypeId = node_id(ObjectIds.Organizes)
        unlink.IsForward, unlink.DeleteBidirectional = True, True
        await self._session.delete_references([unlink])
        doomed = _der_idents(ident)
        await self._detach_monitors(doomed)
        params = ua.DeleteNodesParameters()
        for key in doomed:  # its nodes reference only each other, types and the methods
            item = ua.DeleteNodesItem()
            item.NodeId, item.DeleteTargetReferences = node_id(key, self.ns), False
            params.NodesToDelete.append(item)
        await self._session.delete_nodes(params)
        for key in doomed:
            self._objects.discard(key)
            self._variables.pop(key, None)
            self._pending.pop(key, None)
            self._owners.pop(key, None)
            self._property_names.pop(key, None)

    async def _detach_monitors(self, idents: list[str]) -> None:
        gone = status(StatusCodes.BadNodeIdUnknown)
        for ident in idents:
            node = self._aspace.get(node_id(ident, self.ns))
            for attribute in node.attributes.values() if node is not None else ():
                for handle, callback in list(attribute.datachange_callbacks.items()):
                    self._aspace.delete_datachange_callback(handle)
                    try:
                        await callback(handle, None, gone)
                    except Exception:  # one subscription's failure must not stop the removal
                        log.exception("opcua: telling monitored item %s of a removal failed",
                                      handle)

    # -- values ----------------------------------------------------------------------------

    def stage(self, ident: str, value: Value, source_time: datetime | None = None,
              quality: Quality = Quality.CURRENT) -> None:
        """Remember a value to publish at the next flush (latest wins)."""
        if ident in self._variables:
            self._pending[ident] = (value, source_time, quality)

    def stage_group(self, parent_ident: str, values: dict[str, Value],
                    source_time: datetime | None = None,
                    quality: Quality = Quality.CURRENT) -> None:
        for name, value in values.items():
            self.stage(ids.member(parent_ident, name), value, source_time, quality)

    def restage(self, ident: str, quality: Quality) -> None:
        """Publish a variable's latest value again with another quality (e.g. the DER it
        comes from became unreachable): its value and source time stay what they were."""
        if ident not in self._variables:
            return
        staged = self._pending.get(ident)
        if staged is not None:
            self._pending[ident] = (staged[0], staged[1], quality)
            return
        current = self.read(ident)
        value = current.Value.Value if current.Value is not None else None
        self._pending[ident] = (value, current.SourceTimestamp, quality)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write every staged value; data-change notifications follow from asyncua."""
        staged, self._pending = self._pending, {}
        now = datetime.now(UTC)
        for count, (ident, (value, source_time, quality)) in enumerate(staged.items(), 1):
            known = self._variables.get(ident)
            if known is None:
                continue
            nid, variant = known
            await self._write(nid, data_value(value, variant, quality, source_time, now))
            if count % _WRITE_CHUNK == 0:
                await asyncio.sleep(0)
        return len(staged)

    async def _write(self, nid: ua.NodeId, value: ua.DataValue) -> None:
        """asyncua's write without its type check (our values are typed by the model, and it
        would refuse a null value with a Good or Uncertain status); then the data-change
        callbacks, as asyncua does."""
        node = self._aspace.get(nid)
        if node is None:
            return
        held = node.attributes[AttributeIds.Value]
        held.value = value
        for handle, callback in list(held.datachange_callbacks.items()):
            try:
                await callback(handle, value)
            except Exception:  # one subscription's failure must not stop the others
                log.exception("opcua: data-change callback %s failed", handle)

    def read(self, ident: str) -> ua.DataValue:
        nid, _ = self._variables[ident]
        return self.server.read_attribute_value(nid)


_SHARED_REFERENCE_FIELDS = ("ReferenceTypeId", "BrowseName", "DisplayName", "TypeDefinition")
# Attributes each node has its own of: never shared.
_OWN_ATTRIBUTES = frozenset({AttributeIds.NodeId, AttributeIds.Value})


def _static_key(attr: AttributeIds, dv: ua.DataValue) -> tuple[Any, ...] | None:
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
    out = [ident, *(ids.member(ident, spec.name) for spec in DER_PROPERTIES)]
    for group, specs in DER_GROUPS.items():
        group_ident = ids.member(ident, group)
        out += [group_ident, *(ids.member(group_ident, spec.name) for spec in specs)]
    return out


def _result(code: int) -> ua.AddNodesResult:
    result = ua.AddNodesResult()
    result.StatusCode = status(code)
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
    ref.TargetNodeClass = parent.attributes[AttributeIds.NodeClass].value.Value.Value
    return ref


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



