"""Shared helpers for the Modbus adapter tests: a recording sink and controls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapters.modbus.state import Delivery
from gateway.domain import (
    Acknowledgement,
    EffectiveControl,
    EffectiveInterval,
    InstructionKind,
    Quantity,
    Reading,
    Source,
)


class RecordingSink:
    """The pool's results, kept in memory (stands in for the gateway core in unit tests)."""

    def __init__(self) -> None:
        self.received: list[Reading] = []
        self.acks: list[Acknowledgement] = []
        self.marks: list[tuple[str, bool]] = []
        self.acked: dict[str, dict] = {}  # what the ledger would remember, per DER
        self.deliveries: list[tuple[str, Delivery]] = []

    async def readings(self, readings) -> None:
        self.received.extend(readings)

    async def acknowledge(self, resource_id, acks, acked) -> bool:
        self.acks.extend(acks)
        self.acked[resource_id] = dict(acked)
        return True

    async def online(self, resource_id: str, online: bool) -> None:
        self.marks.append((resource_id, online))

    async def delivery(self, resource_id: str, delivery: Delivery) -> None:
        self.deliveries.append((resource_id, delivery))

    def delivered(self, resource_id: str) -> Delivery | None:
        """The latest delivery state reported for a DER."""
        found = [d for rid, d in self.deliveries if rid == resource_id]
        return found[-1] if found else None

    def latest(self, resource_id: str, quantity: Quantity) -> float | None:
        values = [r.value for r in self.received
                  if r.resource_id == resource_id and r.quantity == quantity]
        return values[-1] if values else None


def export_limit(resource_id: str, watts: float, instruction_id: str = "ins-1",
                 default_w: float | None = None) -> EffectiveControl:
    now = datetime.now(UTC)
    interval = EffectiveInterval(
        start=now - timedelta(days=1), end=now + timedelta(hours=1),  # holds for a slow run
        export_max_w=watts, import_max_w=0.0,
        sources=(Source(instruction_id, "ldc-a", InstructionKind.LIMIT, "export_max_w", watts),))
    default = {"export_max_w": default_w} if default_w is not None else None
    return EffectiveControl(resource_id, (interval,), default_control=default)
