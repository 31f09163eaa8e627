"""The adapter: keeps the client pool in step with the store and sends its results to the core.

Devices are the resources bound with Protocol.MODBUS (address: host, port, unit_id, tls).
On start every device and its effective control are loaded from the store; afterwards the
bus only says what changed, and an overflowed subscription triggers a full reload.

Settings, `[adapters.modbus]`: poll_interval_s, telemetry_interval_s, reversion_s,
refresh_fraction, timeout_s, max_concurrency, backoff_initial_s, backoff_max_s,
offline_after (see `PoolConfig`), client_cert (name under pki modbus/clients, default
"gateway"), flush_interval_s and max_pending_readings (the readings batcher).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from adapters.modbus.pool import DevicePool, PoolConfig
from gateway.adapters import AdapterContext
from gateway.bus import Event, Topic
from gateway.domain import Acknowledgement, Protocol, Reading
from gateway.errors import GatewayError, NotFound
from gateway.services import GatewayServices
from pki.tls import client_context

log = logging.getLogger(__name__)


class GatewaySink:
    """Acknowledgements go to the core at once. Online marks (latest per device wins) and
    readings are batched into one transaction each per `flush_interval_s`: a pool of
    thousands of devices coming online at start-up would otherwise recompute their area once
    per device. Readings wait in a bounded buffer (oldest dropped, counted)."""

    def __init__(self, gateway: GatewayServices, flush_interval_s: float = 1.0,
                 max_pending: int = 20_000) -> None:
        self.gateway = gateway
        self.flush_interval_s = flush_interval_s
        self._pending: deque[Reading] = deque(maxlen=max_pending)
        self._online: dict[str, bool] = {}  # bounded by the number of devices
        self.dropped = 0

    async def readings(self, readings: Sequence[Reading]) -> None:
        room = self._pending.maxlen - len(self._pending) if self._pending.maxlen else len(readings)
        lost = max(0, len(readings) - room)
        if lost:
            if not self.dropped:
                log.warning("modbus: readings buffer full; dropping the oldest (store too slow?)")
            self.dropped += lost
        self._pending.extend(readings)

    async def acknowledge(self, acks: Sequence[Acknowledgement]) -> None:
        for ack in acks:
            try:
                await self.gateway.record_acknowledgement(ack)
            except GatewayError as exc:
                log.warning("modbus %s: acknowledgement not recorded: %s", ack.resource_id, exc)

    async def online(self, resource_id: str, online: bool) -> None:
        self._online[resource_id] = online

    async def flush(self) -> None:
        marks, self._online = self._online, {}
        if marks:
            try:
                await self.gateway.set_online_many(marks)
            except GatewayError:
                self._online = {**marks, **self._online}  # keep them for the next flush
                raise
        batch = list(self._pending)
        self._pending.clear()
        if not batch:
            return
        try:
            await self.gateway.record_readings(batch)
        except NotFound:  # a resource was removed meanwhile: keep the others
            known = {r.id for r in await self.gateway.resources(protocol=Protocol.MODBUS)}
            kept = [r for r in batch if r.resource_id in known]
            if kept:
                await self.gateway.record_readings(kept)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except GatewayError as exc:
                log.warning("modbus: online marks or %d readings not recorded: %s",
                            len(self._pending), exc)


class ModbusAdapter:
    name = "modbus"

    def __init__(self, ctx: AdapterContext) -> None:
        self.ctx = ctx
        self.config = PoolConfig.from_mapping(ctx.config)
        self.pool: DevicePool | None = None

    def _ssl_context(self) -> ssl.SSLContext | None:
        name = str(self.ctx.config.get("client_cert", "gateway"))
        cert = self.ctx.pki.path("modbus", "clients", f"{name}.pem")
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
        sink = GatewaySink(self.ctx.gateway, float(self.ctx.config.get("flush_interval_s", 1.0)),
                           int(self.ctx.config.get("max_pending_readings", 20_000)))
        pool = DevicePool(sink, self.config, self._ssl_context())
        self.pool = pool
        await self._reload(pool)
        tasks: list[asyncio.Task[None]] = []
        try:
            async with asyncio.TaskGroup() as group:
                tasks += [group.create_task(pool.run(), name="modbus-pool"),
                          group.create_task(sink.run(), name="modbus-readings"),
                          group.create_task(self._follow(pool), name="modbus-bus")]
                try:
                    yield
                finally:
                    for task in tasks:
                        task.cancel()
        finally:
            await sink.flush()
            self.pool = None

    async def _reload(self, pool: DevicePool) -> None:
        gateway = self.ctx.gateway
        resources = await gateway.resources(protocol=Protocol.MODBUS)
        controls = await gateway.effective_controls([r.id for r in resources])
        for gone in set(pool.devices) - {r.id for r in resources}:
            pool.remove(gone)
        for r in resources:
            pool.upsert(r.id, r.binding.address, r.nameplate.export_max_w, controls.get(r.id))
        log.info("modbus: %d devices", len(resources))

    async def _follow(self, pool: DevicePool) -> None:
        handlers: dict[str, Callable[[DevicePool, Event], Awaitable[None]]] = {
            Topic.EFFECTIVE_CONTROL_CHANGED: self._on_control,
            Topic.RESOURCE_CHANGED: self._on_resource,
        }
        while True:
            async with self.ctx.bus.subscription(*handlers) as sub:
                async for event in sub:
                    try:
                        await handlers[event.topic](pool, event)
                    except GatewayError as exc:
                        log.warning("modbus: event %s not applied: %s", event.id, exc)
            log.warning("modbus: bus subscription overflowed; reloading from the store")
            await self._reload(pool)

    async def _on_control(self, pool: DevicePool, event: Event) -> None:
        rid = _resource_id(event.payload)
        if rid in pool.devices:
            pool.set_control(rid, await self.ctx.gateway.effective_control(rid))

    async def _on_resource(self, pool: DevicePool, event: Event) -> None:
        rid = _resource_id(event.payload)
        if "online" in event.payload:
            return  # our own (or another's) online mark: nothing to render
        res = await self.ctx.gateway.resource(rid)
        if res is None or res.binding.protocol != Protocol.MODBUS:
            pool.remove(rid)
            return
        pool.upsert(rid, res.binding.address, res.nameplate.export_max_w,
                    await self.ctx.gateway.effective_control(rid))


def _resource_id(payload: dict[str, Any]) -> str:
    return str(payload.get("resource_id", ""))
