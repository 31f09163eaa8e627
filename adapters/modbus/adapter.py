"""The adapter: keeps the device pool in step with the store and its feedback flowing.

Devices are the resources bound to this adapter (`Binding.protocol` = its name; address:
host, port, unit_id, tls). A resync loads every device, its effective control and what it
already acknowledged from the store; afterwards the event log only says what changed.
Starting does not wait for the first resync: the pool fills in behind it.

With several processes (PostgreSQL) each device is polled by exactly one of them: devices
fall into BUCKETS by a hash of their id, and each process polls the buckets whose leases it
holds (`ctx.leases.sharing`: a fair part each; a dead process's buckets are taken over when
their leases lapse, and their devices polled again within about 10 s).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from adapters.modbus.client import Endpoint
from adapters.modbus.feedback import GatewayFeedback
from adapters.modbus.settings import Settings
from adapters.modbus.state import AckLedger, Delivery
from adapters.modbus.sunspec.pool import DevicePool, DeviceSpec
from gateway.domain import EffectiveControl, Resource
from gateway.ports import (
    AdapterContext,
    ControlChanged,
    ResourceChanged,
    Share,
    Topic,
    TypedEvent,
    follow,
)
from pki.tls import client_context

log = logging.getLogger(__name__)

_CHUNK = 5_000  # DER ids per query
BUCKETS = 16  # units of Modbus polling work shared among processes


def bucket_of(resource_id: str) -> int:
    return zlib.crc32(resource_id.encode()) % BUCKETS


class ModbusAdapter:
    def __init__(self, ctx: AdapterContext, settings: Settings) -> None:
        self.ctx = ctx
        self.name = ctx.name
        self.settings = settings
        self.pool: DevicePool | None = None
        self.feedback: GatewayFeedback | None = None
        self.buckets: frozenset[int] | None = None  # held with several processes; None: all
        # A resync (the event log's, or on taking up buckets) and a batch of events each
        # read controls from the store and hand them to the pool: one at a time, or a
        # resync that read a control before a batch applied its successor put the older
        # one back (seen with two workers: devices left on the previous control).
        self._applying = asyncio.Lock()

    def mine(self, resource_id: str) -> bool:
        return self.buckets is None or bucket_of(resource_id) in self.buckets

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert = self.ctx.pki.path("modbus", "clients", f"{self.settings.client_cert}.pem")
        ca = self.ctx.pki.path("modbus", "ca.pem")
        if not (cert.exists() and ca.exists()):
            log.info("modbus: no client certificate %s; TLS devices will be unreachable", cert)
            return None
        return client_context(ca, cert, cert.with_suffix(".key"))

    def listeners(self) -> list[str]:
        if self.pool is None:
            return []
        return [f"client of {len(self.pool.devices)} SunSpec devices" if self.pool.devices
                else "SunSpec client"]

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        ledger = AckLedger(self.ctx.records)
        feedback = GatewayFeedback(self.ctx.gateway, ledger, self.name,
                                   self.settings.flush_interval_s,
                                   self.settings.max_pending_readings)
        pool = DevicePool(feedback, self.settings, self._ssl_context(), protocol=self.name)
        self.pool, self.feedback = pool, feedback
        following = follow(self.ctx.bus, {Topic.EFFECTIVE_CONTROL_CHANGED, Topic.RESOURCE_CHANGED},
                           on_batch=self.on_batch, resync=self.resync, name=f"{self.name}-devices")
        try:
            async with self._sharing() as share, asyncio.TaskGroup() as group:
                tasks = [group.create_task(pool.run(), name=f"{self.name}-pool"),
                         group.create_task(feedback.run(), name=f"{self.name}-feedback"),
                         group.create_task(following, name=f"{self.name}-events")]
                if share is not None:
                    tasks.append(group.create_task(self._follow_share(share),
                                                   name=f"{self.name}-share"))
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            await feedback.flush()
            self.pool = self.feedback = None

    @asynccontextmanager
    async def _sharing(self) -> AsyncIterator[Share | None]:
        leases = self.ctx.leases
        if leases is None or not self.ctx.settings.is_postgres:
            yield None
            return
        self.buckets = frozenset()  # none until the first leases are taken
        async with leases.sharing(f"{self.name}:devices", BUCKETS) as share:
            yield share

    async def _follow_share(self, share: Share) -> None:
        """Poll the devices of the buckets this process holds, from the moment it does."""
        while True:
            await share.changed.wait()
            share.changed.clear()
            self.buckets = share.held
            log.info("modbus: this process polls buckets %s", sorted(share.held))
            try:
                await self.resync()
            except Exception:  # the next change, or the event log's resync, tries again
                log.exception("modbus: taking up buckets %s failed", sorted(share.held))

    # -- from the store --------------------------------------------------------------------

    async def resync(self) -> None:
        """Every device of this adapter, its control and its acknowledgement state."""
        async with self._applying:
            await self._resync()

    async def _resync(self) -> None:
        assert self.pool is not None and self.feedback is not None
        gateway = self.ctx.gateway
        resources = await gateway.resources(protocol=self.name)
        controls: dict[str, EffectiveControl] = {}
        for at in range(0, len(resources), _CHUNK):  # (a database caps a query's parameters)
            controls |= await gateway.effective_controls(
                [r.id for r in resources[at : at + _CHUNK]])
        acked = await self.feedback.ledger.load()
        specs = [DeviceSpec(r.id, r.binding.address, r.nameplate.export_max_w,
                            controls.get(r.id), acked.get(r.id, {}))
                 for r in resources if self.mine(r.id) and await self._usable(r)]
        bound = {r.id for r in resources}
        for gone in self.pool.assign(specs):
            if gone not in bound:  # (a DER still bound but unusable keeps its state)
                self.feedback.forget(gone)
        for stale in set(acked) - bound:  # unbound or removed while we were away
            self.feedback.ledger.forget(stale)
        log.info("modbus: %d devices", len(specs))

    async def _usable(self, resource: Resource) -> bool:
        """Whether the DER's binding names a device; if not, its control is undeliverable."""
        assert self.feedback is not None
        try:
            Endpoint.from_address(resource.binding.address)
        except ValueError as exc:
            log.warning("modbus %s: not polled: %s", resource.id, exc)
            await self.feedback.delivery(resource.id, Delivery(False, f"binding: {exc}"))
            return False
        return True

    # -- from the event log ------------------------------------------------------------------

    async def on_batch(self, events: list[TypedEvent]) -> None:
        """Apply a batch of changes: each DER's resource and control read once per batch."""
        async with self._applying:
            await self._on_batch(events)

    async def _on_batch(self, events: list[TypedEvent]) -> None:
        assert self.pool is not None
        resources: set[str] = set()
        controls: set[str] = set()
        for event in events:
            match event:
                case ResourceChanged(online=None):  # (an online mark alone changes nothing)
                    resources.add(event.resource_id)
                case ControlChanged():
                    controls.add(event.resource_id)
        if resources:
            await self._apply_resources(sorted(resources))
        ours = sorted(rid for rid in controls - resources if rid in self.pool.devices)
        if ours:
            found = await self.ctx.gateway.effective_controls(ours)
            for rid in ours:
                self.pool.set_control(rid, found.get(rid))

    async def _apply_resources(self, ids: list[str]) -> None:
        """Added, changed, rebound or removed DERs: the pool follows."""
        assert self.pool is not None and self.feedback is not None
        found = {r.id: r for r in await self.ctx.gateway.resources(ids=ids)}
        ours = [rid for rid, r in found.items()
                if r.binding.protocol == self.name and self.mine(rid)]
        controls = await self.ctx.gateway.effective_controls(ours)
        for rid in ids:
            res = found.get(rid)
            if res is None or res.binding.protocol != self.name or not self.mine(rid):
                if self.pool.release(rid) is not None:
                    self.feedback.forget(rid)
            elif not await self._usable(res):
                self.pool.release(rid)
            else:
                self.pool.upsert(rid, res.binding.address, res.nameplate.export_max_w,
                                 controls.get(rid))
