"""IEEE 1547 function settings -> SunSpec curves (705, 706, 711, 712) and points. Pure.

The platform's function settings are one document (`EffectiveControl.function_settings`);
the keys this adapter renders, and how:

- `volt_var`: ``[[V % of nominal, var %], ...]`` -> one 705 curve. The y axis is what
  `volt_var_y_ref` says (2030.5 DERUnitRefType, default 2): 1 %setMaxW -> DeptRef
  W_MAX_PCT, 2 %setMaxVar -> VAR_MAX_PCT, 3 %statVarAvail -> VAR_AVAL_PCT.
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
- `volt_watt`: ``[[V % of nominal, W %], ...]`` -> one 706 curve. The y axis is what
  `volt_watt_y_ref` says (default 1): 1 %setMaxW -> DeptRef W_MAX_PCT, 7 %statWAvail ->
  W_AVAL_PCT. `volt_watt_response_s` (optional, seconds) -> the curve's open-loop
  response time `RspTms` (2030.5 DERCurve openLoopTms); without it the device's stays.
- `watt_var`: ``[[W % of max W, var %], ...]`` -> one 712 curve; `watt_var_y_ref` (default
  1): 1 %setMaxW -> DeptRef W_MAX_PCT, 2 %setMaxVar -> VAR_MAX_PCT, 3 %statVarAvail ->
  VAR_AVAL_PCT.
- `set_grad_w`: the normal ramp rate in hundredths of a percent of the maximum active power
  per second (2030.5 setGradW units; also read from the default control, see
  `adapters.function_settings`) -> 704 `WRmp` (whole % of WMax per second, no scale
  factor) with `WRmpRef` W_MAX. SunSpec applies it to increases of active power.
- `set_soft_grad_w`: the soft-start ramp rate, same units (2030.5 setSoftGradW) -> 703
  `ESRmpTms`, the enter-service ramp time: 10000 / set_soft_grad_w seconds from zero to full
  output, rounded to a whole second.
- `ramp_s`: the time to move from one control to the next (2030.5 rampTms) has no SunSpec
  point (704 only has a rate, and a time is not a rate without the size of each change):
  always refused.
- `watt_pf`: SunSpec's DER models (701-715) have no watt-power-factor curve: always refused.

The y references each curve may use and their defaults are the platform's
(`adapters.function_settings`); a reference outside them is refused. A setting that cannot be
expressed becomes a refusal (a sentence saying why), acknowledged
as cannot_comply; the others are still rendered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from adapters import function_settings as canonical
from adapters.modbus.codec import model_definition

VOLT_VAR_MODEL, VOLT_WATT_MODEL, FREQ_DROOP_MODEL, WATT_VAR_MODEL = 705, 706, 711, 712
ENTER_SERVICE_MODEL, CONTROLS_MODEL = 703, 704
# 2030.5 DERUnitRefType of a curve's y axis -> the DeptRef symbol of the SunSpec model
# (names from pysunspec2's 705 / 706 / 712 definitions).
VOLT_VAR_DEPT_REF = MappingProxyType({1: "W_MAX_PCT", 2: "VAR_MAX_PCT", 3: "VAR_AVAL_PCT"})
VOLT_WATT_DEPT_REF = MappingProxyType({1: "W_MAX_PCT", 7: "W_AVAL_PCT"})
WATT_VAR_DEPT_REF = MappingProxyType({1: "W_MAX_PCT", 2: "VAR_MAX_PCT", 3: "VAR_AVAL_PCT"})
W_MAX_REF = "W_MAX"  # 704 WRmpRef
HUNDREDTHS = 100.0  # 2030.5 gradients are in hundredths of a percent per second
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
class PointPlan:
    """A standing setting as plain points of one model (no adoption, no reversion timer:
    SunSpec gives 704 WRmp and 703 ESRmpTms none), e.g. ``(("WRmp", 20), ("WRmpRef", 1))``."""

    model_id: int
    setting: str
    points: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class FunctionPlan:
    """The function settings in force as SunSpec curves and points, and what cannot be
    expressed."""

    instruction_id: str | None = None
    curves: tuple[CurvePlan, ...] = ()
    refusals: tuple[str, ...] = ()
    settings: tuple[PointPlan, ...] = ()

    @property
    def fingerprint(self) -> str:
        body = json.dumps([self.instruction_id, [(c.model_id, c.points) for c in self.curves],
                           self.refusals, [(s.model_id, s.points) for s in self.settings]])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @property
    def models(self) -> frozenset[int]:
        return frozenset(c.model_id for c in self.curves)

    @property
    def has_work(self) -> bool:
        """Something to render or to refuse (settings with neither are not ours)."""
        return bool(self.curves or self.refusals or self.settings)


class Unexpressible(ValueError):
    """A setting SunSpec cannot carry; the message says why, for the acknowledgement."""


def function_plan(settings: Mapping[str, Any] | None, instruction_id: str | None,
                  nominal_hz: float) -> FunctionPlan:
    settings = settings or {}
    builders: dict[str, Callable[[Any], CurvePlan | PointPlan]] = {
        "volt_var": lambda points: volt_var(points, settings.get("volt_var_y_ref")),
        "volt_watt": lambda points: volt_watt(points, settings.get("volt_watt_y_ref"),
                                              settings.get("volt_watt_response_s")),
        "freq_droop": freq_droop,
        "freq_watt": lambda points: freq_watt(points, nominal_hz),
        "watt_var": lambda points: watt_var(points, settings.get("watt_var_y_ref")),
        "set_grad_w": ramp_rate,
        "set_soft_grad_w": soft_start_ramp,
        "ramp_s": ramp_time,
        "watt_pf": no_watt_pf,
    }
    if settings.get("freq_droop") is not None:
        builders.pop("freq_watt")  # the parameters say it exactly
    curves: list[CurvePlan] = []
    points: list[PointPlan] = []
    refusals: list[str] = []
    for key, build in builders.items():
        if settings.get(key) is None:
            continue
        try:
            plan = build(settings[key])
        except Unexpressible as exc:
            refusals.append(f"{key}: {exc}")
            continue
        if isinstance(plan, CurvePlan):
            curves.append(plan)
        else:
            points.append(plan)
    return FunctionPlan(instruction_id, tuple(curves), tuple(refusals), tuple(points))


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


def volt_var(points: Any, y_ref: Any = None) -> CurvePlan:
    """Reactive power against voltage (% of nominal) as one 705 curve."""
    pts = _pairs(points, "volt_var")
    ref = _y_ref(y_ref, "volt_var", VOLT_VAR_DEPT_REF, VOLT_VAR_MODEL)
    return _curve(VOLT_VAR_MODEL, "volt_var", ref, pts, "V", "Var")


def symbol(model_id: int, point: str, name: str) -> int:
    """The value of an enum symbol in pysunspec2's definition of a model's point."""
    def walk(group: Mapping[str, Any]) -> int | None:
        for pdef in group.get("points", []):
            if pdef["name"] == point:
                return next((s["value"] for s in pdef.get("symbols", ())
                             if s["name"] == name), None)
        for sub in group.get("groups", []):
            if (found := walk(sub)) is not None:
                return found
        return None

    found = walk(model_definition(model_id)["group"])
    if found is None:
        raise KeyError(f"{model_id} {point} has no symbol {name}")
    return int(found)


def _y_ref(value: Any, curve: str, table: Mapping[int, str], model_id: int) -> int:
    """The DeptRef symbol value for the curve's y reference (2030.5 DERUnitRefType, the
    platform's default when absent), or why the model has none."""
    try:
        ref = canonical.y_ref({f"{curve}_y_ref": value}, curve)
    except canonical.InvalidSetting as exc:
        raise Unexpressible(str(exc)) from None
    if ref not in table:
        known = ", ".join(f"{k} ({v})" for k, v in table.items())
        raise Unexpressible(f"{curve}_y_ref {ref} has no DeptRef in {model_id}; it can be "
                            f"{known}")
    return symbol(model_id, "DeptRef", table[ref])


def _curve(model_id: int, setting: str, dept_ref: int, pts: list[tuple[float, float]],
           x: str, y: str) -> CurvePlan:
    values: list[tuple[str, float]] = [("ActPt", len(pts)), ("DeptRef", dept_ref)]
    for j, (a, b) in enumerate(pts):
        values += [(f"Pt[{j}].{x}", a), (f"Pt[{j}].{y}", b)]
    return CurvePlan(model_id, setting, tuple(values))


def volt_watt(points: Any, y_ref: Any = None, response_s: Any = None) -> CurvePlan:
    """Active power against voltage (% of nominal) as one 706 curve."""
    pts = _pairs(points, "volt_watt")
    ref = _y_ref(y_ref, "volt_watt", VOLT_WATT_DEPT_REF, VOLT_WATT_MODEL)
    curve = _curve(VOLT_WATT_MODEL, "volt_watt", ref, pts, "V", "W")
    if response_s is None:
        return curve
    seconds = _number(response_s, "volt_watt_response_s")
    if seconds < 0:
        raise Unexpressible("volt_watt_response_s cannot be negative")
    return CurvePlan(VOLT_WATT_MODEL, "volt_watt", (*curve.points[:2], ("RspTms", seconds),
                                                   *curve.points[2:]))


def watt_var(points: Any, y_ref: Any = None) -> CurvePlan:
    """Reactive power against active power (% of the maximum) as one 712 curve."""
    pts = _pairs(points, "watt_var")
    ref = _y_ref(y_ref, "watt_var", WATT_VAR_DEPT_REF, WATT_VAR_MODEL)
    return _curve(WATT_VAR_MODEL, "watt_var", ref, pts, "W", "Var")


def ramp_rate(hundredths: Any) -> PointPlan:
    """2030.5 setGradW (hundredths of a % of max W per second) as 704 WRmp (whole %/s)."""
    value = _number(hundredths, "set_grad_w")
    if value <= 0:
        raise Unexpressible("a gradient of 0 means no limit in 2030.5; 704 WRmp has no value "
                            "for no limit, and a negative gradient is meaningless")
    pct = value / HUNDREDTHS
    if abs(pct - round(pct)) > _TOLERANCE:
        raise Unexpressible(f"{pct:g} %/s is not a whole percent per second; 704 WRmp has no "
                            "scale factor")
    return PointPlan(CONTROLS_MODEL, "set_grad_w",
                     (("WRmp", float(round(pct))),
                      ("WRmpRef", symbol(CONTROLS_MODEL, "WRmpRef", W_MAX_REF))))


def soft_start_ramp(hundredths: Any) -> PointPlan:
    """2030.5 setSoftGradW as 703 ESRmpTms: the time from zero to full output."""
    value = _number(hundredths, "set_soft_grad_w")
    if value <= 0:
        raise Unexpressible("the soft-start gradient must be > 0 (703 ESRmpTms is the time to "
                            "full output)")
    seconds = round(100.0 * HUNDREDTHS / value)
    if seconds < 1:
        raise Unexpressible(f"{value / HUNDREDTHS:g} %/s reaches full output in under a "
                            "second; 703 ESRmpTms counts whole seconds")
    return PointPlan(ENTER_SERVICE_MODEL, "set_soft_grad_w", (("ESRmpTms", float(seconds)),))


def ramp_time(value: Any) -> PointPlan:
    """2030.5 rampTms has no SunSpec counterpart: always refused, with the reason."""
    _number(value, "ramp_s")
    raise Unexpressible("a time to move from one control to the next has no SunSpec point: "
                        "704 has only a ramp rate (WRmp), and a time is not a rate without the "
                        "size of each change; use set_grad_w for the rate")


def no_watt_pf(points: Any) -> CurvePlan:
    del points
    raise Unexpressible("SunSpec's DER models (701-715) have no watt-power-factor curve "
                        "(IEEE 1547-2018 has watt-var, 712, instead)")


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
