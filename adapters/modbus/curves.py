"""IEEE 1547 function settings -> SunSpec curve groups (705 volt-var, 711 freq-droop). Pure.

The platform's function settings are one document (`EffectiveControl.function_settings`);
the keys this adapter renders, and how:

- `volt_var`: ``[[V % of nominal, var % of VarMax], ...]`` -> one 705 curve (DeptRef
  VAR_MAX_PCT).
- `freq_droop`: ``{db_of_hz, db_uf_hz, k_of, k_uf[, response_s][, p_min_pct]}``, the IEEE
  1547-2018 frequency-droop parameters (2030.5's opModFreqDroop dBOF/dBUF/kOF/kUF/openLoopTms)
  -> one 711 control (DbOf, DbUf, KOf, KUf, RspTms, PMin).
- `freq_watt`: ``[[Hz, % of max W], ...]`` (the x axis in hertz, as 2030.5's freq-watt
  DERCurve has it) -> the over-frequency half of a 711 control, when the curve has a droop's
  shape: full output (100 %) up to f1 >= nominal, one straight fall to y2 at f2, flat beyond.
  Then DbOf = f1 - nominal, KOf = ((f2 - f1) / nominal) / ((100 - y2) / 100) and PMin = y2;
  the under-frequency side and the response time stay as the device has them. Anything else
  (a cap inside the dead band, a rise, several slopes) is not a droop and cannot be expressed
  in 711. With `freq_droop` present, `freq_watt` is not used.

A setting that cannot be expressed becomes a refusal (a sentence saying why), acknowledged
as cannot_comply; the others are still rendered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

VOLT_VAR_MODEL, FREQ_DROOP_MODEL = 705, 711
VAR_MAX_PCT = 1  # 705 DeptRef
_HZ_BAND = 0.1  # freq-watt x values must lie within nominal +-10 %
_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class CurvePlan:
    """One function as the points of one curve (705) or control (711) group; paths are
    relative to the group (``Pt[0].V``, ``KOf``)."""

    model_id: int
    setting: str  # the function-settings key it comes from
    points: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """The function settings in force as SunSpec curves, and what cannot be expressed."""

    instruction_id: str | None = None
    curves: tuple[CurvePlan, ...] = ()
    refusals: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        body = json.dumps([self.instruction_id, [(c.model_id, c.points) for c in self.curves],
                           self.refusals])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @property
    def models(self) -> frozenset[int]:
        return frozenset(c.model_id for c in self.curves)

    @property
    def has_work(self) -> bool:
        """Something to render or to refuse (settings with neither are not ours)."""
        return bool(self.curves or self.refusals)


class Unexpressible(ValueError):
    """A setting SunSpec cannot carry; the message says why, for the acknowledgement."""


def function_plan(settings: Mapping[str, Any] | None, instruction_id: str | None,
                  nominal_hz: float) -> FunctionPlan:
    settings = settings or {}
    builders: dict[str, Callable[[Any], CurvePlan]] = {
        "volt_var": volt_var,
        "freq_droop": freq_droop,
        "freq_watt": lambda points: freq_watt(points, nominal_hz),
    }
    if settings.get("freq_droop") is not None:
        builders.pop("freq_watt")  # the parameters say it exactly
    curves, refusals = [], []
    for key, build in builders.items():
        if settings.get(key) is None:
            continue
        try:
            curves.append(build(settings[key]))
        except Unexpressible as exc:
            refusals.append(f"{key}: {exc}")
    return FunctionPlan(instruction_id, tuple(curves), tuple(refusals))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unexpressible(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _pairs(points: Any, what: str) -> list[tuple[float, float]]:
    if not isinstance(points, list | tuple) or len(points) < 2:
        raise Unexpressible(f"{what} needs a list of at least two [x, y] points")
    out = []
    for point in points:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise Unexpressible(f"{what} points are [x, y] pairs, not {point!r}")
        out.append((_number(point[0], f"{what} x"), _number(point[1], f"{what} y")))
    if any(b[0] <= a[0] for a, b in itertools.pairwise(out)):
        raise Unexpressible(f"{what} x values must strictly increase")
    return out


def volt_var(points: Any) -> CurvePlan:
    pts = _pairs(points, "volt_var")
    values: list[tuple[str, float]] = [("ActPt", len(pts)), ("DeptRef", VAR_MAX_PCT)]
    for j, (v, q) in enumerate(pts):
        values += [(f"Pt[{j}].V", v), (f"Pt[{j}].Var", q)]
    return CurvePlan(VOLT_VAR_MODEL, "volt_var", tuple(values))


_DROOP_POINTS = (("db_of_hz", "DbOf"), ("db_uf_hz", "DbUf"), ("k_of", "KOf"), ("k_uf", "KUf"))
_DROOP_OPTIONAL = (("response_s", "RspTms"), ("p_min_pct", "PMin"))


def freq_droop(params: Any) -> CurvePlan:
    if not isinstance(params, Mapping):
        raise Unexpressible("expected {db_of_hz, db_uf_hz, k_of, k_uf[, response_s]"
                            "[, p_min_pct]}")
    missing = [key for key, _ in _DROOP_POINTS if params.get(key) is None]
    if missing:
        raise Unexpressible(f"missing {', '.join(missing)}")
    values = [(point, _number(params[key], key)) for key, point in _DROOP_POINTS]
    values += [(point, _number(params[key], key)) for key, point in _DROOP_OPTIONAL
               if params.get(key) is not None]
    named = dict(values)
    if named["DbOf"] < 0 or named["DbUf"] < 0:
        raise Unexpressible("dead bands are widths in Hz and cannot be negative")
    if named["KOf"] <= 0 or named["KUf"] <= 0:
        raise Unexpressible("droop gains k_of and k_uf must be > 0")
    if named.get("RspTms", 0.0) < 0:
        raise Unexpressible("response_s cannot be negative")
    return CurvePlan(FREQ_DROOP_MODEL, "freq_droop", tuple(values))


def freq_watt(points: Any, nominal_hz: float) -> CurvePlan:
    """A freq-watt curve with a droop's shape as 711 over-frequency parameters."""
    pts = _pairs(points, "freq_watt")
    low, high = nominal_hz * (1 - _HZ_BAND), nominal_hz * (1 + _HZ_BAND)
    if not all(low <= f <= high for f, _ in pts):
        raise Unexpressible(f"x values are frequencies in Hz and must lie within "
                            f"{low:g}..{high:g} Hz (nominal {nominal_hz:g} Hz)")
    if any(b[1] > a[1] + _TOLERANCE for a, b in itertools.pairwise(pts)):
        raise Unexpressible("power rises with frequency somewhere; 711 only reduces output "
                            "above the dead band")
    head = 0  # last point of the leading flat part
    while head + 1 < len(pts) and abs(pts[head + 1][1] - pts[0][1]) <= _TOLERANCE:
        head += 1
    if abs(pts[0][1] - 100.0) > _TOLERANCE:
        raise Unexpressible(f"the curve allows {pts[0][1]:g} % at nominal frequency; 711 "
                            "droops from full output (100 %), so a cap belongs in a limit")
    if head == len(pts) - 1:
        raise Unexpressible("the curve never reduces power: there is no droop to express")
    (f1, y1), (f2, y2) = pts[head], pts[head + 1]
    if f1 < nominal_hz - _TOLERANCE:
        raise Unexpressible(f"the fall starts at {f1:g} Hz, below the nominal {nominal_hz:g} Hz")
    slope = (y2 - y1) / (f2 - f1)
    tail = head + 1  # end of the straight fall
    while tail + 1 < len(pts) and abs((pts[tail + 1][1] - y1) - slope * (pts[tail + 1][0] - f1)) \
            <= 1e-6 * max(1.0, abs(slope)):
        tail += 1
    f2, y2 = pts[tail]
    if any(abs(y - y2) > _TOLERANCE for _, y in pts[tail + 1:]):
        raise Unexpressible("the curve has more than one slope; 711 has one droop gain "
                            "above the dead band")
    k_of = ((f2 - f1) / nominal_hz) / ((100.0 - y2) / 100.0)
    return CurvePlan(FREQ_DROOP_MODEL, "freq_watt",
                     (("DbOf", f1 - nominal_hz), ("KOf", k_of), ("PMin", y2)))
