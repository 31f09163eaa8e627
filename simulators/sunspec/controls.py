"""SunSpec control models (703, 704, 705, 706, 711, 712) <-> the shared DER model's settings.

Each 704 control is one row of a table: its point-name stem gives Ena, EnaRvrt, RvrtTms and
RvrtRem; a reader turns registers into the model's SI value (for the live or the reversion
set). Curves (705, 706, 711, 712) become VoltVarCurve / VoltWattCurve / FreqDroop /
WattVarCurve objects; a bad curve raises CurveError, which the adoption handshake reports as
FAILED.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulators.der import (
    DerModel,
    EnterService,
    FreqDroop,
    PowerFactor,
    Priority,
    Rating,
    VoltVarCurve,
    VoltWattCurve,
    WattVarCurve,
)
from simulators.der.curves import CurveError
from simulators.sunspec.image import RegisterImage

ENABLED = 1
OVER_EXCITED = 0
W_MAX_PCT, W_AVAL_PCT = 0, 1  # 706 DeptRef
READ_ONLY = 1  # ReadOnly point of a curve: R


def _num(image: RegisterImage, model_id: int, path: str, default: float) -> float:
    value = image.value(model_id, path)
    return default if value is None else value


def _flag(image: RegisterImage, model_id: int, path: str) -> bool:
    return image.get(model_id, path) == ENABLED


def _enum(image: RegisterImage, model_id: int, path: str) -> int | None:
    """An enumerated point's value; None when not implemented."""
    raw = image.get(model_id, path)
    return raw if isinstance(raw, int) else None


# -- 704: one row per timed control --------------------------------------------------------

Reader = Callable[[RegisterImage, Rating, bool], Any]


@dataclass(frozen=True, slots=True)
class TimedControl:
    setting: str  # DerModel attribute (a TimedSetting)
    stem: str  # SunSpec point-name stem: WMaxLimPct, WSet, VarSet, PFWInj, PFWAbs
    read: Reader  # (image, rating, revert?) -> the model value
    reverts: tuple[tuple[str, str], ...]  # (live point, reversion point) pairs copied on expiry

    @property
    def ena(self) -> str:
        return f"{self.stem}Ena"

    @property
    def tms(self) -> str:
        return f"{self.stem}RvrtTms"

    @property
    def rem(self) -> str:
        return f"{self.stem}RvrtRem"

    def apply(self, image: RegisterImage, model: DerModel) -> None:
        """Push the whole control from registers to the model; restarts its reversion timer."""
        getattr(model, self.setting).write(
            value=self.read(image, model.rating, False),
            enabled=_flag(image, 704, self.ena),
            revert_value=self.read(image, model.rating, True),
            revert_enabled=_flag(image, 704, f"{self.stem}EnaRvrt"),
            timeout_s=_num(image, 704, self.tms, 0.0),
        )

    def revert_registers(self, image: RegisterImage) -> None:
        image.copy(704, f"{self.stem}EnaRvrt", self.ena)
        for live, revert in self.reverts:
            image.copy(704, revert, live)


def _w_max_lim(image: RegisterImage, rating: Rating, revert: bool) -> float:
    del rating
    return _num(image, 704, "WMaxLimPctRvrt" if revert else "WMaxLimPct", 100.0) / 100.0


def _w_set(image: RegisterImage, rating: Rating, revert: bool) -> float:
    tail = "Rvrt" if revert else ""
    if image.get(704, "WSetMod") == 1:  # WATTS
        return _num(image, 704, f"WSet{tail}", 0.0)
    return _num(image, 704, f"WSetPct{tail}", 0.0) / 100.0 * rating.w_max


_VAR_BASE: dict[int, Callable[[Rating], float]] = {
    0: lambda r: r.w_max,  # W_MAX_PCT
    1: lambda r: r.var_max,  # VAR_MAX_PCT (705, 712 DeptRef; 704 VarSetMod)
    2: lambda r: r.var_max,  # VAR_AVAIL_PCT: the simulated DER always has var_max available
    3: lambda r: r.va_max,  # VA_MAX_PCT
}


def _var_set(image: RegisterImage, rating: Rating, revert: bool) -> float:
    tail = "Rvrt" if revert else ""
    mode = _enum(image, 704, "VarSetMod")
    if mode is None or mode == 4 or mode not in _VAR_BASE:  # VARS
        return _num(image, 704, f"VarSet{tail}", 0.0)
    return _num(image, 704, f"VarSetPct{tail}", 0.0) / 100.0 * _VAR_BASE[mode](rating)


def _pf(group: str) -> Reader:
    def read(image: RegisterImage, rating: Rating, revert: bool) -> PowerFactor:
        del rating
        path = f"{group}Rvrt" if revert else group
        pf = _num(image, 704, f"{path}.PF", 1.0)
        return PowerFactor(pf or 1.0, image.get(704, f"{path}.Ext") == OVER_EXCITED)

    return read


CONTROLS_704: tuple[TimedControl, ...] = (
    TimedControl("w_max_lim", "WMaxLimPct", _w_max_lim, (("WMaxLimPct", "WMaxLimPctRvrt"),)),
    TimedControl("w_set", "WSet", _w_set, (("WSet", "WSetRvrt"), ("WSetPct", "WSetPctRvrt"))),
    TimedControl("var_set", "VarSet", _var_set,
                 (("VarSet", "VarSetRvrt"), ("VarSetPct", "VarSetPctRvrt"))),
    TimedControl("pf_inj", "PFWInj", _pf("PFWInj"),
                 (("PFWInj.PF", "PFWInjRvrt.PF"), ("PFWInj.Ext", "PFWInjRvrt.Ext"))),
    TimedControl("pf_abs", "PFWAbs", _pf("PFWAbs"),
                 (("PFWAbs.PF", "PFWAbsRvrt.PF"), ("PFWAbs.Ext", "PFWAbsRvrt.Ext"))),
)


def control_of(path: str) -> TimedControl | None:
    """The 704 control a point belongs to (longest stem wins: PFWInjRvrt.PF -> PFWInj)."""
    head = path.split(".", 1)[0]
    for control in CONTROLS_704:
        if head.startswith(control.stem):
            return control
    return None


# -- 705 / 706 / 711 / 712 curves ----------------------------------------------------------


def _curve_points(image: RegisterImage, model_id: int, index: int, x: str, y: str
                  ) -> tuple[tuple[float, float], ...]:
    """The ActPt (x, y) points of curve `index` (0-based); CurveError when unusable."""
    prefix = f"Crv[{index}]."
    n = image.get(model_id, prefix + "ActPt")
    npt = image.get(model_id, "NPt")
    if not isinstance(n, int) or not isinstance(npt, int) or not 2 <= n <= npt:
        raise CurveError("ActPt out of range")
    points = []
    for j in range(n):
        a = image.value(model_id, f"{prefix}Pt[{j}].{x}")
        b = image.value(model_id, f"{prefix}Pt[{j}].{y}")
        if a is None or b is None:
            raise CurveError(f"point {j + 1} is not set")
        points.append((a, b))
    return tuple(points)


def read_volt_var(image: RegisterImage, index: int, rating: Rating) -> VoltVarCurve:
    """Curve `index` (0-based) of model 705 as a VoltVarCurve, its var points converted to %
    of var_max; CurveError when unusable."""
    prefix = f"Crv[{index}]."
    ref = _enum(image, 705, prefix + "DeptRef")
    if ref is None or ref not in _VAR_BASE:
        raise CurveError("DeptRef must be W_MAX_PCT, VAR_MAX_PCT, VAR_AVAL_PCT or VA_MAX_PCT")
    ratio = _VAR_BASE[ref](rating) / rating.var_max
    points = tuple((v, q * ratio) for v, q in _curve_points(image, 705, index, "V", "Var"))
    pri = image.get(705, prefix + "Pri")
    return VoltVarCurve(points, response_s=_num(image, 705, prefix + "RspTms", 5.0),
                        priority=Priority.ACTIVE if pri == 0 else Priority.REACTIVE)


def read_volt_watt(image: RegisterImage, index: int, rating: Rating) -> VoltWattCurve:
    """Curve `index` of model 706 (W in % of WMax, or of the available power)."""
    del rating
    prefix = f"Crv[{index}]."
    ref = image.get(706, prefix + "DeptRef")
    if ref not in (W_MAX_PCT, W_AVAL_PCT):
        raise CurveError("DeptRef must be W_MAX_PCT or W_AVAL_PCT")
    return VoltWattCurve(_curve_points(image, 706, index, "V", "W"),
                         of_available=ref == W_AVAL_PCT,
                         response_s=_num(image, 706, prefix + "RspTms", 10.0))


def read_watt_var(image: RegisterImage, index: int, rating: Rating) -> WattVarCurve:
    """Curve `index` of model 712, its var points converted to % of var_max."""
    ref = _enum(image, 712, f"Crv[{index}].DeptRef")
    if ref is None or ref not in _VAR_BASE:
        raise CurveError("DeptRef must be W_MAX_PCT, VAR_MAX_PCT, VAR_AVAL_PCT or VA_MAX_PCT")
    ratio = _VAR_BASE[ref](rating) / rating.var_max
    points = _curve_points(image, 712, index, "W", "Var")
    return WattVarCurve(tuple((w, q * ratio) for w, q in points))


def read_freq_droop(image: RegisterImage, index: int, rating: Rating) -> FreqDroop:
    del rating
    prefix = f"Ctl[{index}]."
    values = {name: image.value(711, prefix + name) for name in ("DbOf", "DbUf", "KOf", "KUf")}
    missing = [name for name, v in values.items() if v is None]
    if missing:
        raise CurveError(f"{', '.join(missing)} not set")
    return FreqDroop(
        db_of_hz=values["DbOf"], db_uf_hz=values["DbUf"], k_of=values["KOf"],  # type: ignore[arg-type]
        k_uf=values["KUf"],  # type: ignore[arg-type]
        response_s=_num(image, 711, prefix + "RspTms", 5.0),
        p_min_pct=_num(image, 711, prefix + "PMin", 0.0),
    )


def read_enter_service(image: RegisterImage) -> EnterService:
    return EnterService(
        enabled=_flag(image, 703, "ES"),
        v_lo_pct=_num(image, 703, "ESVLo", 91.7),
        v_hi_pct=_num(image, 703, "ESVHi", 105.0),
        f_lo_hz=_num(image, 703, "ESHzLo", 59.5),
        f_hi_hz=_num(image, 703, "ESHzHi", 60.1),
        delay_s=_num(image, 703, "ESDlyTms", 0.0),
        ramp_s=_num(image, 703, "ESRmpTms", 0.0),
    )

