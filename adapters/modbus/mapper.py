"""Canonical model <-> SunSpec points: pure functions, no I/O.

Down: the effective control active now becomes a `ControlPlan` of 703/704 point values in
engineering units (the codec applies each device's scale factors), plus the function
settings as 705/706/711/712 curves and ramp points (`sunspec/curves.py`). Up: 701/713
registers become canonical Readings; a read-back of 704 becomes an Acknowledgement. Records
carry the adapter's name (its entry-point name, `protocol`) as their protocol.

Rendering rules:
- WMaxLimPct = min(export_max_w, generation_max_w) as % of the device's WMax; at or above
  WMax the limit is disabled.
- WSet (watts mode) = setpoint_w when a dispatch is active, else WSet is disabled.
- 703 ES = connect and energize (ES 0: cease to energize).
- Reversion: every timed control carries RvrtTms; the reversion values are the platform's
  default (failsafe) control when there is one, else "limit off, no setpoint".

The 704/703 part and the function part are acknowledged separately: the first for the
instructions of the interval in force, the second for the function-settings instruction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters import function_settings as canonical
from adapters.modbus.codec import ModelLayout, mismatches
from adapters.modbus.sunspec.curves import FunctionPlan, function_plan
from gateway.domain import Acknowledgement, AckStatus, EffectiveControl, Quantity, Reading

ENABLED, DISABLED = 1, 0
WSET_WATTS = 1

# 704 points the plan writes, grouped by control (each group is one contiguous write run).
LIMIT_POINTS = ("WMaxLimPctEna", "WMaxLimPct", "WMaxLimPctRvrt", "WMaxLimPctEnaRvrt",
                "WMaxLimPctRvrtTms")
WSET_POINTS = ("WSetEna", "WSetMod", "WSet", "WSetRvrt", "WSetEnaRvrt", "WSetRvrtTms")


@dataclass(frozen=True, slots=True)
class ControlPlan:
    ctl_704: tuple[tuple[str, float], ...]
    enter_service: int | None  # 703 ES, None: leave alone
    functions: FunctionPlan = field(default_factory=FunctionPlan)  # curves, ramp points
    instruction_ids: tuple[str, ...] = field(default=(), compare=False)  # of 704/703

    @property
    def timed(self) -> bool:
        """Whether its reversion timers guard anything: with every control and every
        reversion value disabled, a lapse changes nothing, so they need no refreshing (an
        idle fleet of 25,000 inverters was rewritten every 20 s for nothing)."""
        values = dict(self.ctl_704)
        return any(values.get(name) == ENABLED for name in
                   ("WMaxLimPctEna", "WMaxLimPctEnaRvrt", "WSetEna", "WSetEnaRvrt"))

    @property
    def fingerprint(self) -> str:
        """Of the 704/703 part (the function part has its own)."""
        body = json.dumps([self.ctl_704, self.enter_service, self.instruction_ids])
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _cap_w(values: Mapping[str, Any] | Any, keys: tuple[str, ...] = (
        "export_max_w", "generation_max_w")) -> float | None:
    get = values.get if isinstance(values, Mapping) else lambda k: getattr(values, k, None)
    caps = [float(v) for k in keys if (v := get(k)) is not None]
    return min(caps) if caps else None


def _pct(cap_w: float | None, w_max: float) -> tuple[int, float]:
    """(enabled, percent) for a cap in watts."""
    if cap_w is None or cap_w >= w_max:
        return DISABLED, 100.0
    return ENABLED, max(0.0, min(100.0, 100.0 * cap_w / w_max))


def plan_for(control: EffectiveControl | None, now: datetime, w_max: float,
             reversion_s: int, nominal_hz: float = 60.0) -> ControlPlan:
    interval = control.at(now) if control else None
    default = (control.default_control if control else None) or {}
    ena, pct = _pct(_cap_w(interval) if interval else None, w_max)
    ena_rvrt, pct_rvrt = _pct(_cap_w(default), w_max)
    setpoint = interval.setpoint_w if interval else None
    wset = 0.0 if setpoint is None else max(-w_max, min(w_max, setpoint))
    points: list[tuple[str, float]] = [
        ("WMaxLimPctEna", ena), ("WMaxLimPct", pct), ("WMaxLimPctRvrt", pct_rvrt),
        ("WMaxLimPctEnaRvrt", ena_rvrt), ("WMaxLimPctRvrtTms", reversion_s),
        ("WSetEna", ENABLED if setpoint is not None else DISABLED), ("WSetMod", WSET_WATTS),
        ("WSet", round(wset)), ("WSetRvrt", 0), ("WSetEnaRvrt", DISABLED),
        ("WSetRvrtTms", reversion_s),
    ]
    es = ENABLED if interval is None or (interval.connect and interval.energize) else DISABLED
    functions = function_plan(*_function_settings(control), nominal_hz)
    ids = interval.instruction_ids if interval else ()
    return ControlPlan(ctl_704=tuple(points), enter_service=es, functions=functions,
                       instruction_ids=tuple(dict.fromkeys(ids)))


def _function_settings(control: EffectiveControl | None) -> tuple[dict[str, Any], str | None]:
    """The function settings (with `set_grad_w` from the default control when only that
    carries one) and the instruction their acknowledgement goes to: the function-settings
    instruction, else the default control's when the ramp is all there is."""
    if control is None:
        return {}, None
    settings, taken = canonical.with_default_control(control.function_settings,
                                                     control.default_control)
    source = control.function_source or (control.default_source if taken else None)
    return settings, source.instruction_id if source else None


def verify_704(layout: ModelLayout, regs: Sequence[int], plan: ControlPlan) -> list[str]:
    """Points whose read-back differs from the plan (after the device's own rounding)."""
    return mismatches(layout, regs, plan.ctl_704)


def acknowledgements(resource_id: str, instruction_ids: Sequence[str], fingerprint: str,
                     status: AckStatus, protocol_status: str, at: datetime,
                     detail: str = "", *, protocol: str) -> list[Acknowledgement]:
    """One acknowledgement per instruction of a rendered part (704/703, or the functions)."""
    ref = f"sunspec:{fingerprint}"
    return [Acknowledgement(resource_id=resource_id, status=status, protocol=protocol,
                            protocol_status=protocol_status, at=at, instruction_id=iid,
                            control_ref=ref, detail=detail)
            for iid in instruction_ids]


# -- up: telemetry -------------------------------------------------------------------------

_701: tuple[tuple[Quantity, tuple[str, ...]], ...] = (
    (Quantity.ACTIVE_POWER, ("W",)),
    (Quantity.REACTIVE_POWER, ("Var",)),
    (Quantity.VOLTAGE, ("LNV", "LLV", "VL1")),
    (Quantity.FREQUENCY, ("Hz",)),
    (Quantity.CONNECTED, ("ConnSt",)),
)


def readings_701(resource_id: str, layout: ModelLayout, regs: Sequence[int], at: datetime,
                 *, protocol: str) -> list[Reading]:
    out = []
    for quantity, candidates in _701:
        for path in candidates:
            value = layout.value(regs, path)
            if value is not None:
                out.append(Reading(resource_id, quantity, value, at, protocol))
                break
    return out


def readings_713(resource_id: str, layout: ModelLayout, regs: Sequence[int], at: datetime,
                 *, protocol: str) -> list[Reading]:
    soc = layout.value(regs, "SoC")
    if soc is None:
        return []
    return [Reading(resource_id, Quantity.STATE_OF_CHARGE, soc, at, protocol)]
