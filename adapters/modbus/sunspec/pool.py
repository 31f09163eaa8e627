"""The device pool: one loop per device, one connection per address (host and port: the
unit ids behind a Modbus gateway share it and take turns), bounded concurrency, back-off.

Each device runs its own loop: discover once, render its control (`render.Renderer`) when it
changes or its reversion timers need a refresh, read telemetry when due. A failed request
closes its connection (the next opens a new one) and backs the device off exponentially;
after `offline_after` failures in a row it is marked offline and its control undeliverable.
Nothing a device does can raise out of its loop, and a slow device only holds one of the
`max_concurrency` slots (and its connection's turn), for at most its time-out.

The pool polls exactly the devices it is given: `assign(specs)` hands it a device set (the
adapter gives it every Modbus DER; with several processes, each would be given the devices it
holds a lease on), `release(id)` takes one away.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.modbus.client import (
    Connections,
    DeviceError,
    DeviceRefused,
    DeviceUnreachable,
    Endpoint,
    ModbusLink,
)
from adapters.modbus.feedback import Feedback, read_telemetry
from adapters.modbus.render import Renderer
from adapters.modbus.settings import Settings
from adapters.modbus.state import Acked, Device, Part
from adapters.modbus.sunspec.device import NotSunSpec, discover, read_model
from gateway.domain import EffectiveControl

log = logging.getLogger(__name__)

# Why a device that keeps failing cannot be given its control, by kind of failure.
_UNDELIVERABLE: tuple[tuple[type[DeviceError], str], ...] = (
    (DeviceUnreachable, "device unreachable"),
    (DeviceRefused, "device refuses requests"),
    (NotSunSpec, "not a SunSpec device"),
)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device as the pool is handed it: a DER, its binding address, nameplate, control,
    and what it already acknowledged (from the ledger)."""

    resource_id: str
    address: Mapping[str, Any]
    w_max: float
    control: EffectiveControl | None = None
    acked: Mapping[Part, Acked] = field(default_factory=dict)


@dataclass
class PassResult:
    ok: bool
    delay_s: float


class DevicePool:
    def __init__(self, feedback: Feedback, settings: Settings | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 protocol: str = "modbus") -> None:
        self.feedback = feedback
        self.settings = settings or Settings()
        self.ssl_context = ssl_context
        self.clock = clock
        self.protocol = protocol  # the adapter's name, on every record it makes
        self.renderer = Renderer(self.settings, feedback, protocol, clock)
        self.devices: dict[str, Device] = {}
        self.connections = Connections()  # devices at one host and port share one
        self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        self._group: asyncio.TaskGroup | None = None

    # -- membership ------------------------------------------------------------------------

    def assign(self, specs: Iterable[DeviceSpec]) -> list[str]:
        """Poll exactly these devices from now on: others are released, these added or
        updated. Returns the ids released."""
        wanted = {spec.resource_id: spec for spec in specs}
        gone = [rid for rid in self.devices if rid not in wanted]
        for rid in gone:
            self.release(rid)
        for spec in wanted.values():
            self.upsert(spec.resource_id, spec.address, spec.w_max, spec.control, spec.acked)
        return gone

    def upsert(self, resource_id: str, address: Mapping[str, Any], w_max: float,
               control: EffectiveControl | None = None,
               acked: Mapping[Part, Acked] | None = None) -> Device:
        """Add a device, or update its control (None: it has none); a new address starts it
        afresh. What it
        acknowledged is taken from `acked` only for a DER new to the pool (the pool's own
        knowledge is newer than the ledger's). ValueError for an unusable address."""
        endpoint = Endpoint.from_address(address)
        old = self.devices.get(resource_id)
        if old is not None and old.endpoint == endpoint:
            old.control = control
            old.wake.set()
            return old
        known = dict(old.acked) if old is not None else dict(acked or {})
        self.release(resource_id)
        link = ModbusLink(endpoint, self.settings.timeout_s,
                          self.ssl_context if endpoint.tls else None, self.connections)
        dev = Device(resource_id, endpoint, w_max, link, control, acked=known)
        self.devices[resource_id] = dev
        if self._group is not None:
            dev.task = self._group.create_task(self._loop(dev), name=f"modbus:{resource_id}")
        return dev

    def release(self, resource_id: str) -> Device | None:
        """Stop polling a device; returns it (None if the pool did not hold it)."""
        dev = self.devices.pop(resource_id, None)
        if dev is not None:
            if dev.task is not None:
                dev.task.cancel()
            dev.link.release()
        return dev

    def set_control(self, resource_id: str, control: EffectiveControl | None) -> None:
        dev = self.devices.get(resource_id)
        if dev is not None:
            dev.control = control
            dev.wake.set()

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every device loop until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                for dev in self.devices.values():
                    dev.task = group.create_task(self._loop(dev), name=f"modbus:{dev.resource_id}")
                await asyncio.Event().wait()
        finally:
            self._group = None
            for dev in self.devices.values():
                dev.link.release()

    async def _loop(self, dev: Device) -> None:
        while True:
            # Its connection's turn first, then a slot: devices queued behind one gateway
            # must not hold the slots the others' connections could use.
            async with dev.link.turn(), self._slots:
                result = await self.service(dev)
            dev.wake.clear()
            try:
                async with asyncio.timeout(result.delay_s):
                    await dev.wake.wait()
            except TimeoutError:
                pass

    async def poll_cycle(self) -> list[PassResult]:
        """One pass over every device at once (bounded): for tests and the bench."""

        async def one(dev: Device) -> PassResult:
            async with dev.link.turn(), self._slots:
                return await self.service(dev, force_telemetry=True)

        return list(await asyncio.gather(*(one(d) for d in self.devices.values())))

    # -- one pass over one device ------------------------------------------------------------

    async def service(self, dev: Device, force_telemetry: bool = False) -> PassResult:
        """Discover if needed, render the control if due, read telemetry if due."""
        try:
            if dev.dmap is None:
                dev.dmap = await discover(dev.link)
                dev.w_max = await _device_w_max(dev) or dev.w_max
            await self.renderer.render(dev)
            now = self.clock()
            if force_telemetry or now - dev.telemetry_at >= self.settings.telemetry_interval_s:
                readings = await read_telemetry(dev.link, dev.dmap, dev.resource_id,
                                                datetime.now(UTC), self.protocol)
                dev.telemetry_at = now
                await self.feedback.readings(readings)
        except DeviceError as exc:
            kind = next((why for cls, why in _UNDELIVERABLE if isinstance(exc, cls)),
                        "device error")
            return await self._failed(dev, str(exc), kind)
        except Exception as exc:  # a bug or a core error must not end the device's loop
            log.exception("modbus %s (%s): unexpected error", dev.resource_id, dev.endpoint)
            return await self._failed(dev, f"unexpected: {exc!r}", "gateway error")
        return await self._succeeded(dev)

    async def _failed(self, dev: Device, reason: str, kind: str) -> PassResult:
        dev.failures += 1
        dev.last_error = reason
        dev.link.close()
        if dev.failures == 1 or dev.failures == self.settings.offline_after:
            log.warning("modbus %s: %s (failure %d)", dev.resource_id, reason, dev.failures)
        if dev.failures >= self.settings.offline_after and dev.online is not False:
            dev.online = False
            dev.forget_rendering()
            await self._mark(dev, False)
            await self._report(self.renderer.unreachable(dev, f"{kind}: {reason}"))
        backoff = min(self.settings.backoff_max_s,
                      self.settings.backoff_initial_s * 2 ** (dev.failures - 1))
        return PassResult(False, backoff * random.uniform(0.8, 1.2))

    async def _succeeded(self, dev: Device) -> PassResult:
        if dev.failures:
            log.info("modbus %s: reachable again after %d failures", dev.resource_id,
                     dev.failures)
        dev.failures, dev.last_error = 0, ""
        if dev.online is not True:
            dev.online = True
            await self._mark(dev, True)
        return PassResult(True, self.settings.poll_interval_s)

    async def _mark(self, dev: Device, online: bool) -> None:
        await self._report(self.feedback.online(dev.resource_id, online))

    @staticmethod
    async def _report(report: Awaitable[None]) -> None:
        """Feedback from the failure path must not raise out of a device's loop."""
        try:
            await report
        except Exception:
            log.exception("modbus: could not report a device's state")


async def _device_w_max(dev: Device) -> float | None:
    """The device's own active-power setting (702 WMax, else WMaxRtg), if it has one."""
    assert dev.dmap is not None
    if not dev.dmap.has(702):
        return None
    ref = dev.dmap.models[702]
    try:
        regs = await read_model(dev.link, ref)
    except DeviceRefused:
        return None
    return ref.layout.value(regs, "WMax") or ref.layout.value(regs, "WMaxRtg")
