"""IEEE 1547-2018 response curves: volt-var, volt-watt, watt-var and frequency-droop
(freq-watt). Pure.

Curves carry their own validity rules so that a front-end can refuse to adopt a bad one
(the SunSpec adoption handshake answers FAILED) before the physics ever sees it.
"""

from __future__ import annotations

import itertools
import math
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
        return _interpolate(self.points, v_pct)


def _interpolate(pts: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear interpolation, flat beyond the first and last points."""
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[-1][1]


def _check_points(what: str, points: tuple[tuple[float, float], ...],
                  x_range: tuple[float, float], x_unit: str, y_unit: str) -> None:
    if not 2 <= len(points) <= 10:
        raise CurveError(f"a {what} curve needs 2 to 10 points")
    xs = [x for x, _ in points]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise CurveError(f"{what} x values must strictly increase")
    low, high = x_range
    if any(not low <= x <= high for x in xs):
        raise CurveError(f"{what} x values must lie within {low:g}..{high:g} {x_unit}")
    if any(abs(y) > 100.0 + 1e-9 for _, y in points):  # converted units: rounding
        raise CurveError(f"{what} y values must lie within -100..100 {y_unit}")


@dataclass(frozen=True, slots=True)
class VoltWattCurve:
    """A cap on active power (% of w_max, or of the available power) against voltage (% of
    nominal): output above the curve is curtailed."""

    points: tuple[tuple[float, float], ...]
    of_available: bool = False  # y in % of the available power instead of w_max
    response_s: float = 10.0  # open-loop response time

    def __post_init__(self) -> None:
        _check_points("volt-watt", self.points, (50.0, 150.0), "% of nominal", "%")
        if not 0.0 <= self.response_s <= 90.0:
            raise CurveError("volt-watt response time must lie within 0..90 s")

    def w_pct(self, v_pct: float) -> float:
        return _interpolate(self.points, v_pct)


# IEEE 1547-2018 default volt-watt curve for a DER that cannot absorb active power.
DEFAULT_VOLT_WATT = VoltWattCurve(((106.0, 100.0), (110.0, 0.0)))


@dataclass(frozen=True, slots=True)
class WattVarCurve:
    """Reactive power (% of var_max, + injects) against active power (% of w_max)."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        _check_points("watt-var", self.points, (-100.0, 100.0), "% of w_max", "% of var_max")

    def var_pct(self, w_pct: float) -> float:
        return _interpolate(self.points, w_pct)


# IEEE 1547-2018 default watt-var curve (category B): absorb up to var_max at full output.
DEFAULT_WATT_VAR = WattVarCurve(((20.0, 0.0), (50.0, 0.0), (100.0, -100.0)))


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
        q = abs(p_w) * math.sqrt(1.0 - self.pf**2) / self.pf
        return q if self.over_excited else -q
