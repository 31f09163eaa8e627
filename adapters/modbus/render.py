"""Protocol behaviour on one device: write a ControlPlan, verify it by read-back, adopt curves,
read telemetry. No scheduling and no core calls here: the pool decides when, the service
decides where results go.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from adapters.modbus.client import DeviceMap, DeviceRefused, ModbusLink, read_model, write_runs
from adapters.modbus.codec import CodecError, encode_point
from adapters.modbus.mapper import ControlPlan, readings_701, readings_713, verify_704
from gateway.domain import AckStatus, Reading

ADOPT_POLL_S = 0.2
ADOPT_TIMEOUT_S = 5.0
STAGING_CURVE = 1  # 0-based index of the 705 curve we stage into (curve 2)
IN_PROGRESS, COMPLETED = 0, 1
# 701 up to its last scale factor: one request (the SFs end at offset 122 of 155).
TELEMETRY_701 = ("ConnSt", "W", "Var", "LNV", "LLV", "Hz", "W_SF", "Var_SF", "V_SF", "Hz_SF")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: AckStatus
    protocol_status: str
    detail: str = ""


async def apply_plan(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan, *, full: bool
                     ) -> Outcome:
    """Write the plan (all of it when `full`, else only the timed 704 part to refresh the
    reversion timers) and verify 704 by reading it back."""
    ref = dmap.models[704]
    layout = ref.layout
    regs = await read_model(link, ref)  # current image: its scale factors encode our values
    try:
        for path, value in plan.ctl_704:
            spec = layout.point(path)
            at = spec.offset
            regs[at : at + spec.size] = layout.encode_value(regs, path, value)
    except CodecError as exc:
        return Outcome(AckStatus.CANNOT_COMPLY, "not representable", str(exc))
    try:
        for offset, values in write_runs(layout, regs, [p for p, _ in plan.ctl_704]):
            await link.write(ref.address + offset, values)
        if full:
            await _enter_service(link, dmap, plan)
            if plan.volt_var is not None:
                failure = await adopt_volt_var(link, dmap, plan.volt_var)
                if failure:
                    return Outcome(AckStatus.CANNOT_COMPLY, "705 adoption failed", failure)
    except DeviceRefused as exc:
        return Outcome(AckStatus.REJECTED, f"exception 0x{exc.code:02X}", str(exc))
    back = await read_model(link, ref)
    wrong = verify_704(layout, back, plan)
    if wrong:
        return Outcome(AckStatus.CANNOT_COMPLY, "704 read-back mismatch", "; ".join(wrong))
    return Outcome(AckStatus.COMPLETED, "704 read-back verified")


async def _enter_service(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan) -> None:
    if plan.enter_service is None or not dmap.has(703):
        return
    ref = dmap.models[703]
    spec = ref.layout.point("ES")
    await link.write(ref.address + spec.offset, encode_point(spec, plan.enter_service))


async def adopt_volt_var(link: ModbusLink, dmap: DeviceMap,
                         points: tuple[tuple[float, float], ...]) -> str:
    """Stage the curve, request adoption, wait for the result, enable. '' on success."""
    if not dmap.has(705):
        return "the device has no volt-var model (705)"
    ref = dmap.models[705]
    layout = ref.layout
    regs = await read_model(link, ref)
    npt = layout.raw(regs, "NPt")
    if not isinstance(npt, int) or len(points) > npt or "Crv[1].ActPt" not in layout.points:
        return f"the device holds {npt} points in at most one curve; the curve has {len(points)}"
    c = f"Crv[{STAGING_CURVE}]."
    values: dict[str, float] = {c + "ActPt": len(points), c + "DeptRef": 1}
    for j, (v, q) in enumerate(points):
        values[f"{c}Pt[{j}].V"], values[f"{c}Pt[{j}].Var"] = v, q
    for path, value in values.items():
        spec = layout.point(path)
        regs[spec.offset : spec.offset + spec.size] = layout.encode_value(regs, path, value)
    for offset, chunk in write_runs(layout, regs, list(values)):
        await link.write(ref.address + offset, chunk)
    req = layout.point("AdptCrvReq")
    await link.write(ref.address + req.offset, [STAGING_CURVE + 1])
    rslt = layout.point("AdptCrvRslt")
    deadline = asyncio.get_running_loop().time() + ADOPT_TIMEOUT_S
    while True:
        (result,) = await link.read(ref.address + rslt.offset, 1)
        if result == COMPLETED:
            break
        if result != IN_PROGRESS or asyncio.get_running_loop().time() > deadline:
            return f"AdptCrvRslt={result}"
        await asyncio.sleep(ADOPT_POLL_S)
    ena = layout.point("Ena")
    await link.write(ref.address + ena.offset, [1])
    return ""


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
