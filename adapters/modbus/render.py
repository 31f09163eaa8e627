"""Protocol behaviour on one device: write a ControlPlan, verify it by read-back, adopt curves,
read telemetry. No scheduling and no core calls here: the pool decides when, the service
decides where results go.

Curves (705 volt-var, 706 volt-watt, 711 freq-droop, 712 watt-var) go through SunSpec's
adoption handshake: copy the active curve into a staging curve, write our points over it,
request adoption (AdptCrvReq / AdptCtlReq), poll the result, then enable the function with a
reversion timer (RvrtTms). Re-ensuring a curve that is already in force only rewrites Ena
and RvrtTms, which restarts the device's timer: while the gateway keeps doing that the curve
stays; when it stops, the device reverts (to RvrtCrv/RvrtCtl, or with the function off) once
the timer runs out. Standing settings without a timer (704 WRmp, 703 ESRmpTms) are written
and read back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from adapters.modbus.client import (
    DeviceMap,
    DeviceRefused,
    ModbusLink,
    ModelRef,
    read_model,
    write_runs,
)
from adapters.modbus.codec import CodecError, ModelLayout, count_points, encode_point
from adapters.modbus.curves import CurvePlan, PointPlan
from adapters.modbus.mapper import ControlPlan, readings_701, readings_713, verify_704
from gateway.domain import AckStatus, Reading

ADOPT_POLL_S = 0.2
ADOPT_TIMEOUT_S = 5.0
ACTIVE, STAGING = 0, 1  # 0-based curve indexes: the one in use, the one we stage into
IN_PROGRESS, COMPLETED = 0, 1
ENABLED, DISABLED = 1, 0
READ_ONLY = 1  # a curve group's ReadOnly point: R
# 701 up to its last scale factor: one request (the SFs end at offset 122 of 155).
TELEMETRY_701 = ("ConnSt", "W", "Var", "LNV", "LLV", "Hz", "W_SF", "Var_SF", "V_SF", "Hz_SF")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: AckStatus
    protocol_status: str
    detail: str = ""
    adopted: bool = False  # a curve had to be adopted (it was not in force)

    @property
    def ok(self) -> bool:
        return self.status is AckStatus.COMPLETED


async def apply_plan(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan, *, full: bool
                     ) -> Outcome:
    """Write the 704/703 part of the plan (all of it when `full`, else only the timed 704
    part to refresh the reversion timers) and verify 704 by reading it back."""
    ref = dmap.models[704]
    layout = ref.layout
    regs = await read_model(link, ref)  # current image: its scale factors encode our values
    try:
        _encode(layout, regs, plan.ctl_704)
    except CodecError as exc:
        return Outcome(AckStatus.CANNOT_COMPLY, "not representable", str(exc))
    try:
        for offset, values in write_runs(layout, regs, [p for p, _ in plan.ctl_704]):
            await link.write(ref.address + offset, values)
        if full:
            await _enter_service(link, dmap, plan)
    except DeviceRefused as exc:
        return Outcome(AckStatus.REJECTED, f"exception 0x{exc.code:02X}", str(exc))
    back = await read_model(link, ref)
    wrong = verify_704(layout, back, plan)
    if wrong:
        return Outcome(AckStatus.CANNOT_COMPLY, "704 read-back mismatch", "; ".join(wrong))
    return Outcome(AckStatus.COMPLETED, "704 read-back verified")


def _encode(layout: ModelLayout, regs: list[int], values: Sequence[tuple[str, float]]) -> None:
    for path, value in values:
        spec = layout.point(path)
        regs[spec.offset : spec.offset + spec.size] = layout.encode_value(regs, path, value)


async def _write(link: ModbusLink, ref: ModelRef, regs: Sequence[int],
                 paths: Sequence[str]) -> None:
    for offset, chunk in write_runs(ref.layout, regs, paths):
        await link.write(ref.address + offset, chunk)


async def _enter_service(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan) -> None:
    if plan.enter_service is None or not dmap.has(703):
        return
    ref = dmap.models[703]
    spec = ref.layout.point("ES")
    await link.write(ref.address + spec.offset, encode_point(spec, plan.enter_service))


# -- curves (705, 706, 711, 712) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurveModel:
    """The adoption points of one curve model (names from its SunSpec definition)."""

    group: str  # the repeated curve group
    req: str  # write a 1-based curve index here to adopt it
    rslt: str  # IN_PROGRESS, COMPLETED or FAILED


CURVE_MODELS = MappingProxyType({
    705: CurveModel("Crv", "AdptCrvReq", "AdptCrvRslt"),
    706: CurveModel("Crv", "AdptCrvReq", "AdptCrvRslt"),
    711: CurveModel("Ctl", "AdptCtlReq", "AdptCtlRslt"),
    712: CurveModel("Crv", "AdptCrvReq", "AdptCrvRslt"),
})


async def ensure_curve(link: ModbusLink, dmap: DeviceMap, curve: CurvePlan,
                       reversion_s: int) -> Outcome:
    """Make `curve` the device's active, enabled curve with a fresh reversion timer, then
    verify it by reading the model back. A curve already in force is not adopted again."""
    mid = curve.model_id
    if not dmap.has(mid):
        return Outcome(AckStatus.CANNOT_COMPLY, f"no model {mid}",
                       f"the device does not implement SunSpec model {mid}")
    ref, names = dmap.models[mid], CURVE_MODELS[mid]
    regs = await read_model(link, ref)
    adopted = False
    try:
        if _curve_mismatches(ref.layout, regs, names, curve) or \
                ref.layout.raw(regs, "Ena") != ENABLED:
            failure = await _adopt(link, ref, regs, names, curve)
            if failure:
                return Outcome(AckStatus.CANNOT_COMPLY, f"{mid} adoption failed", failure)
            adopted = True
        await _enable(link, ref, regs, ENABLED, reversion_s)
        back = await read_model(link, ref)
        wrong = _curve_mismatches(ref.layout, back, names, curve)
        wrong += _enable_mismatches(ref.layout, back, reversion_s)
    except CodecError as exc:
        return Outcome(AckStatus.CANNOT_COMPLY, "not representable", f"{mid}: {exc}")
    except DeviceRefused as exc:
        return Outcome(AckStatus.REJECTED, f"exception 0x{exc.code:02X}", str(exc))
    if wrong:
        return Outcome(AckStatus.CANNOT_COMPLY, f"{mid} read-back mismatch", "; ".join(wrong))
    how = "adopted" if adopted else "in force"
    return Outcome(AckStatus.COMPLETED, f"{mid} {how}, read-back verified", adopted=adopted)


async def ensure_points(link: ModbusLink, dmap: DeviceMap, setting: PointPlan) -> Outcome:
    """Write a standing setting's points (unless the device already holds them) and verify
    them by reading the model back."""
    mid = setting.model_id
    if not dmap.has(mid):
        return Outcome(AckStatus.CANNOT_COMPLY, f"no model {mid}",
                       f"the device does not implement SunSpec model {mid}")
    ref = dmap.models[mid]
    regs = await read_model(link, ref)
    absent = [p for p, _ in setting.points
              if p not in ref.layout.points or ref.layout.raw(regs, p) is None]
    if absent:
        return Outcome(AckStatus.CANNOT_COMPLY, "not representable",
                       f"{setting.setting}: the device does not implement {mid} "
                       f"{', '.join(absent)}")
    held = not _point_mismatches(ref.layout, regs, setting.points)
    try:
        if not held:
            _encode(ref.layout, regs, setting.points)
            await _write(link, ref, regs, [p for p, _ in setting.points])
            regs = await read_model(link, ref)
    except CodecError as exc:
        return Outcome(AckStatus.CANNOT_COMPLY, "not representable", f"{mid}: {exc}")
    except DeviceRefused as exc:
        return Outcome(AckStatus.REJECTED, f"exception 0x{exc.code:02X}", str(exc))
    wrong = _point_mismatches(ref.layout, regs, setting.points)
    if wrong:
        return Outcome(AckStatus.CANNOT_COMPLY, f"{mid} read-back mismatch", "; ".join(wrong))
    names = "/".join(p for p, _ in setting.points)
    how = "in force" if held else "written"
    return Outcome(AckStatus.COMPLETED, f"{mid} {names} {how}, read-back verified")


async def disable_curve(link: ModbusLink, dmap: DeviceMap, model_id: int) -> None:
    """Turn a function off at once (its setting was withdrawn), with no reversion timer."""
    if dmap.has(model_id):
        ref = dmap.models[model_id]
        await _enable(link, ref, await read_model(link, ref), DISABLED, 0)


async def _adopt(link: ModbusLink, ref: ModelRef, regs: list[int], names: CurveModel,
                 curve: CurvePlan) -> str:
    """Stage a copy of the active curve with our points, adopt it; '' on success."""
    layout = ref.layout
    stage, active = f"{names.group}[{STAGING}].", f"{names.group}[{ACTIVE}]."
    missing = [stage + p for p, _ in curve.points if stage + p not in layout.points]
    if missing:
        counts = ", ".join(f"{c}={layout.raw(regs, c)}" for c in count_points(layout.model_id))
        return f"the device cannot hold it ({counts}): it has no point {missing[0]}"
    if layout.raw(regs, stage + "ReadOnly") == READ_ONLY:
        return f"the device's staging curve {names.group}[{STAGING + 1}] is read-only"
    copied = []
    for path, spec in layout.points.items():  # keep what we do not set as the device has it
        if path.startswith(active) and spec.writable:
            target = layout.point(stage + path[len(active):])
            if layout.raw(regs, path) is not None:
                regs[target.offset : target.offset + target.size] = \
                    regs[spec.offset : spec.offset + spec.size]
                copied.append(target.path)
    _encode(layout, regs, [(stage + p, v) for p, v in curve.points])
    await _write(link, ref, regs, list(dict.fromkeys(copied + [stage + p for p, _ in
                                                                curve.points])))
    await link.write(ref.address + layout.point(names.req).offset, [STAGING + 1])
    rslt = layout.point(names.rslt)
    deadline = asyncio.get_running_loop().time() + ADOPT_TIMEOUT_S
    while True:
        (result,) = await link.read(ref.address + rslt.offset, 1)
        if result == COMPLETED:
            return ""
        if result != IN_PROGRESS or asyncio.get_running_loop().time() > deadline:
            return f"{names.rslt}={result}"
        await asyncio.sleep(ADOPT_POLL_S)


async def _enable(link: ModbusLink, ref: ModelRef, regs: list[int], ena: int,
                  reversion_s: int) -> None:
    """Write Ena and, if the device has one, its reversion timer (which restarts it)."""
    values: list[tuple[str, float]] = [("Ena", ena)]
    if ref.layout.raw(regs, "RvrtTms") is not None:
        values.append(("RvrtTms", reversion_s))
    _encode(ref.layout, regs, values)
    await _write(link, ref, regs, [p for p, _ in values])


def _curve_mismatches(layout: ModelLayout, regs: Sequence[int], names: CurveModel,
                      curve: CurvePlan) -> list[str]:
    """Points of the active curve that differ from the plan (after the device's rounding)."""
    return _point_mismatches(layout, regs, [(f"{names.group}[{ACTIVE}].{point}", wanted)
                                            for point, wanted in curve.points])


def _point_mismatches(layout: ModelLayout, regs: Sequence[int],
                      points: Sequence[tuple[str, float]]) -> list[str]:
    """Points whose value differs from the plan (after the device's rounding)."""
    wrong = []
    for path, wanted in points:
        spec = layout.point(path) if path in layout.points else None
        got = layout.value(regs, path) if spec else None
        step = 10.0 ** layout.scale(regs, spec) if spec and spec.is_scaled else 1.0
        if got is None or abs(got - wanted) > step / 2 + 1e-9:
            wrong.append(f"{path}={got} (wanted {wanted:g})")
    return wrong


def _enable_mismatches(layout: ModelLayout, regs: Sequence[int], reversion_s: int) -> list[str]:
    wrong = []
    if layout.raw(regs, "Ena") != ENABLED:
        wrong.append(f"Ena={layout.raw(regs, 'Ena')} (wanted {ENABLED})")
    timer = layout.raw(regs, "RvrtTms")
    if timer is not None and timer != reversion_s:
        wrong.append(f"RvrtTms={timer} (wanted {reversion_s})")
    return wrong


def combine(outcomes: Sequence[Outcome], refusals: Sequence[str]) -> Outcome:
    """One acknowledgement for the function settings: completed only if every part was."""
    failed = [o for o in outcomes if not o.ok]
    if refusals:
        failed.insert(0, Outcome(AckStatus.CANNOT_COMPLY, "not representable",
                                 "; ".join(refusals)))
    if not failed:
        return Outcome(AckStatus.COMPLETED, "; ".join(o.protocol_status for o in outcomes))
    worst = next((o for o in failed if o.status is AckStatus.REJECTED), failed[0])
    return Outcome(worst.status, worst.protocol_status, "; ".join(o.detail for o in failed))


# -- telemetry -----------------------------------------------------------------------------


async def telemetry(link: ModbusLink, dmap: DeviceMap, resource_id: str, at: datetime
                    ) -> list[Reading]:
    out: list[Reading] = []
    if dmap.has(701):
        ref = dmap.models[701]
        size = max(ref.layout.point(p).offset + ref.layout.point(p).size
                   for p in TELEMETRY_701 if p in ref.layout.points)
        out += readings_701(resource_id, ref.layout, await read_model(link, ref, size), at)
    if dmap.has(713):
        ref = dmap.models[713]
        out += readings_713(resource_id, ref.layout, await read_model(link, ref), at)
    return out
