"""Our part of the asyncua address space: made on demand, and its values written in batches.

asyncua keeps its nodes in one mapping (`AddressSpace._nodes`); ours is `LazyNodes`, which
holds asyncua's own nodes (the standard ones, our types and methods) as they are, and makes
the DER model's nodes when asyncua first looks one up (`shapes.Shapes.make`). A made node is
kept while it is useful - always while a monitored item samples its Value, otherwise in a
bounded cache (the oldest go first) - and made again, from the fleet, when needed after that.
So the model costs nothing per DER until a session touches it, and what it costs then is
bounded by what the sessions use.

Values are staged (latest wins) and written in one pass by `flush()`; a value is staged only
for a node that exists now - any other is made with the fleet's current value when needed.
Structure (which DERs hang under which connection point, which LDCs exist) comes from the
fleet too: `changed()` drops the objects whose references changed, and a kept object with
monitored items is made again at once, its items carried over.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.server.address_space import NodeData
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from adapters.opcua.codec.values import Quality, Value
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.nodes import (
    DER_GROUPS,
    DER_PROPERTIES,
    METHODS,
    OBJECT_TYPES,
)
from adapters.opcua.model.shapes import FleetView, Shapes
from adapters.opcua.model.wire import (
    DATA_TYPE_IDS,
    VARIANT_TYPES,
    data_value,
    node_id,
    status,
)

log = logging.getLogger(__name__)

_WRITE_CHUNK = 500  # writes between yields: keeps event-loop stalls to a few ms
MethodHandler = Callable[..., Any]


class LazyNodes(MutableMapping[ua.NodeId, NodeData]):
    """asyncua's node mapping: its own nodes as given, ours made on first lookup."""

    def __init__(self, base: MutableMapping[ua.NodeId, NodeData], ns: int,
                 make: Callable[[str], NodeData | None], capacity: int,
                 shared: Callable[[object], bool]) -> None:
        self._base = base
        self._ns = ns
        self._make = make
        self._capacity = capacity
        self._shared = shared  # attribute values every node of a shape shares
        self.cache: dict[str, NodeData] = {}  # made nodes, oldest first
        self.pinned: dict[str, NodeData] = {}  # made nodes with monitored items

    def _ident(self, key: ua.NodeId) -> str | None:
        if key.NamespaceIndex == self._ns and isinstance(key.Identifier, str):
            return key.Identifier
        return None

    def made(self, ident: str) -> NodeData | None:
        """A node of ours that exists now (never makes one)."""
        return self.cache.get(ident) or self.pinned.get(ident)

    def get(self, key: ua.NodeId, default: Any = None) -> Any:
        node = self._base.get(key)
        if node is not None:
            return node
        ident = self._ident(key)
        if ident is None:
            return default
        node = self.made(ident)
        if node is None:
            node = self._make(ident)
            if node is None:
                return default
            self._remember(ident, node)
        return node

    def __getitem__(self, key: ua.NodeId) -> NodeData:
        node = self.get(key)
        if node is None:
            raise KeyError(key)
        return node  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, ua.NodeId) and self.get(key) is not None

    def __setitem__(self, key: ua.NodeId, value: NodeData) -> None:
        self._base[key] = value  # asyncua adds only its own (and our types, methods)

    def __delitem__(self, key: ua.NodeId) -> None:
        ident = self._ident(key)
        if ident is not None and self.drop(ident) is not None:
            return
        del self._base[key]

    def __iter__(self) -> Iterator[ua.NodeId]:
        made = (node.nodeid for node in itertools.chain(self.cache.values(),
                                                        self.pinned.values()))
        return itertools.chain(iter(self._base), made)

    def __len__(self) -> int:
        return len(self._base) + len(self.cache) + len(self.pinned)

    def drop(self, ident: str) -> NodeData | None:
        return self.cache.pop(ident, None) or self.pinned.pop(ident, None)

    def keep(self, ident: str, node: NodeData) -> None:
        """A node made again: kept pinned if it has monitored items."""
        (self.pinned if self.sampled(node) else self.cache)[ident] = node

    def sampled(self, node: NodeData) -> bool:
        """Whether a monitored item samples one of the node's own attributes."""
        return any(held.datachange_callbacks for held in node.attributes.values()
                   if not self._shared(held))

    def _remember(self, ident: str, node: NodeData) -> None:
        self.cache[ident] = node
        if len(self.cache) > self._capacity:
            self._evict(max(1, self._capacity // 10))

    def _evict(self, count: int) -> None:
        for ident in list(itertools.islice(self.cache, count)):
            node = self.cache.pop(ident)
            if self.sampled(node):
                self.pinned[ident] = node

    def sweep(self) -> None:
        """Pinned nodes whose monitored items are gone go back to the cache."""
        for ident, node in list(self.pinned.items()):
            if not self.sampled(node):
                del self.pinned[ident]
                self.cache[ident] = node


class AddressSpace:
    """The DER model in one asyncua server's address space."""

    def __init__(self, server: Server, ns: int, fleet: FleetView, *,
                 capacity: int = 20_000) -> None:
        self.server = server
        self.ns = ns
        self._fleet = fleet
        self._capacity = capacity
        self._aspace = server.iserver.aspace
        self._pending: dict[str, tuple[Value, datetime | None, Quality]] = {}
        self.types: dict[str, ua.NodeId] = {}
        self.methods: dict[str, ua.NodeId] = {}
        self.shapes: Shapes | None = None
        self.nodes: LazyNodes | None = None

    # -- structure -------------------------------------------------------------------------

    async def build_base(self, handlers: Mapping[str, MethodHandler]) -> None:
        """Object types, the shared control methods on DerType, and the lazy nodes."""
        base = self.server.nodes.base_object_type
        for name in OBJECT_TYPES:
            node = await base.add_object_type(node_id(ids.object_type(name), self.ns),
                                              ua.QualifiedName(name, self.ns))
            self.types[name] = node.nodeid
        der_type = self.server.get_node(self.types["DerType"])
        for spec in METHODS:
            node = await der_type.add_method(
                node_id(ids.method(spec.name), self.ns),
                ua.QualifiedName(spec.name, self.ns),
                handlers[spec.name], _arguments(spec.inputs), _arguments(spec.outputs))
            await node.write_attribute(AttributeIds.Description,
                                       ua.DataValue(ua.Variant(ua.LocalizedText(spec.description))))
            self.methods[spec.name] = node.nodeid
        shapes = Shapes(self.ns, self._fleet, self.types, self.methods)
        self.shapes = shapes
        self.nodes = LazyNodes(self._aspace._nodes, self.ns, shapes.make, self._capacity,
                               shapes.is_shared)
        self._aspace._nodes = self.nodes  # type: ignore[assignment]
        objects = self._aspace[node_id(ObjectIds.ObjectsFolder)]
        objects.references.append(shapes.fleet_reference())

    def owner(self, nid: ua.NodeId) -> str | None:
        """The LDC whose area a node of ours belongs to; None for shared nodes (the fleet
        folder, types, methods), for other namespaces and for nodes that do not exist."""
        if nid.NamespaceIndex != self.ns or not isinstance(nid.Identifier, str):
            return None
        ref = ids.parse(nid.Identifier, self._fleet)
        return None if ref is None else self._fleet_owner(ref)

    @property
    def generation(self) -> int:
        """Changes whenever a node's owner may have changed."""
        return self._fleet.generation

    def _fleet_owner(self, ref: ids.NodeRef) -> str | None:
        if ref.kind == "der":
            return self._fleet.owner(ref.key)
        if ref.kind == "cp":
            return self._fleet.cp_place(ref.key)[0]
        if ref.kind in {"ldc", "tdfolder"}:
            return ref.key
        if ref.kind == "td":
            return ids.split_td_key(ref.key)[0]
        return None

    def made(self, ident: str) -> bool:
        return self.nodes is not None and self.nodes.made(ident) is not None

    def changed(self, idents: Iterable[str]) -> None:
        """Objects whose references changed: dropped, or made again now if monitored."""
        if self.nodes is None or self.shapes is None:
            return
        for ident in set(idents):
            old = self.nodes.drop(ident)
            if old is None or not self.nodes.sampled(old):
                continue
            new = self.shapes.make(ident)
            if new is None:
                continue  # gone: its items hear of it from remove_der / the area follower
            for attr, held in old.attributes.items():
                if held.datachange_callbacks and new.attributes.get(attr) is not held:
                    new.attributes[attr].datachange_callbacks.update(held.datachange_callbacks)
                if attr is AttributeIds.Value and held.value is not None:
                    new.attributes[attr].value = held.value
            self.nodes.keep(ident, new)

    async def remove_der(self, resource_id: str) -> None:
        """A DER left the fleet: its nodes go. Monitored items on them get one
        Bad_NodeIdUnknown value and then nothing (OPC UA Part 4: an item whose node is
        deleted reports Bad_NodeIdUnknown); they are told here."""
        if self.nodes is None:
            return
        gone = status(StatusCodes.BadNodeIdUnknown)
        for ident in _der_idents(ids.der(resource_id)):
            node = self.nodes.made(ident)
            if node is None:
                continue
            for held in node.attributes.values():
                for handle, callback in list(held.datachange_callbacks.items()):
                    self._aspace.delete_datachange_callback(handle)
                    try:
                        await callback(handle, None, gone)
                    except Exception:  # one subscription's failure must not stop the removal
                        log.exception("opcua: telling monitored item %s of a removal failed",
                                      handle)
            self.nodes.drop(ident)
            self._pending.pop(ident, None)

    def sweep(self) -> None:
        if self.nodes is not None:
            self.nodes.sweep()

    # -- values ----------------------------------------------------------------------------

    def stage(self, ident: str, value: Value, source_time: datetime | None = None,
              quality: Quality = Quality.CURRENT) -> None:
        """Remember a value to publish at the next flush (latest wins), if the node exists."""
        if self.nodes is not None and self.nodes.made(ident) is not None:
            self._pending[ident] = (value, source_time, quality)

    def stage_group(self, parent_ident: str, values: Mapping[str, Value],
                    source_time: datetime | None = None,
                    quality: Quality = Quality.CURRENT) -> None:
        if self.nodes is None:
            return
        for name, value in values.items():
            self.stage(ids.member(parent_ident, name), value, source_time, quality)

    def restage(self, ident: str, quality: Quality) -> None:
        """Publish a variable's latest value again with another quality (e.g. the DER it
        comes from became unreachable): its value and source time stay what they were."""
        node = self.nodes.made(ident) if self.nodes is not None else None
        if node is None:
            return
        staged = self._pending.get(ident)
        if staged is not None:
            self._pending[ident] = (staged[0], staged[1], quality)
            return
        current = node.attributes[AttributeIds.Value].value
        value = current.Value.Value if current is not None and current.Value is not None \
            else None
        source = current.SourceTimestamp if current is not None else None
        self._pending[ident] = (value, source, quality)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write every staged value; data-change notifications follow."""
        staged, self._pending = self._pending, {}
        now = datetime.now(UTC)
        written = 0
        for ident, (value, source_time, quality) in staged.items():
            node = self.nodes.made(ident) if self.nodes is not None else None
            if node is None:
                continue
            held = node.attributes.get(AttributeIds.Value)
            if held is None:
                continue
            variant = _VARIANT_OF_DATATYPE.get(_data_type(node), ua.VariantType.Null)
            dv = data_value(value, variant, quality, source_time, now)
            held.value = dv
            for handle, callback in list(held.datachange_callbacks.items()):
                try:
                    await callback(handle, dv)
                except Exception:  # one subscription's failure must not stop the others
                    log.exception("opcua: data-change callback %s failed", handle)
            written += 1
            if written % _WRITE_CHUNK == 0:
                await asyncio.sleep(0)
        return written

    def read(self, ident: str) -> ua.DataValue:
        """The current value of a variable (made if it is not)."""
        return self._aspace.read_attribute_value(node_id(ident, self.ns), AttributeIds.Value)


_VARIANT_OF_DATATYPE: dict[object, ua.VariantType] = {
    DATA_TYPE_IDS[dt].Identifier: VARIANT_TYPES[dt] for dt in DATA_TYPE_IDS}


def _data_type(node: NodeData) -> object:
    held = node.attributes.get(AttributeIds.DataType)
    if held is None or held.value is None or held.value.Value is None:
        return None
    return getattr(held.value.Value.Value, "Identifier", None)


def _der_idents(ident: str) -> list[str]:
    """Every node of one DER, without scanning the model."""
    out = [ident, *(ids.member(ident, spec.name) for spec in DER_PROPERTIES)]
    for group, specs in DER_GROUPS.items():
        group_ident = ids.member(ident, group)
        out += [group_ident, *(ids.member(group_ident, spec.name) for spec in specs)]
    return out


def _arguments(specs: Sequence[Any]) -> list[ua.Argument]:
    out = []
    for spec in specs:
        arg = ua.Argument()
        arg.Name = spec.name
        arg.DataType = DATA_TYPE_IDS[spec.dtype]
        arg.ValueRank = -1
        arg.Description = ua.LocalizedText(spec.description)
        out.append(arg)
    return out

