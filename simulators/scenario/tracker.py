"""Who acknowledged what, and how fast: fed by the platform's event stream. Pure.

An instruction is acknowledged by a DER when an acknowledgement arrives after it was
submitted that names one of the instructions now in force for that DER, under a protocol
reference (mRID, event version, SunSpec plan) the DER had not acknowledged before, with a
status that is not a refusal.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

REFUSALS = frozenset({"rejected", "cannot_comply", "opted_out"})


@dataclass
class Pending:
    title: str
    instruction_id: str
    submitted: float  # monotonic seconds
    expected: dict[str, set[str]]  # DER -> instruction ids in force for it now
    refs_before: dict[str, set[str]] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)  # DER -> latency (s)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.acked) >= len(self.expected)

    def latencies(self) -> dict[str, float]:
        values = sorted(self.acked.values())
        if not values:
            return {}
        return {"p50": statistics.median(values), "p95": values[int(0.95 * (len(values) - 1))],
                "max": values[-1]}


@dataclass
class _Ack:
    at: float
    payload: dict[str, Any]


class Tracker:
    def __init__(self) -> None:
        self.acks: list[_Ack] = []
        self.pending: list[Pending] = []
        self.ack_count = 0

    def on_ack(self, payload: dict[str, Any], now: float) -> None:
        self.ack_count += 1
        ack = _Ack(now, payload)
        self.acks.append(ack)
        for p in self.pending:
            self._match(p, ack)

    def track(self, title: str, instruction_id: str, submitted: float,
              expected: dict[str, set[str]]) -> Pending:
        p = Pending(title, instruction_id, submitted, expected)
        for ack in self.acks:
            rid = ack.payload.get("resource_id")
            if ack.at < submitted and rid in expected:
                p.refs_before.setdefault(rid, set()).add(str(ack.payload.get("control_ref")))
        for ack in self.acks:
            self._match(p, ack)
        self.pending.append(p)
        return p

    @staticmethod
    def _match(p: Pending, ack: _Ack) -> None:
        rid = ack.payload.get("resource_id")
        if ack.at < p.submitted or rid not in p.expected or rid in p.acked:
            return
        if ack.payload.get("instruction_id") not in p.expected[rid]:
            return
        if str(ack.payload.get("control_ref")) in p.refs_before.get(rid, set()):
            return
        status = str(ack.payload.get("status"))
        if status in REFUSALS:
            p.refused[rid] = status
            return
        p.acked[rid] = ack.at - p.submitted
