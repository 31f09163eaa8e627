"""Who sits where: LDC hierarchy, connection points, DERs, and target resolution."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gateway.domain import (
    ConnectionPoint,
    DsoModel,
    Participant,
    Resource,
    Role,
    Target,
    TargetKind,
)


@dataclass
class Topology:
    participants: Mapping[str, Participant]
    connection_points: Mapping[str, ConnectionPoint]
    resources: Mapping[str, Resource]
    _by_cp: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _by_node: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _by_feeder: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _by_ldc: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _children: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _by_aggregator: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _ldc_cache: dict[str, Participant | None] = field(default_factory=dict, init=False,
                                                       repr=False)

    def __post_init__(self) -> None:
        by_cp: dict[str, list[str]] = defaultdict(list)
        by_node: dict[str, list[str]] = defaultdict(list)
        by_feeder: dict[str, list[str]] = defaultdict(list)
        by_ldc: dict[str, list[str]] = defaultdict(list)
        by_aggregator: dict[str, list[str]] = defaultdict(list)
        for rid, res in self.resources.items():
            cp = self.connection_points.get(res.connection_point_id)
            by_cp[res.connection_point_id].append(rid)
            if res.aggregator_id:
                by_aggregator[res.aggregator_id].append(rid)
            if cp is None:
                continue
            by_node[cp.td_node].append(rid)
            if cp.feeder:
                by_feeder[cp.feeder].append(rid)
            by_ldc[cp.ldc_id].append(rid)
        children: dict[str, list[str]] = defaultdict(list)
        for p in self.participants.values():
            if p.role is Role.LDC and p.host_ldc_id:
                children[p.host_ldc_id].append(p.id)
        self._by_cp, self._by_node, self._by_feeder = dict(by_cp), dict(by_node), dict(by_feeder)
        self._by_ldc, self._children = dict(by_ldc), dict(children)
        self._by_aggregator = dict(by_aggregator)

    def aggregator_resource_ids(self, aggregator_id: str) -> list[str]:
        """The DERs an aggregator registered (an aggregator's client asks for its own among
        a platform's hundred thousand)."""
        return self._by_aggregator.get(aggregator_id, [])

    def with_resources(self, added: Iterable[Resource]) -> Topology:
        """The same topology with these DERs added (or replaced): indexed again in memory,
        which is far cheaper than reading every DER from the store."""
        return Topology(self.participants, self.connection_points,
                        {**self.resources, **{r.id: r for r in added}})

    def with_online(self, flags: Mapping[str, bool]) -> Topology:
        """The same topology with some DERs' online flags changed: the indexes do not depend
        on them, so they are shared, not rebuilt (thousands of DERs come online in waves)."""
        resources = dict(self.resources)
        for rid, online in flags.items():
            found = resources.get(rid)
            if found is not None:
                resources[rid] = replace(found, online=online)
        new = object.__new__(Topology)
        new.participants, new.connection_points, new.resources = (
            self.participants, self.connection_points, resources)
        new._by_cp, new._by_node, new._by_feeder = self._by_cp, self._by_node, self._by_feeder
        new._by_ldc, new._children = self._by_ldc, self._children
        new._by_aggregator = self._by_aggregator
        new._ldc_cache = dict(self._ldc_cache)
        return new

    # -- LDC hierarchy -------------------------------------------------------------------

    def ldc_of(self, resource_id: str) -> Participant | None:
        cached = self._ldc_cache.get(resource_id, False)
        if cached is not False:
            return cached  # type: ignore[return-value]
        res = self.resources.get(resource_id)
        cp = self.connection_points.get(res.connection_point_id) if res else None
        found = self.participants.get(cp.ldc_id) if cp else None
        self._ldc_cache[resource_id] = found
        return found

    def hosts_of(self, ldc_id: str) -> list[str]:
        """The chain of host LDCs above `ldc_id`, nearest first (cycle-safe)."""
        chain: list[str] = []
        current = self.participants.get(ldc_id)
        while current and current.host_ldc_id and current.host_ldc_id not in chain:
            chain.append(current.host_ldc_id)
            current = self.participants.get(current.host_ldc_id)
        return chain

    def area_ldcs(self, ldc_id: str) -> list[str]:
        """An LDC and every LDC embedded below it."""
        out, todo = [], [ldc_id]
        while todo:
            current = todo.pop()
            if current in out:
                continue
            out.append(current)
            todo.extend(self._children.get(current, ()))
        return out

    def root_ldc(self, ldc_id: str) -> str:
        hosts = self.hosts_of(ldc_id)
        return hosts[-1] if hosts else ldc_id

    def dso_model(self, resource_id: str) -> DsoModel | None:
        ldc = self.ldc_of(resource_id)
        return ldc.dso_model if ldc else None

    # -- targets -------------------------------------------------------------------------

    def resolve(self, target: Target) -> list[str]:
        """The DERs an instruction on `target` applies to, in a stable order."""
        match target.kind:
            case TargetKind.RESOURCE:
                return [target.id] if target.id in self.resources else []
            case TargetKind.CONNECTION_POINT:
                return list(self._by_cp.get(target.id, ()))
            case TargetKind.NODE:
                return list(self._by_node.get(target.id, ()))
            case TargetKind.FEEDER:
                return list(self._by_feeder.get(target.id, ()))
            case TargetKind.AREA:
                out: list[str] = []
                for ldc in self.area_ldcs(target.id):
                    out.extend(self._by_ldc.get(ldc, ()))
                return out
        return []

    def target_ldcs(self, target: Target) -> set[str]:
        """The LDCs whose DERs a target touches (for authorisation and recompute scope)."""
        match target.kind:
            case TargetKind.RESOURCE:
                ldc = self.ldc_of(target.id)
                return {ldc.id} if ldc else set()
            case TargetKind.CONNECTION_POINT:
                cp = self.connection_points.get(target.id)
                return {cp.ldc_id} if cp else set()
            case TargetKind.AREA:
                return set(self.area_ldcs(target.id)) if target.id in self.participants else set()
        ldcs: set[str] = set()
        for rid in self.resolve(target):
            ldc = self.ldc_of(rid)
            if ldc:
                ldcs.add(ldc.id)
        return ldcs

    def target_exists(self, target: Target) -> bool:
        match target.kind:
            case TargetKind.RESOURCE:
                return target.id in self.resources
            case TargetKind.CONNECTION_POINT:
                return target.id in self.connection_points
            case TargetKind.NODE:
                return any(cp.td_node == target.id for cp in self.connection_points.values())
            case TargetKind.FEEDER:
                return any(cp.feeder == target.id for cp in self.connection_points.values())
            case TargetKind.AREA:
                p = self.participants.get(target.id)
                return p is not None and p.role is Role.LDC
        return False

    def component(self, ldc_ids: Iterable[str]) -> set[str]:
        """Every DER that shares an LDC tree with the given LDCs: the recompute scope."""
        roots = {self.root_ldc(ldc) for ldc in ldc_ids}
        out: set[str] = set()
        for root in roots:
            for ldc in self.area_ldcs(root):
                out.update(self._by_ldc.get(ldc, ()))
        return out
