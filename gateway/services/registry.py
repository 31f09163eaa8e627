"""Where DERs sit and how they are reached: connection points and DERs (resources).

Who may change what about a DER (least privilege, docs/core.md):
- an aggregator registers its own DERs, and may change their kind and binding (how the
  gateway reaches them); where a DER sits (its connection point, hence its LDC) and its
  nameplate decide how a DSO's limits apply and how group caps are shared, so once it is
  registered those are changed only by the LDC of its area (or the admin);
- an aggregator may not remove a DER while a control issued by someone else is in force
  or coming for it (the LDC, or the issuer's cancellation, decides that); the LDC may.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway import authz
from gateway.coordination.topology import Topology
from gateway.domain import ConnectionPoint, Participant, Resource, Role, utcnow
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.events import Topic
from gateway.services.unit import UnitOfWork
from gateway.store import repo


class Registry:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    # -- connection points -----------------------------------------------------------------

    async def connection_point(self, cp_id: str) -> ConnectionPoint | None:
        return (await self._uow.topology()).connection_points.get(cp_id)

    async def connection_points(self, actor: Participant) -> list[ConnectionPoint]:
        topo = await self._uow.topology()
        cps = sorted(topo.connection_points.values(), key=lambda c: c.id)
        if actor.role in {Role.ADMIN, Role.ISO}:
            return cps
        if actor.role in {Role.LDC, Role.SCADA}:
            ldc_id = (actor.ldc_id if actor.role is Role.SCADA else actor.id) or ""
            area = set(topo.area_ldcs(ldc_id))
            return [c for c in cps if c.ldc_id in area]
        visible = {topo.resources[r].connection_point_id for r in authz.area_of(actor, topo) or ()}
        return [c for c in cps if c.id in visible]

    async def register_connection_points(self, actor: Participant,
                                         cps: Sequence[ConnectionPoint]) -> list[ConnectionPoint]:
        topo = await self._uow.topology()
        for cp in cps:
            ldc = topo.participants.get(cp.ldc_id)
            if ldc is None or ldc.role is not Role.LDC:
                raise InvalidInput(f"connection point {cp.id}: no LDC {cp.ldc_id!r}")
            require_area(actor, topo, cp.ldc_id)
        try:
            async with self._uow.write(topology=True) as session:
                await repo.add_connection_points(session, cps)
                await repo.add_outbox(session, Topic.TOPOLOGY_CHANGED,
                                      {"connection_point_ids": [c.id for c in cps]})
        except IntegrityError as exc:
            raise Conflict("a connection point with that id already exists") from exc
        finally:
            self._uow.invalidate()
        self._uow.committed()
        return list(cps)

    # -- DERs ------------------------------------------------------------------------------

    async def resource(self, resource_id: str) -> Resource | None:
        return (await self._uow.topology()).resources.get(resource_id)

    async def resources(self, *, protocol: str | None = None, aggregator_id: str | None = None,
                        ids: Iterable[str] | None = None) -> list[Resource]:
        topo = await self._uow.topology()
        # Look up the ids asked for, filter, then sort only what matched (adapters ask for a
        # few DERs, or one protocol's, out of tens of thousands).
        if ids is None and aggregator_id is not None:
            ids = topo.aggregator_resource_ids(aggregator_id)
        pool = topo.resources.values() if ids is None else \
            [r for rid in set(ids) if (r := topo.resources.get(rid)) is not None]
        return sorted((r for r in pool
                       if (protocol is None or r.binding.protocol == protocol)
                       and (aggregator_id is None or r.aggregator_id == aggregator_id)),
                      key=lambda r: r.id)

    async def visible_resources(self, actor: Participant) -> list[Resource]:
        topo = await self._uow.topology()
        area = authz.area_of(actor, topo)
        return [r for rid, r in sorted(topo.resources.items()) if area is None or rid in area]

    async def find_resources(self, protocol: str, **address: Any) -> list[Resource]:
        def matches(value: Any, wanted: Any) -> bool:
            if isinstance(value, str) and isinstance(wanted, str):
                return value.casefold() == wanted.casefold()
            return bool(value == wanted)

        return [r for r in await self.resources(protocol=protocol)
                if all(matches(r.binding.address.get(k), v) for k, v in address.items())]

    async def register_resources(self, actor: Participant, resources: Sequence[Resource]
                                 ) -> list[Resource]:
        topo = await self._uow.topology()
        if len({r.id for r in resources}) != len(resources):
            raise InvalidInput("duplicate resource id in the request")
        keys: dict[str, str] = {}
        for r in resources:
            cp = topo.connection_points.get(r.connection_point_id)
            if cp is None:
                raise InvalidInput(
                    f"resource {r.id}: no connection point {r.connection_point_id!r}")
            _check_aggregator(r, topo)
            keys[r.id] = self._uow.bindings.key(r.binding)
            if actor.role is Role.AGGREGATOR:
                if r.aggregator_id != actor.id:
                    raise Forbidden("an aggregator registers only its own resources")
            else:
                require_area(actor, topo, cp.ldc_id)
        ldcs = {topo.connection_points[r.connection_point_id].ldc_id for r in resources}
        try:
            async with self._uow.write(topology=True) as session:
                await repo.add_resources(session, resources, keys)
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED, {"resource_id": r.id, "protocol": r.binding.protocol})
                    for r in resources])
                self._uow.added_resources(resources)
                await self._uow.recompute(session, ldcs)
        except IntegrityError as exc:
            self._uow.invalidate()
            raise Conflict("a resource with that id or protocol address already exists") from exc
        except BaseException:
            self._uow.invalidate()
            raise
        self._uow.committed()
        return list(resources)

    async def update_resource(self, actor: Participant, resource: Resource) -> Resource:
        """Replace a DER's registration (ratings, kind, binding, connection point)."""
        topo = await self._uow.topology()
        current = topo.resources.get(resource.id)
        if current is None:
            raise NotFound(f"no resource {resource.id!r}")
        cp = topo.connection_points.get(resource.connection_point_id)
        if cp is None:
            raise InvalidInput(f"no connection point {resource.connection_point_id!r}")
        _check_aggregator(resource, topo)
        old_ldc = topo.connection_points[current.connection_point_id].ldc_id
        if actor.role is Role.AGGREGATOR:
            if {current.aggregator_id, resource.aggregator_id} != {actor.id}:
                raise Forbidden("an aggregator updates only its own resources")
            if resource.connection_point_id != current.connection_point_id:
                raise Forbidden(f"where a DER sits is its LDC's to change: ask {old_ldc}")
            if resource.nameplate != current.nameplate:
                raise Forbidden("a registered DER's nameplate decides its share of group caps: "
                                f"its LDC ({old_ldc}) changes it")
        else:
            require_area(actor, topo, old_ldc)
            require_area(actor, topo, cp.ldc_id)
        key = self._uow.bindings.key(resource.binding)
        kept = replace(resource, online=current.online)
        try:
            async with self._uow.write(topology=True) as session:
                await repo.update_resource(session, kept, key)
                await repo.add_outbox(session, Topic.RESOURCE_CHANGED,
                                      {"resource_id": resource.id,
                                       "protocol": resource.binding.protocol})
                self._uow.invalidate()
                await self._uow.recompute(session, {cp.ldc_id, old_ldc})
        except IntegrityError as exc:
            raise Conflict("another resource has that protocol address") from exc
        finally:
            self._uow.invalidate()
        self._uow.committed()
        return kept

    async def delete_resource(self, actor: Participant, resource_id: str) -> None:
        topo = await self._uow.topology()
        current = topo.resources.get(resource_id)
        if current is None:
            raise NotFound(f"no resource {resource_id!r}")
        ldc = topo.connection_points[current.connection_point_id].ldc_id
        if actor.role is Role.AGGREGATOR:
            if current.aggregator_id != actor.id:
                raise Forbidden("an aggregator removes only its own resources")
            others = await self._others_controls(resource_id, actor.id)
            if others:
                raise Conflict(f"{resource_id} is under control of {', '.join(others)}: its "
                               f"LDC ({ldc}) may remove it, or the issuers cancel first")
        else:
            require_area(actor, topo, ldc)
        try:
            async with self._uow.write(topology=True) as session:
                await repo.delete_resource(session, resource_id)
                protocol = current.binding.protocol
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED,
                     {"resource_id": resource_id, "protocol": protocol, "deleted": True}),
                    (Topic.EFFECTIVE_CONTROL_CHANGED,
                     {"resource_id": resource_id, "protocol": protocol})])
                self._uow.invalidate()
                await self._uow.recompute(session, {ldc})
        finally:
            self._uow.invalidate()
        self._uow.forget_control(resource_id)
        self._uow.committed()

    async def _others_controls(self, resource_id: str, aggregator_id: str) -> list[str]:
        """Issuers other than the aggregator whose controls are in force or coming."""
        async with self._uow.db.read() as session:
            control = await repo.control(session, resource_id)
        if control is None:
            return []
        now = utcnow()
        issuers = {s.issuer_id for i in control.intervals if i.end is None or i.end > now
                   for s in i.sources}
        for source in (control.default_source, control.function_source):
            if source is not None:
                issuers.add(source.issuer_id)
        issuers.discard(aggregator_id)
        return sorted(issuers)

    async def update_binding_settings(self, resource_id: str, settings: dict[str, Any]
                                      ) -> Resource:
        """Protocol settings kept with a binding (e.g. a 2030.5 pollRate): adapters only."""
        res = await self.resource(resource_id)
        if res is None:
            raise NotFound(f"no resource {resource_id!r}")
        binding = replace(res.binding, address={**res.binding.address, "settings": settings})
        async with self._uow.write(topology=True) as session:
            await repo.update_binding(session, resource_id, binding,
                                      self._uow.bindings.key(binding))
            await repo.add_outbox(session, Topic.RESOURCE_CHANGED,
                                  {"resource_id": resource_id, "protocol": binding.protocol})
        self._uow.invalidate()
        self._uow.committed()
        return replace(res, binding=binding)

    async def set_online_many(self, marks: dict[str, bool]) -> dict[str, bool]:
        """Record whether DERs are reachable, all in one transaction with one recompute of
        the LDC trees they sit in (one at a time, thousands of devices coming online each
        reloaded the topology and recomputed their whole area). Unknown ids are skipped;
        returns the flags that changed. A first contact (nothing known -> online) changes
        no control - a DER not yet heard from counts as available - so it recomputes
        nothing."""
        if not marks:
            return {}
        try:
            async with self._uow.write(topology=True) as session:
                flips = await repo.set_online(session, marks)
                if not flips:  # (repeats: Modbus devices report each pass's reach)
                    self._uow.unchanged()
                    return {}
                changed = {rid: online for rid, (_, online) in flips.items()}
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED, {"resource_id": rid, "online": online})
                    for rid, online in changed.items()])
                available = [rid for rid, (was, online) in flips.items()
                             if (was is not False) != online]
                self._uow.flags_changed(changed)
                if available:
                    topo = await self._uow.topology(session)
                    await self._uow.recompute(session, {
                        ldc.id for rid in available if (ldc := topo.ldc_of(rid)) is not None})
        except BaseException:
            self._uow.invalidate()  # the cached topology may hold flags rolled back
            raise
        self._uow.committed()
        return changed


def _check_aggregator(resource: Resource, topo: Topology) -> None:
    if resource.aggregator_id is not None:
        agg = topo.participants.get(resource.aggregator_id)
        if agg is None or agg.role is not Role.AGGREGATOR:
            raise InvalidInput(f"resource {resource.id}: no aggregator "
                               f"{resource.aggregator_id!r}")


def require_area(actor: Participant, topo: Topology, ldc_id: str) -> None:
    if actor.role is Role.ADMIN:
        return
    if actor.role is Role.LDC and ldc_id in topo.area_ldcs(actor.id):
        return
    raise Forbidden(f"{actor.id} may not change things in LDC {ldc_id}'s area")
