"""Up: what devices answer becomes the core's acknowledgements, readings, online marks and
delivery states.

`Feedback` is what the pool and the renderer report to; `GatewayFeedback` is the core
behind it (the bench and the unit tests put a recorder there). Acknowledgements go to the
core at once; online marks, readings, delivery states and the acknowledgement ledger are
flushed together every `flush_interval_s`: a pool of thousands of devices coming online at
start-up would otherwise recompute their area once per device.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from adapters.modbus.client import ModbusLink
from adapters.modbus.mapper import readings_701, readings_713
from adapters.modbus.state import Acked, AckLedger, Delivery, Part
from adapters.modbus.sunspec.device import DeviceMap, read_model
from gateway.domain import Acknowledgement, DeliveryMark, DeliveryState, Reading
from gateway.errors import GatewayError, NotFound

if TYPE_CHECKING:
    from gateway.ports import GatewayPort

log = logging.getLogger(__name__)

# 701 up to its last scale factor: one request (the SFs end at offset 122 of 155).
TELEMETRY_701 = ("ConnSt", "W", "Var", "LNV", "LLV", "Hz", "W_SF", "Var_SF", "V_SF", "Hz_SF")


class Feedback(Protocol):
    """Where the pool's results go."""

    async def readings(self, readings: Sequence[Reading]) -> None: ...

    async def acknowledge(self, resource_id: str, acks: Sequence[Acknowledgement],
                          acked: Mapping[Part, Acked]) -> bool:
        """Record `acks`; True once they are stored, and `acked` (the device's whole
        acknowledgement state) is then remembered across restarts."""
        ...

    async def online(self, resource_id: str, online: bool) -> None: ...

    async def delivery(self, resource_id: str, delivery: Delivery) -> None:
        """Whether the DER's control is in force on its device, or why not."""
        ...


async def read_telemetry(link: ModbusLink, dmap: DeviceMap, resource_id: str, at: datetime,
                         protocol: str) -> list[Reading]:
    """The device's 701 measurements (one request) and 713 state of charge as readings."""
    out: list[Reading] = []
    if dmap.has(701):
        ref = dmap.models[701]
        size = max(ref.layout.point(p).offset + ref.layout.point(p).size
                   for p in TELEMETRY_701 if p in ref.layout.points)
        out += readings_701(resource_id, ref.layout, await read_model(link, ref, size), at,
                            protocol=protocol)
    if dmap.has(713):
        ref = dmap.models[713]
        out += readings_713(resource_id, ref.layout, await read_model(link, ref), at,
                            protocol=protocol)
    return out


class GatewayFeedback:
    """The core behind `Feedback`. Readings wait in a bounded buffer (oldest dropped,
    counted); online marks keep the latest per device."""

    def __init__(self, gateway: GatewayPort, ledger: AckLedger, protocol: str,
                 flush_interval_s: float = 1.0, max_pending: int = 20_000) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.protocol = protocol
        self.flush_interval_s = flush_interval_s
        self._pending: deque[Reading] = deque(maxlen=max_pending)
        self._online: dict[str, bool] = {}  # bounded by the number of devices
        self._deliveries: dict[str, Delivery] = {}  # likewise: the latest per device
        self.dropped = 0

    async def readings(self, readings: Sequence[Reading]) -> None:
        maxlen = self._pending.maxlen or len(readings)
        lost = max(0, len(self._pending) + len(readings) - maxlen)
        if lost:
            if not self.dropped:
                log.warning("modbus: readings buffer full; dropping the oldest (store too slow?)")
            self.dropped += lost
        self._pending.extend(readings)

    async def acknowledge(self, resource_id: str, acks: Sequence[Acknowledgement],
                          acked: Mapping[Part, Acked]) -> bool:
        for ack in acks:
            try:
                await self.gateway.record_acknowledgement(ack)
            except GatewayError as exc:
                log.warning("modbus %s: acknowledgement not recorded: %s", resource_id, exc)
                return False
        self.ledger.remember(resource_id, acked)
        return True

    async def online(self, resource_id: str, online: bool) -> None:
        self._online[resource_id] = online

    async def delivery(self, resource_id: str, delivery: Delivery) -> None:
        self._deliveries[resource_id] = delivery

    def forget(self, resource_id: str) -> None:
        """The device left the pool (unbound or removed): its ledger entry goes too."""
        self._online.pop(resource_id, None)
        self._deliveries.pop(resource_id, None)
        self.ledger.forget(resource_id)

    async def flush(self) -> None:
        await self._flush_online()
        await self._flush_readings()
        await self.ledger.flush()
        await self._flush_deliveries()

    async def _flush_deliveries(self) -> None:
        pending, self._deliveries = self._deliveries, {}
        if not pending:
            return
        try:
            await self.gateway.mark_delivery([
                DeliveryMark(rid, DeliveryState.DELIVERED if d.in_force
                             else DeliveryState.UNDELIVERABLE, d.reason)
                for rid, d in pending.items()])
        except BaseException:
            self._deliveries = {**pending, **self._deliveries}  # keep them for the next flush
            raise

    async def _flush_online(self) -> None:
        marks, self._online = self._online, {}
        if not marks:
            return
        try:
            await self.gateway.set_online_many(marks)
        except GatewayError:
            self._online = {**marks, **self._online}  # keep them for the next flush
            raise

    async def _flush_readings(self) -> None:
        batch = list(self._pending)
        self._pending.clear()
        if not batch:
            return
        try:
            await self.gateway.record_readings(batch)
        except NotFound:  # a resource was removed meanwhile: keep the others
            known = {r.id for r in await self.gateway.resources(protocol=self.protocol)}
            kept = [r for r in batch if r.resource_id in known]
            if kept:
                await self.gateway.record_readings(kept)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except GatewayError as exc:
                log.warning("modbus: online marks, %d readings or the acknowledgement ledger "
                            "not recorded: %s", len(self._pending), exc)
            except Exception:  # the store failed: kept for the next flush, loudly
                log.exception("modbus: flushing feedback failed; retrying at the next flush")
