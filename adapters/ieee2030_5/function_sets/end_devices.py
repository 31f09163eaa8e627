"""EndDevices: which exist, who may see them, and registration (out-of-band and in-band).

Out-of-band: the platform registers a canonical Resource bound to this adapter and
address {"lfdi", "sfdi", "pin"?}; its EndDevice record is made on first sight. In-band: a
client POSTs an EndDevice; it becomes a canonical Resource once it names a known
connection point (CSIP-AUS ConnectionPoint) or `inband_connection_point` is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.function_sets import nmi
from adapters.ieee2030_5.function_sets.scope import ClientIdentity, ClientScope, scope_for
from adapters.ieee2030_5.settings import Settings
from adapters.ieee2030_5.state import AdapterState, EndDeviceRecord
from gateway.domain import Binding, ConnectionPoint, DerKind, Nameplate, Participant, Resource, Role
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.ports import GatewayPort

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Visible:
    """The EndDevices a client may see: by id, their ids and LFDIs, and how many are DERs'."""

    rows: list[EndDeviceRecord]
    ids: frozenset[int]
    lfdis: frozenset[str]
    ders: int


class EndDeviceRegistry:
    def __init__(self, gateway: GatewayPort, state: AdapterState, config: Settings,
                 protocol: str) -> None:
        self.gateway = gateway
        self.protocol = protocol
        self.state = state
        self.default_pin = config.default_pin
        self.inband_cp = config.inband_connection_point
        self.inband_owner = config.inband_owner
        self.allow_inband = config.allow_inband_registration
        self.sync_interval_s = config.sync_interval_s
        self._by_id: dict[int, EndDeviceRecord] = {}
        self._by_resource: dict[str, EndDeviceRecord] = {}
        # By id within each group (in the order indexed): taking one out is a dict pop, not
        # a scan comparing records field by field (an aggregator holds tens of thousands).
        self._by_lfdi: defaultdict[str, dict[int, EndDeviceRecord]] = defaultdict(dict)
        self._by_aggregator: defaultdict[str, dict[int, EndDeviceRecord]] = defaultdict(dict)
        # Each aggregator's own EndDevices (one per client certificate): a handful, asked for
        # every notification of each of its DERs.
        self._own: defaultdict[str, dict[int, EndDeviceRecord]] = defaultdict(dict)
        self._aggregators: dict[str, str] = {}  # granted aggregator client LFDI -> aggregator
        self._denied: set[str] = set()  # client LFDIs whose access the platform revoked
        # client LFDI (or an aggregator's shared key) -> monotonic time of its last sync
        self._synced: dict[str, float] = {}
        # What each client sees, by id, is asked on every request: kept until the index
        # changes (an aggregator's list can hold thousands of EndDevices).
        self._generation = 0
        self._visible: dict[tuple[str, str | None], tuple[int, Visible]] = {}
        # Ids read from the store and not found there, until EndDevices next change: probing
        # unknown ids costs one read each, not one per request.
        self._absent: set[int] = set()
        # Creating an EndDevice is check-then-write across an await: the bus follower and a
        # polling client may race for the same DER, so creation is serialised.
        self._creating = asyncio.Lock()
        # Whether this process makes the EndDevices of the platform's DERs: with several
        # processes only the one that renders does (two would give one DER two EndDevices);
        # the others read what it made.
        self.renders = True

    # --- loading and syncing with the canonical topology ------------------------------------

    async def load(self) -> None:
        self._absent.clear()
        self._by_id, self._by_resource = {}, {}
        self._by_lfdi, self._by_aggregator = defaultdict(dict), defaultdict(dict)
        self._own = defaultdict(dict)
        for record in await self.state.end_devices():
            self._index(record)
        await self._load_access()

    async def _load_access(self) -> None:
        access = await self.state.client_access()
        self._aggregators = {k: d["aggregator_id"] for k, d in access.items()
                             if d.get("granted", True) and d.get("aggregator_id")}
        self._denied = {k for k, d in access.items() if not d.get("granted", True)}

    def _index(self, record: EndDeviceRecord) -> None:
        self._generation += 1
        old = self._by_id.get(record.id)
        if old is not None:
            self._unindex(old)
        self._by_id[record.id] = record
        self._by_lfdi[record.lfdi][record.id] = record
        if record.aggregator_id:
            self._by_aggregator[record.aggregator_id][record.id] = record
            if _is_own(record):
                self._own[record.aggregator_id][record.id] = record
        if record.resource_id is not None:
            self._by_resource[record.resource_id] = record

    def _unindex(self, record: EndDeviceRecord) -> None:
        self._generation += 1
        self._by_id.pop(record.id, None)
        for index, group in ((self._by_lfdi, record.lfdi),
                             (self._by_aggregator, record.aggregator_id or ""),
                             (self._own, record.aggregator_id or "")):
            members = index.get(group)
            if members is not None:
                members.pop(record.id, None)
                if not members:
                    del index[group]
        held = self._by_resource.get(record.resource_id or "")
        if held is not None and held.id == record.id:
            self._by_resource.pop(held.resource_id or "", None)

    async def recall(self, edev_id: int) -> EndDeviceRecord | None:
        """The EndDevice `edev_id`, read from the store if this process does not know it yet:
        with several processes a client may list it at one and read it at another before
        the event log has brought it there (a 404 would end the client's walk)."""
        known = self._by_id.get(edev_id)
        if known is not None or edev_id in self._absent:
            return known
        record = await self.state.end_device(edev_id)
        if record is None:
            if len(self._absent) >= 10_000:  # (a bound for a client probing at random)
                self._absent.clear()
            self._absent.add(edev_id)
            return None
        self._index(record)
        return record

    async def reread(self, edev_ids: Iterable[int]) -> None:
        """Another process wrote these EndDevices: index them as the store has them now
        (added, changed or gone)."""
        self._absent.clear()
        edev_ids = list(edev_ids)
        stored = await self.state.end_devices_by_id(edev_ids)
        for edev_id in edev_ids:
            record = stored.get(edev_id)
            old = self._by_id.get(edev_id)
            if record is not None:
                self._index(record)
            elif old is not None:
                self._unindex(old)

    def remove(self, records: list[EndDeviceRecord]) -> None:
        """Forget EndDevices whose deletion has committed."""
        for record in records:
            self._unindex(record)

    @property
    def aggregator_clients(self) -> dict[str, str]:
        return self._aggregators

    async def scope(self, identity: ClientIdentity) -> ClientScope:
        """Who a client certificate is here (403 if the platform revoked it); what it may
        see is synced with the platform's registrations first."""
        if self.denied(identity.lfdi):
            raise Forbidden("this client's access has been revoked")
        scope = scope_for(identity, self._aggregators)
        await self.sync(scope)
        return scope

    def denied(self, lfdi: str) -> bool:
        return lfdi.upper() in self._denied

    async def set_client_access(self, lfdi: str, aggregator_id: str | None,
                                granted: bool) -> None:
        await self.state.set_client_access(lfdi, aggregator_id, granted)
        await self._load_access()
        self._synced.pop(lfdi.upper(), None)

    def all_records(self) -> list[EndDeviceRecord]:
        return list(self._by_id.values())

    def by_lfdi(self, lfdi: str) -> list[EndDeviceRecord]:
        return list(self._by_lfdi.get(lfdi.upper(), {}).values())

    def by_lfdi_any_aggregator(self, aggregator_id: str) -> list[EndDeviceRecord]:
        """The aggregator's own EndDevices (one per aggregator client certificate)."""
        return list(self._own.get(aggregator_id, {}).values())

    def own_ids(self, aggregator_id: str) -> set[int]:
        return set(self._own.get(aggregator_id, ()))

    def by_id(self, edev_id: int) -> EndDeviceRecord | None:
        return self._by_id.get(edev_id)

    def by_resource(self, resource_id: str) -> EndDeviceRecord | None:
        return self._by_resource.get(resource_id)

    async def _new(self, **fields: Any) -> EndDeviceRecord:
        now = int(time.time())
        record = EndDeviceRecord(id=await self.state.next_id("edev"), changed_time=now,
                                 registered_time=now, **fields)
        await self.state.save_end_device(record)
        self._index(record)
        return record

    async def ensure_resource(self, resource: Resource) -> EndDeviceRecord | None:
        """The EndDevice of a canonical 2030.5 resource, made on first sight."""
        return (await self.ensure_resources([resource])).get(resource.id)

    async def ensure_resources(self, resources: list[Resource]) -> dict[str, EndDeviceRecord]:
        """The EndDevices of canonical 2030.5 resources by resource id; the missing ones are
        made together: one block of ids and one write, however many there are."""
        found: dict[str, EndDeviceRecord] = {}
        missing: list[Resource] = []
        if not self.renders:
            return {r.id: rec for r in resources if (rec := self.by_resource(r.id)) is not None}
        for resource in resources:
            if resource.binding.protocol != self.protocol:
                continue
            existing = self.by_resource(resource.id)
            if existing is not None:
                found[resource.id] = existing
            elif str(resource.binding.address.get("lfdi", "")):
                missing.append(resource)
        if not missing:
            return found
        async with self._creating:
            missing = list({r.id: r for r in missing if self.by_resource(r.id) is None}.values())
            if missing:
                last = await self.state.next_ids("edev", len(missing))
                now = int(time.time())
                made = [EndDeviceRecord(
                    id=last - len(missing) + n, changed_time=now, registered_time=now,
                    lfdi=str(r.binding.address["lfdi"]).upper(),
                    sfdi=int(r.binding.address.get("sfdi") or 0),
                    pin=int(r.binding.address.get("pin") or self.default_pin),
                    resource_id=r.id, aggregator_id=r.aggregator_id,
                    connection_point_id=r.connection_point_id)
                    for n, r in enumerate(missing, 1)]
                await self.state.save_end_devices(made)
                for record in made:
                    self._index(record)
        for resource in resources:
            if (known := self.by_resource(resource.id)) is not None:
                found[resource.id] = known
        return found

    async def sync(self, scope: ClientScope) -> None:
        """Make sure every canonical resource this client may see has an EndDevice.

        Throttled per client: resource registrations also arrive as bus events (see
        adapter.py), so this is only the safety net for a client that polls first."""
        now = time.monotonic()
        interval = self.sync_interval_s if self.visible(scope) else 1.0
        if now - self._synced.get(scope.lfdi, -interval) < interval:
            return
        self._synced[scope.lfdi] = now
        if scope.is_aggregator:
            async with self._creating:
                if not any(r.resource_id is None for r in self.by_lfdi(scope.lfdi)):
                    await self._new(lfdi=scope.lfdi, sfdi=scope.sfdi, pin=self.default_pin,
                                    aggregator_id=scope.aggregator_id)
            # An aggregator's certificates share its DERs: one sync of them per interval
            # (at 100,000 DERs, 100 certificates each synced their aggregator's 10,000).
            shared = f"aggregator\x1f{scope.aggregator_id}"
            if now - self._synced.get(shared, -interval) < interval:
                return
            self._synced[shared] = now
            resources = await self.gateway.resources(protocol=self.protocol,
                                                     aggregator_id=scope.aggregator_id)
        else:
            resources = await self.gateway.find_resources(self.protocol, lfdi=scope.lfdi)
        if not self.renders and any(self.by_resource(r.id) is None for r in resources):
            await self.load()  # the rendering process makes them: read what it made
            return
        await self.ensure_resources(list(resources))

    async def platform_der_count(self, scope: ClientScope) -> int:
        """How many DERs of this protocol the platform gives `scope` (with several
        processes, more than this one may have EndDevices for yet)."""
        if scope.is_aggregator:
            return len(await self.gateway.resources(protocol=self.protocol,
                                                    aggregator_id=scope.aggregator_id))
        return len(await self.gateway.find_resources(self.protocol, lfdi=scope.lfdi))

    # --- visibility -------------------------------------------------------------------------

    def can_see(self, scope: ClientScope, record: EndDeviceRecord) -> bool:
        """An aggregator sees its own EndDevice and its DERs'; a device sees only itself."""
        if scope.is_aggregator:
            return record.aggregator_id == scope.aggregator_id and (
                record.resource_id is not None or record.inband or record.lfdi == scope.lfdi)
        return record.lfdi == scope.lfdi

    def visible(self, scope: ClientScope) -> list[EndDeviceRecord]:
        """The EndDevices `scope` may see, by id (a shared list: do not change it)."""
        return self.visible_set(scope).rows

    def visible_set(self, scope: ClientScope) -> Visible:
        """What `scope` may see, with the sets and counts asked of it per request (a client's
        Subscription cap, its MirrorUsagePoints): kept until the index changes."""
        key = (scope.lfdi, scope.aggregator_id if scope.is_aggregator else None)
        cached = self._visible.get(key)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        if scope.is_aggregator:
            rows = [r for r in self._by_aggregator.get(scope.aggregator_id or "", {}).values()
                    if self.can_see(scope, r)]
        else:
            rows = self.by_lfdi(scope.lfdi)
        rows.sort(key=lambda r: r.id)
        made = Visible(rows, frozenset(r.id for r in rows), frozenset(r.lfdi for r in rows),
                       sum(1 for r in rows if r.resource_id is not None or r.inband))
        self._visible[key] = (self._generation, made)
        return made

    def visible_device(self, scope: ClientScope, lfdi: str) -> EndDeviceRecord | None:
        """The DER EndDevice with this LFDI that `scope` may see, if any: a canonical DER's,
        or one registered in-band (a DER the platform may not know yet)."""
        return next((r for r in self._by_lfdi.get(lfdi.upper(), {}).values()
                     if (r.resource_id is not None or r.inband) and self.can_see(scope, r)),
                    None)

    def sees_lfdi(self, scope: ClientScope, lfdi: str) -> bool:
        return any(self.can_see(scope, r)
                   for r in self._by_lfdi.get(lfdi.upper(), {}).values())

    def get(self, scope: ClientScope, edev_id: int) -> EndDeviceRecord:
        record = self._by_id.get(edev_id)
        if record is None or not self.can_see(scope, record):
            raise NotFound("no such EndDevice")  # never reveal another client's devices
        return record

    # --- in-band registration ---------------------------------------------------------------

    async def register_inband(self, scope: ClientScope, doc: m.EndDevice) -> EndDeviceRecord:
        if not self.allow_inband:
            raise Forbidden("in-band registration is not allowed")
        lfdi = (doc.lFDI or "").upper()
        if not lfdi:
            raise InvalidInput("EndDevice lFDI is required")
        if not scope.is_aggregator and lfdi != scope.lfdi:
            raise Forbidden("lFDI does not match the client certificate")
        async with self._creating:
            if self.by_lfdi(lfdi):
                raise Conflict("an EndDevice with this lFDI is already registered")
            record = await self._new(lfdi=lfdi, sfdi=doc.sFDI, pin=self.default_pin,
                                     aggregator_id=scope.aggregator_id, inband=True,
                                     post_rate=doc.postRate)
        if self.inband_cp:
            await self.bind_connection_point(record, str(self.inband_cp))
        return record

    async def bind_connection_point(self, record: EndDeviceRecord, cp_id: str) -> None:
        """Record the CSIP-AUS connection point; an in-band device becomes a canonical DER."""
        record.connection_point_id = cp_id
        record.changed_time = int(time.time())
        if record.inband and record.resource_id is None and record.lfdi != "" \
                and not self._is_aggregator_self(record):
            if await self.known_connection_point(cp_id) is None:
                await self.state.save_end_device(record)
                self._index(record)
                return  # kept as given; the platform may create the connection point later
            actor = await self._actor(record)
            if actor is not None:
                owner = record.aggregator_id or (
                    actor.id if actor.role == Role.AGGREGATOR else None)
                resource = Resource(
                    id=f"2030.5-{record.lfdi.lower()}", connection_point_id=cp_id,
                    kind=DerKind.OTHER, nameplate=Nameplate(export_max_w=0.0),
                    binding=Binding(self.protocol,
                                    {"lfdi": record.lfdi, "sfdi": record.sfdi}),
                    aggregator_id=owner)
                await self.gateway.register_resources(actor, [resource])
                record.resource_id = resource.id
        await self.state.save_end_device(record)
        self._index(record)

    async def set_connection_point(self, record: EndDeviceRecord, cp_id: str) -> None:
        """The CSIP-AUS ConnectionPoint a client PUTs: an NMI or a platform connection point."""
        cp_id = cp_id.strip()
        if not nmi.is_valid(cp_id.upper()) and await self.known_connection_point(cp_id) is None:
            raise InvalidInput("connectionPointId is neither a valid NMI nor a known "
                               "connection point")
        await self.bind_connection_point(record, cp_id)

    async def known_connection_point(self, cp_id: str) -> ConnectionPoint | None:
        """The canonical connection point, or None (the core answers None or NotFound)."""
        try:
            return await self.gateway.connection_point(cp_id)
        except NotFound:
            return None

    def _is_aggregator_self(self, record: EndDeviceRecord) -> bool:
        return record.lfdi in self._aggregators and record.resource_id is None

    async def _actor(self, record: EndDeviceRecord) -> Participant | None:
        """Who registers an in-band DER with the platform: its aggregator, or for a device
        client the configured `inband_owner` (None: it stays an EndDevice only)."""
        owner = record.aggregator_id or self.inband_owner
        return await self.gateway.participant(owner) if owner else None


def _is_own(record: EndDeviceRecord) -> bool:
    """An aggregator client's own EndDevice (not one of its DERs', nor one registered in
    band)."""
    return record.resource_id is None and not record.inband
