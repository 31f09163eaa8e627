"""Canonical model <-> IEEE 2030.5 wire models: pure functions, no I/O.

Down: an EffectiveInterval becomes one DERControlBase (CSIP-AUS limits, setpoints,
connection); a default control becomes a DefaultDERControl; 1547 curve settings become
DERCurves, the frequency-droop parameters an inline opModFreqDroop, the ramp rates the
DefaultDERControl's setGradW and setSoftGradW. Up: Response status
codes become AckStatus, mirrored readings become Readings.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters import function_settings as canonical
from adapters.ieee2030_5.codec import models as m
from gateway.domain import AckStatus, EffectiveInterval, InstructionKind, Quantity

INT16_MAX = 32767
PERCENT_HUNDREDTHS = 10000


def fit_active_power(watts: float) -> m.ActivePower:
    """The smallest power-of-ten multiplier whose scaled, rounded value fits an int16."""
    for multiplier in range(10):
        value = round(watts / 10**multiplier)
        if -INT16_MAX - 1 <= value <= INT16_MAX:
            return m.ActivePower(multiplier=multiplier, value=value)
    raise ValueError(f"{watts} W cannot be expressed as a 2030.5 ActivePower")


def active_power_w(value: m.ActivePower | m.ReactivePower | m.UnsignedValue) -> float:
    return value.value * 10.0**value.multiplier


def percent_hundredths(part: float, whole: float, *, signed: bool) -> int:
    """`part` as hundredths of a percent of `whole`, clamped to the 2030.5 range."""
    raw = round(part / whole * PERCENT_HUNDREDTHS) if whole > 0 else 0
    low = -PERCENT_HUNDREDTHS if signed else 0
    return max(low, min(PERCENT_HUNDREDTHS, raw))


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --- down: effective control -> DERControlBase ----------------------------------------------

_LIMIT_ELEMENTS = {
    "export_max_w": "opModExpLimW",
    "import_max_w": "opModImpLimW",
    "generation_max_w": "opModGenLimW",
    "load_max_w": "opModLoadLimW",
}


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How setpoints are expressed; chosen per deployment (`dispatch_as` in the config)."""

    dispatch_as: str = "target_w"  # "target_w" (opModTargetW, W) or "fixed_w" (% of rating)
    rating_w: float = 0.0  # the DER's nameplate export rating, for percentages
    ramp_tms: int | None = None  # hundredths of a second
    freq_droop: m.FreqDroopType | None = None  # standing 1547 setting, sent with every control


def control_base(interval: EffectiveInterval, options: RenderOptions) -> m.DERControlBase:
    """One effective interval as a DERControlBase; only instructed quantities are emitted."""
    quantities = {s.quantity for s in interval.sources}
    kinds = {s.kind for s in interval.sources}
    base = m.DERControlBase(rampTms=options.ramp_tms, opModFreqDroop=options.freq_droop)
    for quantity, element in _LIMIT_ELEMENTS.items():
        value = _instructed_limit(interval, quantity)
        if value is not None:
            setattr(base, element, fit_active_power(value))
    if "generation_max_w" in quantities and interval.generation_max_w is not None \
            and options.rating_w > 0:
        base.opModMaxLimW = percent_hundredths(interval.generation_max_w, options.rating_w,
                                               signed=False)
    if interval.setpoint_w is not None:
        if options.dispatch_as == "fixed_w" and options.rating_w > 0:
            base.opModFixedW = percent_hundredths(interval.setpoint_w, options.rating_w,
                                                  signed=True)
        else:
            base.opModTargetW = fit_active_power(interval.setpoint_w)
    if InstructionKind.CONNECTION in kinds or not interval.connect:
        base.opModConnect = interval.connect
    if InstructionKind.CONNECTION in kinds or not interval.energize:
        base.opModEnergize = interval.energize
    return base


def _instructed_limit(interval: EffectiveInterval, quantity: str) -> float | None:
    """The most restrictive instructed value of one limit quantity.

    The core may tighten one quantity by another (a load cap also caps import); the device
    enforces every element it receives, so each element carries what was instructed for it.
    """
    values = [float(s.value) for s in interval.sources if s.quantity == quantity
              and isinstance(s.value, int | float) and not isinstance(s.value, bool)]
    if values:
        return min(values)
    if any(s.quantity == quantity for s in interval.sources):
        instructed: float | None = getattr(interval, quantity)
        return instructed
    return None


def base_from_settings(settings: Mapping[str, Any]) -> m.DERControlBase:
    """A DERControlBase from a default-control settings document (SI keys, see docs)."""
    base = m.DERControlBase()
    for quantity, element in _LIMIT_ELEMENTS.items():
        if settings.get(quantity) is not None:
            setattr(base, element, fit_active_power(float(settings[quantity])))
    if settings.get("connect") is not None:
        base.opModConnect = bool(settings["connect"])
    if settings.get("energize") is not None:
        base.opModEnergize = bool(settings["energize"])
    if settings.get("ramp_s") is not None:
        base.rampTms = min(65535, round(float(settings["ramp_s"]) * 100))
    return base


def default_control(settings: Mapping[str, Any], mrid: str, href: str,
                    functions: Mapping[str, Any] | None = None) -> m.DefaultDERControl:
    """The DefaultDERControl of a default-control settings document; with `functions`, the
    standing 1547 parameters it carries inline as well (`freq_droop`, the ramp rates
    `set_grad_w` and `set_soft_grad_w`; `set_grad_w` also from the default control when the
    function settings have none)."""
    base = base_from_settings(settings)
    standing = standing_functions(canonical.with_default_control(functions, settings)[0])
    base.opModFreqDroop = standing.freq_droop
    return m.DefaultDERControl(
        href=href,
        mRID=mrid,
        description="default control",
        DERControlBase=base,
        setESDelay=_opt_int(settings.get("es_delay_s")),
        setESRandomDelay=_opt_int(settings.get("es_random_delay_s")),
        setGradW=standing.set_grad_w,
        setSoftGradW=standing.set_soft_grad_w,
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


# 1547 parameters carried inline in DERControlBase (not as DERCurves).

UINT16_MAX, UINT32_MAX = 65535, 2**32 - 1
DEFAULT_OPEN_LOOP_S = 5.0  # IEEE 1547-2018 default open-loop response time of freq-droop


class Unrenderable(ValueError):
    """A function setting 2030.5 cannot carry; the message says why."""


@dataclass(frozen=True, slots=True)
class StandingFunctions:
    """The 1547 elements of a function-settings document carried outside its DERCurves, and
    what could not be expressed, curves included (``"key: reason"``; a setting refused whole
    is left out)."""

    freq_droop: m.FreqDroopType | None = None
    refusals: tuple[str, ...] = ()
    set_grad_w: int | None = None  # setGradW, hundredths of a % of setMaxW per second
    set_soft_grad_w: int | None = None  # setSoftGradW, the same units


GRADIENTS = ("set_grad_w", "set_soft_grad_w")  # UInt16 in the DefaultDERControl; 0: no limit


def standing_functions(settings: Mapping[str, Any]) -> StandingFunctions:
    """Never raises: a malformed or out-of-range setting becomes a refusal."""
    refusals: list[str] = []
    droop = None
    if (params := settings.get("freq_droop")) is not None:
        try:
            droop, notes = freq_droop(params)
            refusals += [f"freq_droop: {n}" for n in notes]
        except Unrenderable as exc:
            refusals.append(f"freq_droop: {exc}")
    gradients: dict[str, int] = {}
    for key in GRADIENTS:
        if settings.get(key) is None:
            continue
        try:
            gradients[key] = _scaled(settings[key], 1, key, 0, UINT16_MAX)
        except Unrenderable as exc:
            refusals.append(f"{key}: {exc}")
    refusals += [refusal for _, refusal in _curves(settings, from_epoch(0))
                 if isinstance(refusal, str)]
    return StandingFunctions(droop, tuple(refusals), **gradients)


_DROOP_KEYS = ("db_of_hz", "db_uf_hz", "k_of", "k_uf")


def freq_droop(params: Any) -> tuple[m.FreqDroopType, list[str]]:
    """`{db_of_hz, db_uf_hz, k_of, k_uf[, response_s][, p_min_pct]}` as a FreqDroopType
    (dead bands in mHz, gains in thousandths, openLoopTms in hundredths of a second; no
    `response_s`: the 1547 default of 5 s). FreqDroopType has no minimum power, so a
    non-zero `p_min_pct` is left out and noted; anything else wrong raises Unrenderable."""
    if not isinstance(params, Mapping):
        raise Unrenderable("expected {db_of_hz, db_uf_hz, k_of, k_uf[, response_s]"
                           "[, p_min_pct]}")
    missing = [key for key in _DROOP_KEYS if params.get(key) is None]
    if missing:
        raise Unrenderable(f"missing {', '.join(missing)}")
    response = params.get("response_s")
    droop = m.FreqDroopType(
        dBOF=_scaled(params["db_of_hz"], 1000, "db_of_hz", 0, UINT32_MAX),
        dBUF=_scaled(params["db_uf_hz"], 1000, "db_uf_hz", 0, UINT32_MAX),
        kOF=_scaled(params["k_of"], 1000, "k_of", 1, UINT16_MAX),
        kUF=_scaled(params["k_uf"], 1000, "k_uf", 1, UINT16_MAX),
        openLoopTms=_scaled(DEFAULT_OPEN_LOOP_S if response is None else response, 100,
                            "response_s", 0, UINT16_MAX))
    notes = []
    p_min = params.get("p_min_pct")
    if p_min is not None and _number(p_min, "p_min_pct") != 0:
        notes.append(f"p_min_pct {p_min} not sent: 2030.5 FreqDroopType has no minimum power")
    return droop, notes


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unrenderable(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _scaled(value: Any, scale: int, what: str, low: int, high: int) -> int:
    """`value` x `scale`, rounded, within [low, high] (the 2030.5 element's range)."""
    raw = round(_number(value, what) * scale)
    if not low <= raw <= high:
        raise Unrenderable(f"{what} {value} is outside {low / scale:g}..{high / scale:g}")
    return raw


# 1547 curve settings: key -> DERCurveType (2030.5 enumeration).
CURVE_TYPES = {"freq_watt": 0, "volt_var": 11, "volt_watt": 12, "watt_pf": 13, "watt_var": 14}
CURVE_ELEMENTS = {
    "volt_var": "opModVoltVar",
    "volt_watt": "opModVoltWatt",
    "freq_watt": "opModFreqWatt",
    "watt_pf": "opModWattPF",
    "watt_var": "opModWattVar",
}


MAX_CURVE_POINTS = 10  # DERCurve holds 1 to 10 CurveData
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def curves(settings: Mapping[str, Any], now: datetime) -> list[tuple[str, m.DERCurve]]:
    """Each curve in a function-settings document that 2030.5 can carry: points are [x, y]
    pairs (% values, Hz for freq-watt), the y axis as `<key>_y_ref` says (the platform's
    default when absent), volt-watt's `volt_watt_response_s` as its openLoopTms."""
    return [(key, curve) for key, curve in _curves(settings, now)
            if isinstance(curve, m.DERCurve)]


def _curves(settings: Mapping[str, Any], now: datetime
            ) -> list[tuple[str, m.DERCurve | str]]:
    """Each curve of the document, or the refusal (``"key: reason"``) of one that cannot be
    expressed."""
    out: list[tuple[str, m.DERCurve | str]] = []
    for key, curve_type in CURVE_TYPES.items():
        points = settings.get(key)
        if not points:
            continue
        try:
            out.append((key, _curve(settings, key, curve_type, points, now)))
        except (Unrenderable, canonical.InvalidSetting) as exc:
            out.append((key, f"{key}: {exc}"))
    return out


def _curve(settings: Mapping[str, Any], key: str, curve_type: int, points: Any,
           now: datetime) -> m.DERCurve:
    if not isinstance(points, list | tuple) or len(points) > MAX_CURVE_POINTS:
        raise Unrenderable(f"expected a list of 1 to {MAX_CURVE_POINTS} [x, y] points "
                           "(a DERCurve holds at most 10)")
    data = []
    for point in points:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise Unrenderable(f"points are [x, y] pairs, not {point!r}")
        data.append(m.CurveData(xvalue=_scaled(point[0], 100, "x", INT32_MIN, INT32_MAX),
                                yvalue=_scaled(point[1], 100, "y", INT32_MIN, INT32_MAX)))
    response = settings.get("volt_watt_response_s") if key == "volt_watt" else None
    return m.DERCurve(
        mRID="00",  # the service assigns the real mRID and href
        creationTime=epoch(now),
        CurveData=data,
        curveType=curve_type,
        openLoopTms=None if response is None else _scaled(
            response, 100, "volt_watt_response_s", 0, UINT16_MAX),
        xMultiplier=-2,
        yMultiplier=-2,
        yRefType=canonical.y_ref(settings, key),
    )


def curve_links(settings: Mapping[str, Any], base_href: str) -> dict[str, str]:
    """DERControlBase element -> href of its DERCurve (`base_href`/n, numbered as `curves`
    lists them) for each curve in a function-settings document."""
    keys = [key for key, _ in curves(settings, from_epoch(0))]
    return {CURVE_ELEMENTS[key]: f"{base_href}/{n}" for n, key in enumerate(keys, 1)}


# --- identifiers ----------------------------------------------------------------------------


def server_mrid(pen: int, *parts: object) -> str:
    """A stable server mRID: 24 hex characters of digest, then the PEN as 8 decimal digits."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24].upper()
    return f"{digest}{pen:08d}"


# --- up: responses and readings -------------------------------------------------------------

RESPONSE_STATUS: dict[int, AckStatus] = {
    1: AckStatus.RECEIVED,
    2: AckStatus.STARTED,
    3: AckStatus.COMPLETED,
    4: AckStatus.OPTED_OUT,
    5: AckStatus.RECEIVED,  # opted in: the DER will take part
    6: AckStatus.CANCELLED,
    7: AckStatus.SUPERSEDED,
    8: AckStatus.PARTIAL,
    9: AckStatus.PARTIAL,
    10: AckStatus.PARTIAL,
    11: AckStatus.COMPLETED,
    12: AckStatus.REJECTED,
    13: AckStatus.EXPIRED,
    14: AckStatus.SCHEDULED,
    252: AckStatus.CANNOT_COMPLY,  # event out of bounds
    253: AckStatus.REJECTED,  # not applicable
    254: AckStatus.REJECTED,  # invalid
}


def ack_status(code: int) -> AckStatus:
    """Canonical status of a 2030.5 Response code; KeyError for a code we do not accept."""
    return RESPONSE_STATUS[code]


# ReadingType.uom -> canonical quantity (2030.5 UomType values).
UOM_QUANTITY: dict[int, Quantity] = {
    38: Quantity.ACTIVE_POWER,
    63: Quantity.REACTIVE_POWER,
    29: Quantity.VOLTAGE,
    33: Quantity.FREQUENCY,
    72: Quantity.ENERGY,
}


@dataclass(frozen=True, slots=True)
class MirroredValue:
    quantity: Quantity
    value: float
    at: datetime


def mirrored_values(
    reading_type: m.ReadingType | None, mmr: m.MirrorMeterReading, now: datetime
) -> list[MirroredValue]:
    """Every Reading of a MirrorMeterReading (direct and in reading sets) in SI units."""
    if reading_type is None or reading_type.uom not in UOM_QUANTITY:
        return []
    quantity = UOM_QUANTITY[reading_type.uom]
    scale = 10.0 ** (reading_type.powerOfTenMultiplier or 0)
    readings: list[tuple[m.Reading, int | None]] = []
    if mmr.Reading is not None:
        readings.append((mmr.Reading, mmr.lastUpdateTime))
    for rs in mmr.MirrorReadingSet:
        readings.extend((r, rs.timePeriod.start) for r in rs.Reading)
    out = []
    for reading, fallback in readings:
        if reading.value is None:
            continue
        start = reading.timePeriod.start if reading.timePeriod else fallback
        at = from_epoch(start) if start is not None else now
        value = reading.value * scale
        if math.isfinite(value):
            out.append(MirroredValue(quantity, value, at))
    return out
