"""IEEE 1547-2018 response curves: volt-var and frequency-droop (freq-watt). Pure.

Curves carry their own validity rules so that a front-end can refuse to adopt a bad one
(the SunSpec adoption handshake answers FAILED) before the physics ever sees it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum


class CurveError(ValueError):
    """A curve that a real DER would refuse to adopt."""


class Priority(IntEnum):
    ACTIVE = 0  # keep active power, cut reactive power at the VA limit
    REACTIVE = 1  # keep reactive power, cut active power at the VA limit


@dataclass(frozen=True, slots=True)
class VoltVarCurve:
    """Reactive power (% of var_max, + injects) against voltage (% of nominal)."""

    points: tuple[tuple[float, float], ...]
    response_s: float = 5.0  # open-loop response time: 90 % of a step within this
    priority: Priority = Priority.REACTIVE

    def __post_init__(self) -> None:
        if not 2 <= len(self.points) <= 10:
            raise CurveError("a volt-var curve needs 2 to 10 points")
        volts = [v for v, _ in self.points]
        if any(b <= a for a, b in itertools.pairwise(volts)):
            raise CurveError("volt-var voltages must strictly increase")
        if any(not 50.0 <= v <= 150.0 for v in volts):
            raise CurveError("volt-var voltages must lie within 50..150 % of nominal")
        if any(not -100.0 <= q <= 100.0 for _, q in self.points):
            raise CurveError("volt-var reactive power must lie within -100..100 % of var_max")
        if not 0.0 <= self.response_s <= 90.0:
            raise CurveError("volt-var response time must lie within 0..90 s")

    def var_pct(self, v_pct: float) -> float:
        """Piecewise-linear interpolation, flat beyond the first and last points."""
        pts = self.points
        if v_pct <= pts[0][0]:
            return pts[0][1]
        for (v0, q0), (v1, q1) in itertools.pairwise(pts):
            if v_pct <= v1:
                return q0 + (q1 - q0) * (v_pct - v0) / (v1 - v0)
        return pts[-1][1]


# IEEE 1547-2018 category B default volt-var curve (V % nominal, var % of rating).
DEFAULT_VOLT_VAR = VoltVarCurve(((92.0, 44.0), (98.0, 0.0), (102.0, 0.0), (108.0, -44.0)))


@dataclass(frozen=True, slots=True)
class FreqDroop:
    """Frequency-droop: active power falls above f_nom + db_of and rises below f_nom - db_uf."""

    db_of_hz: float = 0.036
    db_uf_hz: float = 0.036
    k_of: float = 0.05  # per-unit droop: 5 % frequency change for 100 % power change
    k_uf: float = 0.05
    response_s: float = 5.0
    p_min_pct: float = 0.0  # floor for over-frequency reduction, % of w_max

    def __post_init__(self) -> None:
        if not (0.0 <= self.db_of_hz <= 1.0 and 0.0 <= self.db_uf_hz <= 1.0):
            raise CurveError("freq-droop dead bands must lie within 0..1 Hz")
        if not (0.01 <= self.k_of <= 0.1 and 0.01 <= self.k_uf <= 0.1):
            raise CurveError("freq-droop gains must lie within 0.01..0.1 per unit")
        if not 0.0 <= self.response_s <= 10.0:
            raise CurveError("freq-droop response time must lie within 0..10 s")
        if not -100.0 <= self.p_min_pct <= 100.0:
            raise CurveError("freq-droop PMin must lie within -100..100 %")

    def delta_pu(self, f_hz: float, f_nom: float) -> float:
        """Change of active power in per unit of w_max (negative above the dead band)."""
        if f_hz > f_nom + self.db_of_hz:
            return -(f_hz - f_nom - self.db_of_hz) / (f_nom * self.k_of)
        if f_hz < f_nom - self.db_uf_hz:
            return (f_nom - self.db_uf_hz - f_hz) / (f_nom * self.k_uf)
        return 0.0


@dataclass(frozen=True, slots=True)
class PowerFactor:
    """Constant power factor; over-excited injects vars, under-excited absorbs them."""

    pf: float
    over_excited: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.pf <= 1.0:
            raise CurveError("power factor must lie within (0, 1]")

    def var_for(self, p_w: float) -> float:
        q = abs(p_w) * ((1.0 - self.pf**2) ** 0.5) / self.pf
        return q if self.over_excited else -q
