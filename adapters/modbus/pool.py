"""The client pool: one connection and one loop per device, bounded concurrency, back-off.

Each device runs its own loop (discover once, render its control when it changes or its
reversion timers need a refresh, read telemetry when due). The 704/703 part of a control and
its function settings (705/706/711/712 curves, 704/703 ramp points) are rendered, refreshed
and acknowledged separately. A failure closes that device's connection and backs it off
exponentially; after `offline_after` failures in a row it is marked offline. Nothing a
device does can raise out of its loop, and a slow device only holds one of the
`max_concurrency` slots, for at most its time-out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from adapters.modbus.client import (
    DeviceError,
    DeviceMap,
    DeviceRefused,
    Endpoint,
    ModbusLink,
    discover,
    read_model,
)
from adapters.modbus.curves import FunctionPlan
from adapters.modbus.mapper import ControlPlan, acknowledgements, plan_for
from adapters.modbus.render import (
    Outcome,
    apply_plan,
    combine,
    disable_curve,
    ensure_curve,
    ensure_points,
    telemetry,
)
from gateway.domain import Acknowledgement, AckStatus, EffectiveControl, Reading

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where the pool's results go (the gateway in service, a counter in the bench)."""

    async def readings(self, readings: Sequence[Reading]) -> None: ...

    async def acknowledge(self, acks: Sequence[Acknowledgement]) -> None: ...

    async def online(self, resource_id: str, online: bool) -> None: ...


@dataclass(frozen=True)
class PoolConfig:
    poll_interval_s: float = 5.0  # how often a device loop wakes up without being woken
    telemetry_interval_s: float = 10.0
    reversion_s: int = 60  # RvrtTms written with every control and curve
    refresh_fraction: float = 1 / 3  # rewrite controls after this share of reversion_s
    nominal_hz: float = 60.0  # the grid's nominal frequency (711 dead bands from freq_watt)
    timeout_s: float = 2.0
    max_concurrency: int = 100
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    offline_after: int = 3

    @classmethod
    def from_mapping(cls, config: dict[str, Any]) -> PoolConfig:
        known = {k: config[k] for k in cls.__dataclass_fields__ if k in config}
        return cls(**known)


@dataclass
class Device:
    resource_id: str
    endpoint: Endpoint
    w_max: float  # nameplate; replaced by the device's own 702 WMax once read
    link: ModbusLink
    control: EffectiveControl | None = None
    dmap: DeviceMap | None = None
    plan_fp: str | None = None  # of the 704/703 part last rendered
    written_at: float = -1e18
    functions_fp: str | None = None  # of the function settings last rendered
    curves_at: float = -1e18
    curves_on: set[int] = field(default_factory=set)  # curve models we enabled (705, 711...)
    telemetry_at: float = -1e18
    failures: int = 0
    online: bool | None = None
    last_error: str = ""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


@dataclass
class PassResult:
    ok: bool
    delay_s: float


class DevicePool:
    def __init__(self, sink: Sink, config: PoolConfig | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.config = config or PoolConfig()
        self.ssl_context = ssl_context
        self.clock = clock
        self.devices: dict[str, Device] = {}
        self._slots = asyncio.Semaphore(self.config.max_concurrency)
        self._group: asyncio.TaskGroup | None = None

    # -- membership ------------------------------------------------------------------------

    def upsert(self, resource_id: str, address: dict[str, Any], w_max: float,
               control: EffectiveControl | None = None) -> Device:
        endpoint = Endpoint.from_address(address)
        old = self.devices.get(resource_id)
        if old is not None and old.endpoint == endpoint:
            old.control = control if control is not None else old.control
            old.wake.set()
            return old
        self.remove(resource_id)
        link = ModbusLink(endpoint, self.config.timeout_s,
                          self.ssl_context if endpoint.tls else None)
        dev = Device(resource_id, endpoint, w_max, link, control)
        self.devices[resource_id] = dev
        if self._group is not None:
            dev.task = self._group.create_task(self._loop(dev), name=f"modbus:{resource_id}")
        return dev

    def remove(self, resource_id: str) -> None:
        dev = self.devices.pop(resource_id, None)
        if dev is not None:
            if dev.task is not None:
                dev.task.cancel()
            dev.link.close()

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
                dev.link.close()

    async def _loop(self, dev: Device) -> None:
        while True:
            async with self._slots:
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
            async with self._slots:
                return await self.service(dev, force_telemetry=True)

        return list(await asyncio.gather(*(one(d) for d in self.devices.values())))

    # -- one pass over one device ------------------------------------------------------------

    async def service(self, dev: Device, force_telemetry: bool = False) -> PassResult:
        """Discover if needed, render the control if due, read telemetry if due."""
        try:
            if dev.dmap is None:
                dev.dmap = await discover(dev.link)
                dev.w_max = await _device_w_max(dev) or dev.w_max
            await self._render(dev)
            now = self.clock()
            if force_telemetry or now - dev.telemetry_at >= self.config.telemetry_interval_s:
                readings = await telemetry(dev.link, dev.dmap, dev.resource_id, _utcnow())
                dev.telemetry_at = now
                await self.sink.readings(readings)
        except DeviceError as exc:
            return await self._failed(dev, str(exc))
        except Exception as exc:  # a bug or a core error must not end the device's loop
            log.exception("modbus %s (%s): unexpected error", dev.resource_id, dev.endpoint)
            return await self._failed(dev, f"unexpected: {exc!r}")
        return await self._succeeded(dev)

    async def _render(self, dev: Device) -> None:
        plan: ControlPlan = plan_for(dev.control, _utcnow(), dev.w_max, self.config.reversion_s,
                                     self.config.nominal_hz)
        await self._render_704(dev, plan)
        await self._render_functions(dev, plan.functions)

    def _refresh_due(self, written_at: float) -> bool:
        return self.clock() - written_at >= self.config.reversion_s * self.config.refresh_fraction

    async def _render_704(self, dev: Device, plan: ControlPlan) -> None:
        assert dev.dmap is not None
        now = self.clock()
        changed = plan.fingerprint != dev.plan_fp
        if not dev.dmap.has(704):  # e.g. a legacy-only (12x models) device
            if changed:
                dev.plan_fp = plan.fingerprint
                await self._acknowledge(dev, plan.instruction_ids, plan.fingerprint, Outcome(
                    AckStatus.CANNOT_COMPLY, "no model 704",
                    "the device does not implement SunSpec DER AC controls (704)"))
            return
        if not (changed or self._refresh_due(dev.written_at)):
            return
        outcome = await apply_plan(dev.link, dev.dmap, plan, full=changed)
        dev.written_at = now
        dev.plan_fp = plan.fingerprint
        if changed:
            await self._acknowledge(dev, plan.instruction_ids, plan.fingerprint, outcome)

    async def _render_functions(self, dev: Device, functions: FunctionPlan) -> None:
        """Adopt the curves and write the ramp points when the settings change (and turn
        off withdrawn curves); in between, restart the curves' reversion timers, re-adopting
        a curve the device lost."""
        assert dev.dmap is not None
        now = self.clock()
        reversion_s = self.config.reversion_s
        if functions.fingerprint == dev.functions_fp:
            if dev.curves_on and self._refresh_due(dev.curves_at):
                await self._refresh_curves(dev, functions)
                dev.curves_at = now
            return
        for model_id in sorted(dev.curves_on - functions.models):  # withdrawn: off at once
            await disable_curve(dev.link, dev.dmap, model_id)
            dev.curves_on.discard(model_id)
        outcomes = []
        for curve in functions.curves:
            outcome = await ensure_curve(dev.link, dev.dmap, curve, reversion_s)
            outcomes.append(outcome)
            if outcome.ok:
                dev.curves_on.add(curve.model_id)
            elif curve.model_id in dev.curves_on:  # the old curve must not stay in force
                dev.curves_on.discard(curve.model_id)
                await disable_curve(dev.link, dev.dmap, curve.model_id)
        for setting in functions.settings:  # standing points: no timer to refresh later
            outcomes.append(await ensure_points(dev.link, dev.dmap, setting))
        dev.functions_fp, dev.curves_at = functions.fingerprint, now
        if functions.instruction_id is not None and functions.has_work:
            await self._acknowledge(dev, (functions.instruction_id,), functions.fingerprint,
                                    combine(outcomes, functions.refusals))

    async def _refresh_curves(self, dev: Device, functions: FunctionPlan) -> None:
        """Restart the timers of the curves in force; one the device lost is adopted again
        (logged: another master, or a reversion during an outage), one it refuses is lost."""
        assert dev.dmap is not None
        for curve in functions.curves:
            if curve.model_id not in dev.curves_on:
                continue
            outcome = await ensure_curve(dev.link, dev.dmap, curve, self.config.reversion_s)
            if not outcome.ok:
                dev.curves_on.discard(curve.model_id)
            if outcome.adopted or not outcome.ok:
                log.warning("modbus %s: %d was no longer in force: %s %s", dev.resource_id,
                            curve.model_id, outcome.protocol_status, outcome.detail)

    async def _acknowledge(self, dev: Device, instruction_ids: Sequence[str], fingerprint: str,
                           outcome: Outcome) -> None:
        await self.sink.acknowledge(acknowledgements(
            dev.resource_id, instruction_ids, fingerprint, outcome.status,
            outcome.protocol_status, _utcnow(), outcome.detail))
        if outcome.detail:
            log.warning("modbus %s: %s: %s", dev.resource_id, outcome.protocol_status,
                        outcome.detail)

    async def _failed(self, dev: Device, reason: str) -> PassResult:
        dev.failures += 1
        dev.last_error = reason
        dev.link.close()
        if dev.failures == 1 or dev.failures == self.config.offline_after:
            log.warning("modbus %s: %s (failure %d)", dev.resource_id, reason, dev.failures)
        if dev.failures >= self.config.offline_after and dev.online is not False:
            dev.online = False
            dev.dmap = None  # rediscover when it comes back: it may have been replaced
            dev.plan_fp = dev.functions_fp = None  # and re-render everything
            await self._mark(dev, False)
        backoff = min(self.config.backoff_max_s,
                      self.config.backoff_initial_s * 2 ** (dev.failures - 1))
        return PassResult(False, backoff * random.uniform(0.8, 1.2))

    async def _succeeded(self, dev: Device) -> PassResult:
        if dev.failures:
            log.info("modbus %s: reachable again after %d failures", dev.resource_id,
                     dev.failures)
        dev.failures, dev.last_error = 0, ""
        if dev.online is not True:
            dev.online = True
            await self._mark(dev, True)
        return PassResult(True, self.config.poll_interval_s)

    async def _mark(self, dev: Device, online: bool) -> None:
        try:
            await self.sink.online(dev.resource_id, online)
        except Exception:
            log.exception("modbus %s: could not record online=%s", dev.resource_id, online)


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


def _utcnow() -> datetime:
    return datetime.now(UTC)
