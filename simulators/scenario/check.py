"""Does each DER do what its effective control says? Pure.

The expected output of a DER in an interval: nothing when disconnected; else the setpoint
(or, without one, what the DER could produce) within the interval's import and export bounds
and within what the DER can physically do now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulators.der import Measurement, Rating


@dataclass(frozen=True, slots=True)
class Mismatch:
    der: str
    expected_w: float
    measured_w: float

    def line(self) -> str:
        return f"{self.der}: expected {self.expected_w:.0f} W, measured {self.measured_w:.0f} W"


def expected_w(interval: dict[str, Any], m: Measurement, rating: Rating) -> float:
    if not interval.get("connect", True) or not interval.get("energize", True):
        return 0.0
    hi = float(interval["export_max_w"])
    lo = -float(interval["import_max_w"])
    for key in ("generation_max_w",):
        if interval.get(key) is not None:
            hi = min(hi, float(interval[key]))
    physical_hi = m.available_w
    physical_lo = -(rating.w_cha_max or rating.w_max) if rating.battery else 0.0
    setpoint = interval.get("setpoint_w")
    natural = 0.0 if rating.battery else physical_hi
    target = natural if setpoint is None else float(setpoint)
    target = min(max(target, lo), hi)
    return min(max(target, physical_lo), max(physical_hi, physical_lo))


def tolerance(rating: Rating) -> float:
    return max(0.02 * rating.w_max, 100.0)


def compare(der: str, interval: dict[str, Any], m: Measurement, rating: Rating
            ) -> Mismatch | None:
    want = expected_w(interval, m, rating)
    if abs(m.w - want) <= tolerance(rating):
        return None
    return Mismatch(der, want, m.w)
