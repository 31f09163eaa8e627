"""What a fresh simulated inverter's registers hold, which values writes may carry, and which
points every step refreshes. Point names come from the pysunspec2 model definitions; only
values are chosen here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from simulators.der import (
    DEFAULT_VOLT_VAR,
    DEFAULT_VOLT_WATT,
    DEFAULT_WATT_VAR,
    FreqDroop,
    Measurement,
    Rating,
    RunState,
    Throttle,
)
from simulators.sunspec.image import RegisterImage

if TYPE_CHECKING:
    from simulators.sunspec.inverter import InverterSpec

# Fixed scale factors (exponents). Power-like ones depend on the rating (see power_sf).
V_SF, A_SF, HZ_SF, PF_SF, PCT_SF = -1, -2, -2, -3, -2

INV_ST = MappingProxyType({RunState.OFF: 0, RunState.SLEEPING: 1, RunState.STARTING: 2,
                           RunState.RUNNING: 3, RunState.THROTTLED: 4})
THROT_SRC = MappingProxyType({Throttle.MAX_W: 0, Throttle.FIXED_W: 1, Throttle.FIXED_VAR: 2,
                              Throttle.FIXED_PF: 3, Throttle.VOLT_VAR: 4,
                              Throttle.FREQ_WATT: 5, Throttle.WATT_VAR: 9,
                              Throttle.VOLT_WATT: 10})


def power_sf(max_abs: float) -> int:
    """The smallest exponent >= 0 that fits `max_abs` in an int16."""
    return max(0, math.ceil(math.log10(max_abs / 32767))) if max_abs > 32767 else 0


def models(spec: InverterSpec) -> list[tuple[int, dict[str, int]]]:
    counts = {"NCrv": spec.curves, "NPt": spec.curve_points, "NCtl": spec.curves}
    out: list[tuple[int, dict[str, int]]] = [(1, {}), (701, {}), (702, {}), (703, {}), (704, {})]
    out += [(mid, counts) for mid in sorted(spec.functions)]
    if spec.rating.battery:
        out.append((713, {}))
    return out


def populate(image: RegisterImage, spec: InverterSpec) -> None:
    r = spec.rating
    w_sf = power_sf(max(r.w_max, r.va_max, r.w_cha_max))
    image.set_many(1, {"Mn": "der-gateway", "Md": "SimInverter", "Opt": "sim", "Vr": "1.0",
                       "SN": spec.serial, "DA": 1})
    image.set_many(701, {"ACType": 0, "W_SF": w_sf, "VA_SF": w_sf, "Var_SF": w_sf,
                         "PF_SF": PF_SF, "A_SF": A_SF, "V_SF": V_SF, "Hz_SF": HZ_SF,
                         "TotWh_SF": 0, "TotVarh_SF": 0, "Tmp_SF": 0, "Alrm": 0, "DERMode": 1})
    _populate_702(image, r, w_sf)
    image.set_many(703, {"V_SF": PCT_SF, "Hz_SF": HZ_SF, "ES": 1, "ESDlyTms": 0, "ESRndTms": 0,
                         "ESRmpTms": 0, "ESDlyRemTms": 0})
    for path, value in {"ESVHi": 105.0, "ESVLo": 91.7, "ESHzHi": 60.1, "ESHzLo": 59.5}.items():
        image.set_value(703, path, value)
    _populate_704(image, spec, w_sf)
    populaters = {705: _populate_705, 706: _populate_706, 711: _populate_711,
                  712: _populate_712}
    for mid in sorted(spec.functions):
        populaters[mid](image, spec)
    if r.battery:
        wh_sf = power_sf(r.wh_max)
        image.set_many(713, {"WH_SF": wh_sf, "Pct_SF": V_SF, "Sta": 0})
        image.set_value(713, "WHRtg", r.wh_max)
        image.set_value(713, "SoH", 100.0)


def _populate_702(image: RegisterImage, r: Rating, w_sf: int) -> None:
    image.set_many(702, {"W_SF": w_sf, "VA_SF": w_sf, "Var_SF": w_sf, "PF_SF": PF_SF,
                         "V_SF": V_SF, "A_SF": A_SF, "S_SF": 0, "NorOpCatRtg": 1,
                         "AbnOpCatRtg": 1, "CtrlModes": sum(1 << bit for bit in range(6))})
    values = {
        "WMaxRtg": r.w_max, "VAMaxRtg": r.va_max, "VarMaxInjRtg": r.var_max,
        "VarMaxAbsRtg": r.var_max, "VNomRtg": r.v_nom, "VMaxRtg": 1.1 * r.v_nom,
        "VMinRtg": 0.88 * r.v_nom, "AMaxRtg": r.va_max / r.v_nom, "PFOvrExtRtg": 0.85,
        "PFUndExtRtg": 0.85, "WMax": r.w_max, "VAMax": r.va_max, "VarMaxInj": r.var_max,
        "VarMaxAbs": r.var_max, "VNom": r.v_nom, "VMax": 1.1 * r.v_nom, "VMin": 0.88 * r.v_nom,
        "AMax": r.va_max / r.v_nom,
    }
    if r.battery:
        charge = r.w_cha_max or r.w_max
        values |= {"WChaRteMaxRtg": charge, "WDisChaRteMaxRtg": r.w_max,
                   "WChaRteMax": charge, "WDisChaRteMax": r.w_max}
    for path, value in values.items():
        image.set_value(702, path, value)


def _populate_704(image: RegisterImage, spec: InverterSpec, w_sf: int) -> None:
    image.set_many(704, {
        "PF_SF": PF_SF, "WMaxLimPct_SF": PCT_SF, "WSet_SF": w_sf, "WSetPct_SF": PCT_SF,
        "VarSet_SF": w_sf, "VarSetPct_SF": PCT_SF,
        "WMaxLimPctEna": 0, "WMaxLimPctEnaRvrt": 0, "WMaxLimPctRvrtTms": 0, "WSetEna": 0,
        "WSetMod": 1, "WSetEnaRvrt": 0, "WSetRvrtTms": 0, "VarSetEna": 0, "VarSetMod": 4,
        "VarSetPri": 1, "VarSetEnaRvrt": 0, "VarSetRvrtTms": 0, "PFWInjEna": 0,
        "PFWInjEnaRvrt": 0, "PFWInjRvrtTms": 0, "PFWAbsEna": 0, "PFWAbsEnaRvrt": 0,
        "PFWAbsRvrtTms": 0, "WRmp": round(spec.ramp_pct_s), "WRmpRef": 1, "VarRmp": 100,
        "AntiIslEna": 1, "PFWInj.Ext": 0, "PFWInjRvrt.Ext": 0, "PFWAbs.Ext": 1,
        "PFWAbsRvrt.Ext": 1,
    })
    for path, value in {"WMaxLimPct": 100.0, "WMaxLimPctRvrt": 100.0, "WSet": 0.0,
                        "WSetRvrt": 0.0, "WSetPct": 0.0, "WSetPctRvrt": 0.0, "VarSet": 0.0,
                        "VarSetRvrt": 0.0, "VarSetPct": 0.0, "VarSetPctRvrt": 0.0,
                        "PFWInj.PF": 1.0, "PFWInjRvrt.PF": 1.0, "PFWAbs.PF": 1.0,
                        "PFWAbsRvrt.PF": 1.0}.items():
        image.set_value(704, path, value)


def _populate_705(image: RegisterImage, spec: InverterSpec) -> None:
    curve = DEFAULT_VOLT_VAR
    _populate_curves(image, 705, spec, curve.points, ("V", "Var"),
                     {"V_SF": PCT_SF, "DeptRef_SF": PCT_SF, "RspTms_SF": 0},
                     {"DeptRef": 1, "Pri": 1, "VRefAutoEna": 0, "VRefAutoTms": 0,
                      "RspTms": round(curve.response_s)})
    for i in range(spec.curves):
        image.set_value(705, f"Crv[{i}].VRef", 100.0)


def _populate_706(image: RegisterImage, spec: InverterSpec) -> None:
    curve = DEFAULT_VOLT_WATT
    _populate_curves(image, 706, spec, curve.points, ("V", "W"),
                     {"V_SF": PCT_SF, "DeptRef_SF": PCT_SF, "RspTms_SF": 0},
                     {"DeptRef": 0, "RspTms": round(curve.response_s)})


def _populate_712(image: RegisterImage, spec: InverterSpec) -> None:
    _populate_curves(image, 712, spec, DEFAULT_WATT_VAR.points, ("W", "Var"),
                     {"W_SF": PCT_SF, "DeptRef_SF": PCT_SF}, {"DeptRef": 1, "Pri": 1})


def _populate_curves(image: RegisterImage, model_id: int, spec: InverterSpec,
                     points: Sequence[tuple[float, float]], axes: tuple[str, str],
                     header: dict[str, Any], per_curve: dict[str, Any]) -> None:
    """A curve model (705, 706, 712): disabled, adoption idle, `spec.curves` curves each
    holding `points` (x, y on `axes`); curve 0 read-only, as SunSpec reserves it."""
    image.set_many(model_id, {"Ena": 0, "AdptCrvReq": 0, "AdptCrvRslt": 1,
                              "NPt": spec.curve_points, "NCrv": spec.curves, "RvrtTms": 0,
                              "RvrtRem": 0, "RvrtCrv": 0, **header})
    x, y = axes
    for i in range(spec.curves):
        c = f"Crv[{i}]."
        image.set_many(model_id, {c + "ActPt": len(points), c + "ReadOnly": 1 if i == 0 else 0,
                                  **{c + name: value for name, value in per_curve.items()}})
        for j, (a, b) in enumerate(points[: spec.curve_points]):
            image.set_value(model_id, f"{c}Pt[{j}].{x}", a)
            image.set_value(model_id, f"{c}Pt[{j}].{y}", b)


def _populate_711(image: RegisterImage, spec: InverterSpec) -> None:
    image.set_many(711, {"Ena": 0, "AdptCtlReq": 0, "AdptCtlRslt": 1, "NCtl": spec.curves,
                         "RvrtTms": 0, "RvrtRem": 0, "RvrtCtl": 0, "Db_SF": -3, "K_SF": -3,
                         "RspTms_SF": 0})
    droop = FreqDroop()
    for i in range(spec.curves):
        c = f"Ctl[{i}]."
        image.set_many(711, {c + "RspTms": round(droop.response_s), c + "PMin": 0,
                             c + "ReadOnly": 1 if i == 0 else 0})
        for path, value in {"DbOf": droop.db_of_hz, "DbUf": droop.db_uf_hz, "KOf": droop.k_of,
                            "KUf": droop.k_uf}.items():
            image.set_value(711, c + path, value)


# -- what writes may carry: (model, path with [*] for any index) -> (rating, image) -> bounds

Bounds = Callable[[Rating, RegisterImage], tuple[float, float]]


def _fixed(low: float, high: float) -> Bounds:
    return lambda _r, _i: (low, high)


def _w_set(r: Rating, _i: RegisterImage) -> tuple[float, float]:
    return (-(r.w_cha_max or r.w_max) if r.battery else 0.0), r.w_max


def _count(model_id: int, point: str) -> Bounds:
    return lambda _r, image: (0.0, float(image.get(model_id, point) or 0))


_PCT, _PF = _fixed(0.0, 100.0), _fixed(0.01, 1.0)
RANGES: MappingProxyType[tuple[int, str], Bounds] = MappingProxyType({
    (704, "WMaxLimPct"): _PCT, (704, "WMaxLimPctRvrt"): _PCT,
    (704, "WSet"): _w_set, (704, "WSetRvrt"): _w_set,
    (704, "WSetPct"): _fixed(-100.0, 100.0), (704, "WSetPctRvrt"): _fixed(-100.0, 100.0),
    (704, "VarSet"): lambda r, _i: (-r.var_max, r.var_max),
    (704, "VarSetRvrt"): lambda r, _i: (-r.var_max, r.var_max),
    (704, "VarSetPct"): _fixed(-100.0, 100.0), (704, "VarSetPctRvrt"): _fixed(-100.0, 100.0),
    (704, "PFWInj.PF"): _PF, (704, "PFWInjRvrt.PF"): _PF,
    (704, "PFWAbs.PF"): _PF, (704, "PFWAbsRvrt.PF"): _PF,
    (704, "WRmp"): _fixed(0.0, 1000.0),
    (703, "ESVHi"): _fixed(50.0, 150.0), (703, "ESVLo"): _fixed(50.0, 150.0),
    (703, "ESHzHi"): _fixed(45.0, 66.0), (703, "ESHzLo"): _fixed(45.0, 66.0),
    (703, "ESRmpTms"): _fixed(0.0, 3600.0),
    (705, "AdptCrvReq"): _count(705, "NCrv"), (705, "RvrtCrv"): _count(705, "NCrv"),
    (706, "AdptCrvReq"): _count(706, "NCrv"), (706, "RvrtCrv"): _count(706, "NCrv"),
    (712, "AdptCrvReq"): _count(712, "NCrv"), (712, "RvrtCrv"): _count(712, "NCrv"),
    (711, "AdptCtlReq"): _count(711, "NCtl"), (711, "RvrtCtl"): _count(711, "NCtl"),
    (711, "Ctl[*].PMin"): _fixed(-100.0, 100.0),
})


# -- what each step refreshes: (model, path, measurement -> value) -------------------------

Getter = Callable[[Measurement], Any]


def _throttle_bits(t: Throttle) -> int:
    return sum(1 << bit for flag, bit in THROT_SRC.items() if t & flag)


_METER_701: tuple[tuple[str, Getter], ...] = (
    ("W", lambda m: m.w), ("VA", lambda m: m.va), ("Var", lambda m: m.var),
    ("PF", lambda m: m.pf), ("A", lambda m: m.a), ("LNV", lambda m: m.v), ("Hz", lambda m: m.hz),
    ("TotWhInj", lambda m: m.wh_inj), ("TotWhAbs", lambda m: m.wh_abs),
    ("TotVarhInj", lambda m: m.varh_inj), ("TotVarhAbs", lambda m: m.varh_abs),
    ("WL1", lambda m: m.w), ("VAL1", lambda m: m.va), ("VarL1", lambda m: m.var),
    ("PFL1", lambda m: m.pf), ("AL1", lambda m: m.a), ("VL1", lambda m: m.v),
    ("St", lambda m: int(m.connected)), ("ConnSt", lambda m: int(m.connected)),
    ("InvSt", lambda m: INV_ST[m.state]), ("ThrotPct", lambda m: m.throttle_pct),
    ("ThrotSrc", lambda m: _throttle_bits(m.throttle)),
)


def meter_points(battery: bool, wh_max: float = 0.0) -> list[tuple[int, str, Getter]]:
    out = [(701, path, getter) for path, getter in _METER_701]
    if battery:
        out += [(713, "SoC", lambda m: m.soc_pct),
                (713, "WHAvail", lambda m: (m.soc_pct or 0.0) / 100.0 * wh_max)]
    return out
