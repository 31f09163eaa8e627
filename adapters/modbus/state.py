"""What the adapter knows of each device: in memory (`Device`: connection, model map, what
was last written and when) and durable (`AckLedger`: what was last acknowledged, so that a
restart, an outage or a hand-over to another process does not acknowledge it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from adapters.modbus.client import Endpoint, ModbusLink
from adapters.modbus.sunspec.device import DeviceMap, Outcome
from gateway.domain import EffectiveControl

if TYPE_CHECKING:
    from gateway.ports import RecordsPort

log = logging.getLogger(__name__)

NEVER = -1e18  # a monotonic time long past: "due at once"


class Part(StrEnum):
    """The two parts of a control that are rendered and acknowledged separately."""

    CONTROL = "control"  # 704/703: limits, setpoint, connect/energise, reversion values
    FUNCTIONS = "functions"  # 705/706/711/712 curves and 704/703 ramp points


@dataclass(frozen=True, slots=True)
class Acked:
    """A part's acknowledgement: of which rendering (its fingerprint), with which status."""

    fingerprint: str
    status: str

    def to_json(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "status": self.status}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Acked:
        return cls(str(doc["fingerprint"]), str(doc["status"]))


@dataclass(frozen=True, slots=True)
class Delivery:
    """The delivery state last reported for a device (so that only changes are sent)."""

    in_force: bool
    reason: str = ""
    fingerprint: str = ""  # of the part(s) delivered: a new control is a new delivery


@dataclass
class Device:
    resource_id: str
    endpoint: Endpoint
    w_max: float  # nameplate; replaced by the device's own 702 WMax once read
    link: ModbusLink
    control: EffectiveControl | None = None
    dmap: DeviceMap | None = None
    plan_fp: str | None = None  # of the 704/703 part last written
    written_at: float = NEVER
    functions_fp: str | None = None  # of the function settings last written
    curves_at: float = NEVER
    curves_on: set[int] = field(default_factory=set)  # curve models we enabled (705, 711...)
    telemetry_at: float = NEVER
    failures: int = 0
    online: bool | None = None
    last_error: str = ""
    acked: dict[Part, Acked] = field(default_factory=dict)  # from the ledger, then ours
    outcomes: dict[Part, Outcome] = field(default_factory=dict)  # latest write of each part
    delivery: Delivery | None = None  # last reported
    # The plan of `control` at this `w_max`, good until the control's next interval edge:
    # (control, w_max, until, plan, fingerprint, functions' fingerprint). An idle pass
    # (thousands per second in a large fleet) reuses it instead of planning afresh.
    plan_memo: tuple[Any, ...] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def forget_rendering(self) -> None:
        """After an outage: rediscover (the device may have been replaced) and write
        everything again. What was acknowledged stays known."""
        self.dmap = None
        self.plan_fp = self.functions_fp = None
        self.outcomes.clear()


class AckLedger:
    """Each device's latest acknowledgement per part, in the adapter's records (kind
    `acknowledged`, key the DER id). Entries are written in one batch per flush: should the
    process die between recording an acknowledgement and the flush, the core (idempotent per
    DER, control and status) still stores it once."""

    KIND = "acknowledged"

    def __init__(self, records: RecordsPort) -> None:
        self.records = records
        self._pending: dict[str, dict[Part, Acked]] = {}
        self._forgotten: set[str] = set()

    async def load(self) -> dict[str, dict[Part, Acked]]:
        out: dict[str, dict[Part, Acked]] = {}
        for key, doc in await self.records.list(self.KIND):
            try:
                out[key] = {Part(part): Acked.from_json(entry) for part, entry in doc.items()}
            except (KeyError, ValueError, TypeError, AttributeError):
                log.warning("modbus %s: unreadable acknowledgement ledger entry ignored", key)
        return out

    def remember(self, resource_id: str, acked: Mapping[Part, Acked]) -> None:
        self._pending[resource_id] = dict(acked)
        self._forgotten.discard(resource_id)

    def forget(self, resource_id: str) -> None:
        self._pending.pop(resource_id, None)
        self._forgotten.add(resource_id)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        forgotten, self._forgotten = self._forgotten, set()
        try:
            if pending:
                await self.records.put_many(self.KIND, {
                    rid: {part.value: a.to_json() for part, a in acked.items()}
                    for rid, acked in pending.items()})
            for rid in forgotten:
                await self.records.delete(self.KIND, rid)
        except BaseException:
            self._pending = {**pending, **self._pending}  # keep them for the next flush
            self._forgotten |= forgotten - set(self._pending)
            raise
