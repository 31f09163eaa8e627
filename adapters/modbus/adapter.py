"""The adapter: keeps the device pool in step with the store and its feedback flowing.

Devices are the resources bound to this adapter (`Binding.protocol` = its name; address:
host, port, unit_id, tls). A resync loads every device, its effective control and what it
already acknowledged from the store; afterwards the event log only says what changed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from adapters.modbus.client import Endpoint
from adapters.modbus.feedback import GatewayFeedback
from adapters.modbus.settings import Settings
from adapters.modbus.state import AckLedger, Delivery
from adapters.modbus.sunspec.pool import DevicePool, DeviceSpec
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.domain import Protocol, Resource
from gateway.errors import GatewayError
from pki.tls import client_context

log = logging.getLogger(__name__)


class ModbusAdapter:
    def __init__(self, ctx: AdapterContext, settings: Settings) -> None:
        self.ctx = ctx
        self.name = ctx.name
        # Until the core takes adapter names for protocols (STATUS.md), records carry its enum.
        self.protocol: str = Protocol(ctx.name)
        self.settings = settings
        self.pool: DevicePool | None = None
        self.feedback: GatewayFeedback | None = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        cert = self.ctx.pki.path("modbus", "clients", f"{self.settings.client_cert}.pem")
        ca = self.ctx.pki.path("modbus", "ca.pem")
        if not (cert.exists() and ca.exists()):
            log.info("modbus: no client certificate %s; TLS devices will be unreachable", cert)
            return None
        return client_context(ca, cert, cert.with_suffix(".key"))

    def listeners(self) -> list[str]:
        devices = self.pool.devices.values() if self.pool else ()
        return [f"client of {len(devices)} SunSpec devices"] if devices else []

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        ledger = AckLedger(self.ctx.records)
        feedback = GatewayFeedback(self.ctx.gateway, ledger, self.protocol,
                                   self.settings.flush_interval_s,
                                   self.settings.max_pending_readings)
        pool = DevicePool(feedback, self.settings, self._ssl_context(), protocol=self.protocol)
        self.pool, self.feedback = pool, feedback
        await self.resync()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(pool.run(), name="modbus-pool"),
                         group.create_task(feedback.run(), name="modbus-feedback"),
                         group.create_task(self._follow(), name="modbus-events")]
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            await feedback.flush()
            self.pool = self.feedback = None

    # -- from the store --------------------------------------------------------------------

    async def resync(self) -> None:
        """Every device of this adapter, its control and its acknowledgement state."""
        assert self.pool is not None and self.feedback is not None
        gateway = self.ctx.gateway
        resources = await gateway.resources(protocol=self.protocol)  # type: ignore[arg-type]
        controls = await gateway.effective_controls([r.id for r in resources])
        acked = await self.feedback.ledger.load()
        specs = [DeviceSpec(r.id, r.binding.address, r.nameplate.export_max_w,
                            controls.get(r.id), acked.get(r.id, {}))
                 for r in resources if await self._usable(r)]
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

    async def _follow(self) -> None:
        topics = (Topic.EFFECTIVE_CONTROL_CHANGED, Topic.RESOURCE_CHANGED)
        while True:
            async with self.ctx.bus.subscription(*topics) as sub:
                async for event in sub:
                    try:
                        await self._on_event(event)
                    except GatewayError as exc:
                        log.warning("modbus: event %s not applied: %s", event.id, exc)
            log.warning("modbus: event log subscription overflowed; resyncing from the store")
            await self.resync()

    async def _on_event(self, event: Event) -> None:
        assert self.pool is not None and self.feedback is not None
        rid = _resource_id(event.payload)
        if event.topic == Topic.EFFECTIVE_CONTROL_CHANGED:
            if rid in self.pool.devices:
                self.pool.set_control(rid, await self.ctx.gateway.effective_control(rid))
            return
        if "online" in event.payload:
            return  # our own (or another's) online mark: nothing to render
        res = await self.ctx.gateway.resource(rid)
        if res is None or res.binding.protocol != self.name:
            if self.pool.release(rid) is not None:
                self.feedback.forget(rid)
            return
        if not await self._usable(res):
            self.pool.release(rid)
            return
        self.pool.upsert(rid, res.binding.address, res.nameplate.export_max_w,
                         await self.ctx.gateway.effective_control(rid))


def _resource_id(payload: dict[str, Any]) -> str:
    return str(payload.get("resource_id", ""))
