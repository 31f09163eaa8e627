"""SunSpec's curve adoption handshake (705 volt-var, 706 volt-watt, 711 freq-droop, 712
watt-var) on one device.

Copy the active curve into a staging curve, write our points over it, request adoption
(AdptCrvReq / AdptCtlReq), poll the result, then enable the function with a reversion timer
(RvrtTms). Re-ensuring a curve that is already in force only rewrites Ena and RvrtTms, which
restarts the device's timer: while the gateway keeps doing that the curve stays; when it
stops, the device reverts (to RvrtCrv/RvrtCtl, or with the function off) once the timer runs
out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from adapters.modbus.client import DeviceRefused, ModbusLink
from adapters.modbus.codec import CodecError, ModelLayout, count_points, mismatches
from adapters.modbus.sunspec.curves import CurvePlan
from adapters.modbus.sunspec.device import (
    DeviceMap,
    ModelRef,
    Outcome,
    completed,
    encode_into,
    missing_model,
    not_in_force,
    read_model,
    refused,
    unrepresentable,
    write_points,
)
from gateway.domain import AckStatus

ADOPT_POLL_S = 0.2
ADOPT_TIMEOUT_S = 5.0
ACTIVE, STAGING = 0, 1  # 0-based curve indexes: the one in use, the one we stage into
IN_PROGRESS, COMPLETED = 0, 1
ENABLED, DISABLED = 1, 0
READ_ONLY = 1  # a curve group's ReadOnly point: R


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
        return missing_model(mid)
    ref, names = dmap.models[mid], CURVE_MODELS[mid]
    regs = await read_model(link, ref)
    adopted = False
    try:
        if _curve_mismatches(ref.layout, regs, names, curve) or \
                ref.layout.raw(regs, "Ena") != ENABLED:
            failure = await _adopt(link, ref, regs, names, curve)
            if failure:
                return not_in_force(AckStatus.CANNOT_COMPLY, f"{mid} adoption failed", failure)
            adopted = True
        await _enable(link, ref, regs, ENABLED, reversion_s)
        back = await read_model(link, ref)
        wrong = _curve_mismatches(ref.layout, back, names, curve)
        wrong += _enable_mismatches(ref.layout, back, reversion_s)
    except CodecError as exc:
        return unrepresentable(f"{mid}: {exc}")
    except DeviceRefused as exc:
        return refused(exc)
    if wrong:
        return not_in_force(AckStatus.CANNOT_COMPLY, f"{mid} read-back mismatch",
                            "; ".join(wrong))
    how = "adopted" if adopted else "in force"
    return completed(f"{mid} {how}, read-back verified", adopted=adopted)


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
    encode_into(layout, regs, [(stage + p, v) for p, v in curve.points])
    await write_points(link, ref, regs, list(dict.fromkeys(
        copied + [stage + p for p, _ in curve.points])))
    await link.write(ref.address + layout.point(names.req).offset, [STAGING + 1])
    return await _adoption_result(link, ref, names)


async def _adoption_result(link: ModbusLink, ref: ModelRef, names: CurveModel) -> str:
    """Poll the adoption result until it is final or the time-out; '' when completed."""
    rslt = ref.layout.point(names.rslt)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ADOPT_TIMEOUT_S
    while True:
        (result,) = await link.read(ref.address + rslt.offset, 1)
        if result == COMPLETED:
            return ""
        if result != IN_PROGRESS or loop.time() > deadline:
            return f"{names.rslt}={result}"
        await asyncio.sleep(ADOPT_POLL_S)


async def _enable(link: ModbusLink, ref: ModelRef, regs: list[int], ena: int,
                  reversion_s: int) -> None:
    """Write Ena and, if the device has one, its reversion timer (which restarts it)."""
    values: list[tuple[str, float]] = [("Ena", ena)]
    if ref.layout.raw(regs, "RvrtTms") is not None:
        values.append(("RvrtTms", reversion_s))
    encode_into(ref.layout, regs, values)
    await write_points(link, ref, regs, [p for p, _ in values])


def _curve_mismatches(layout: ModelLayout, regs: Sequence[int], names: CurveModel,
                      curve: CurvePlan) -> list[str]:
    """Points of the active curve that differ from the plan (after the device's rounding)."""
    return mismatches(layout, regs, [(f"{names.group}[{ACTIVE}].{point}", wanted)
                                     for point, wanted in curve.points])


def _enable_mismatches(layout: ModelLayout, regs: Sequence[int], reversion_s: int) -> list[str]:
    wrong = []
    if layout.raw(regs, "Ena") != ENABLED:
        wrong.append(f"Ena={layout.raw(regs, 'Ena')} (wanted {ENABLED})")
    timer = layout.raw(regs, "RvrtTms")
    if timer is not None and timer != reversion_s:
        wrong.append(f"RvrtTms={timer} (wanted {reversion_s})")
    return wrong
