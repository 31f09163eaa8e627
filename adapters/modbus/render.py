"""Down: a DER's effective control -> register writes on its device, verified by read-back.

`Renderer.render(device)` is one pass: the 704/703 part (limits, setpoint, connect and
energise, reversion values) and the function settings (705/706/711/712 curves through
`sunspec.adoption`, 704/703 ramp points) are each written when they change, and rewritten
when their reversion timers need a refresh. A change is acknowledged once per rendering and
status (the device's acknowledgement state survives restarts, `state.AckLedger`); whether
the control is in force on the device, or why not, is reported as the DER's delivery state.
Standing settings without a timer (704 WRmp, 703 ESRmpTms) are written and read back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from adapters.modbus.client import DeviceRefused, ModbusLink
from adapters.modbus.codec import CodecError, encode_point, mismatches
from adapters.modbus.feedback import Feedback
from adapters.modbus.mapper import ControlPlan, acknowledgements, plan_for, verify_704
from adapters.modbus.settings import Settings
from adapters.modbus.state import Acked, Delivery, Device, Part
from adapters.modbus.sunspec.adoption import disable_curve, ensure_curve
from adapters.modbus.sunspec.curves import FunctionPlan, PointPlan
from adapters.modbus.sunspec.device import (
    DeviceMap,
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

log = logging.getLogger(__name__)


class Renderer:
    def __init__(self, settings: Settings, feedback: Feedback, protocol: str,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.feedback = feedback
        self.protocol = protocol
        self.clock = clock

    async def render(self, dev: Device) -> None:
        """Write what is due on a discovered device; acknowledge what changed."""
        plan, fingerprint, functions_fp = self._plan(dev)
        if fingerprint == dev.plan_fp and functions_fp == dev.functions_fp \
                and not self._refresh_pending(dev, plan):
            return  # an idle pass: nothing new, no timer to restart
        await self._render_control(dev, plan, fingerprint)
        await self._render_functions(dev, plan.functions, functions_fp)
        await self._report(dev, _delivery(dev))

    def _plan(self, dev: Device) -> tuple[ControlPlan, str, str]:
        """The device's plan now (with its fingerprints), planned again only when its control
        or rating changed or the control reached an interval's start or end."""
        now = _utcnow()
        memo = dev.plan_memo
        if memo is not None and memo[0] is dev.control and memo[1] == dev.w_max and \
                (memo[2] is None or now < memo[2]):
            return memo[3], memo[4], memo[5]
        plan = plan_for(dev.control, now, dev.w_max, self.settings.reversion_s,
                        self.settings.nominal_hz)
        until = dev.control.next_change(now) if dev.control is not None else None
        dev.plan_memo = (dev.control, dev.w_max, until, plan, plan.fingerprint,
                         plan.functions.fingerprint)
        return plan, dev.plan_memo[4], dev.plan_memo[5]

    def _refresh_pending(self, dev: Device, plan: ControlPlan) -> bool:
        """Whether a written control's or curve's reversion timer is due for a restart."""
        return bool((self._refresh_due(dev.written_at) and plan.timed)
                    or (dev.curves_on and self._refresh_due(dev.curves_at)))

    async def unreachable(self, dev: Device, reason: str) -> None:
        """The device cannot be reached (or is no SunSpec device): its control is not
        delivered, whatever was written before."""
        await self._report(dev, Delivery(False, reason))

    async def _report(self, dev: Device, delivery: Delivery | None) -> None:
        """Tell the core the DER's delivery state when it changed (a new control delivered
        counts as a change)."""
        if delivery is None or delivery == dev.delivery:
            return
        await self.feedback.delivery(dev.resource_id, delivery)
        dev.delivery = delivery

    def _refresh_due(self, written_at: float) -> bool:
        return self.clock() - written_at >= self.settings.refresh_s

    async def _render_control(self, dev: Device, plan: ControlPlan, fingerprint: str) -> None:
        """(`fingerprint`: the plan's, as `_plan` keeps it: a JSON dump and a hash each)"""
        assert dev.dmap is not None
        now = self.clock()
        changed = fingerprint != dev.plan_fp
        if not dev.dmap.has(704):  # e.g. a legacy-only (12x models) device
            if changed:
                dev.plan_fp = fingerprint
                outcome = missing_model(704, "DER AC controls")
                dev.outcomes[Part.CONTROL] = outcome
                await self._acknowledge(dev, Part.CONTROL, plan.instruction_ids,
                                        fingerprint, outcome)
            return
        if not (changed or (self._refresh_due(dev.written_at) and plan.timed)):
            return
        outcome = await apply_plan(dev.link, dev.dmap, plan, full=changed)
        dev.written_at, dev.plan_fp = now, fingerprint
        dev.outcomes[Part.CONTROL] = outcome
        if changed:
            await self._acknowledge(dev, Part.CONTROL, plan.instruction_ids, fingerprint,
                                    outcome)

    async def _render_functions(self, dev: Device, functions: FunctionPlan,
                                fingerprint: str) -> None:
        """Adopt the curves and write the ramp points when the settings change (and turn
        off withdrawn curves); in between, restart the curves' reversion timers, re-adopting
        a curve the device lost."""
        assert dev.dmap is not None
        now = self.clock()
        if fingerprint == dev.functions_fp:
            if dev.curves_on and self._refresh_due(dev.curves_at):
                await self._refresh_curves(dev, functions)
                dev.curves_at = now
            return
        for model_id in sorted(dev.curves_on - functions.models):  # withdrawn: off at once
            await disable_curve(dev.link, dev.dmap, model_id)
            dev.curves_on.discard(model_id)
        outcomes = []
        for curve in functions.curves:
            outcome = await ensure_curve(dev.link, dev.dmap, curve, self.settings.reversion_s)
            outcomes.append(outcome)
            if outcome.ok:
                dev.curves_on.add(curve.model_id)
            elif curve.model_id in dev.curves_on:  # the old curve must not stay in force
                dev.curves_on.discard(curve.model_id)
                await disable_curve(dev.link, dev.dmap, curve.model_id)
        for setting in functions.settings:  # standing points: no timer to refresh later
            outcomes.append(await ensure_points(dev.link, dev.dmap, setting))
        dev.functions_fp, dev.curves_at = fingerprint, now
        if not functions.has_work:
            dev.outcomes.pop(Part.FUNCTIONS, None)
            return
        outcome = combine(outcomes, functions.refusals)
        dev.outcomes[Part.FUNCTIONS] = outcome
        if functions.instruction_id is not None:
            await self._acknowledge(dev, Part.FUNCTIONS, (functions.instruction_id,),
                                    fingerprint, outcome)

    async def _refresh_curves(self, dev: Device, functions: FunctionPlan) -> None:
        """Restart the timers of the curves in force; one the device lost is adopted again
        (logged: another master, or a reversion during an outage), one it refuses is lost
        (and the DER's delivery state says so)."""
        assert dev.dmap is not None
        for curve in functions.curves:
            if curve.model_id not in dev.curves_on:
                continue
            outcome = await ensure_curve(dev.link, dev.dmap, curve, self.settings.reversion_s)
            if not outcome.ok:
                dev.curves_on.discard(curve.model_id)
                dev.outcomes[Part.FUNCTIONS] = outcome
            if outcome.adopted or not outcome.ok:
                log.warning("modbus %s: %d was no longer in force: %s %s", dev.resource_id,
                            curve.model_id, outcome.protocol_status, outcome.detail)

    async def _acknowledge(self, dev: Device, part: Part, instruction_ids: Sequence[str],
                           fingerprint: str, outcome: Outcome) -> None:
        """Acknowledge a part's rendering, unless this very rendering was already
        acknowledged with this status (before a restart, an outage or a hand-over)."""
        if outcome.detail:
            log.warning("modbus %s: %s: %s", dev.resource_id, outcome.protocol_status,
                        outcome.detail)
        acked = Acked(fingerprint, outcome.status.value)
        if dev.acked.get(part) == acked:
            return
        acks = acknowledgements(dev.resource_id, instruction_ids, fingerprint, outcome.status,
                                outcome.protocol_status, _utcnow(), outcome.detail,
                                protocol=self.protocol)
        if not acks:
            return
        state = {**dev.acked, part: acked}
        if await self.feedback.acknowledge(dev.resource_id, acks, state):
            dev.acked = state


_PART_NAMES = {Part.CONTROL: "704/703 control", Part.FUNCTIONS: "function settings"}


def _delivery(dev: Device) -> Delivery | None:
    """What the latest writes of each part came to; None before anything was written."""
    if not dev.outcomes:
        return None
    failed = [f"{_PART_NAMES[part]}: {o.reason}" for part, o in sorted(dev.outcomes.items())
              if not o.in_force]
    if failed:
        return Delivery(False, "; ".join(failed))
    return Delivery(True, fingerprint=f"{dev.plan_fp}/{dev.functions_fp}")


# -- writing to the device -------------------------------------------------------------------


async def apply_plan(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan, *, full: bool
                     ) -> Outcome:
    """Write the 704/703 part of the plan (all of it when `full`, else only the timed 704
    part to refresh the reversion timers) and verify 704 by reading it back."""
    ref = dmap.models[704]
    regs = await read_model(link, ref)  # current image: its scale factors encode our values
    try:
        encode_into(ref.layout, regs, plan.ctl_704)
    except CodecError as exc:
        return unrepresentable(str(exc))
    try:
        await write_points(link, ref, regs, [p for p, _ in plan.ctl_704])
        if full:
            await _enter_service(link, dmap, plan)
    except DeviceRefused as exc:
        return refused(exc)
    wrong = verify_704(ref.layout, await read_model(link, ref), plan)
    if wrong:
        return not_in_force(AckStatus.CANNOT_COMPLY, "704 read-back mismatch", "; ".join(wrong))
    return completed("704 read-back verified")


async def _enter_service(link: ModbusLink, dmap: DeviceMap, plan: ControlPlan) -> None:
    if plan.enter_service is None or not dmap.has(703):
        return
    ref = dmap.models[703]
    spec = ref.layout.point("ES")
    await link.write(ref.address + spec.offset, encode_point(spec, plan.enter_service))


async def ensure_points(link: ModbusLink, dmap: DeviceMap, setting: PointPlan) -> Outcome:
    """Write a standing setting's points (unless the device already holds them) and verify
    them by reading the model back."""
    mid = setting.model_id
    if not dmap.has(mid):
        return missing_model(mid)
    ref = dmap.models[mid]
    regs = await read_model(link, ref)
    absent = [p for p, _ in setting.points
              if p not in ref.layout.points or ref.layout.raw(regs, p) is None]
    if absent:
        return unrepresentable(f"{setting.setting}: the device does not implement {mid} "
                               f"{', '.join(absent)}")
    held = not mismatches(ref.layout, regs, setting.points)
    try:
        if not held:
            encode_into(ref.layout, regs, setting.points)
            await write_points(link, ref, regs, [p for p, _ in setting.points])
            regs = await read_model(link, ref)
    except CodecError as exc:
        return unrepresentable(f"{mid}: {exc}")
    except DeviceRefused as exc:
        return refused(exc)
    wrong = mismatches(ref.layout, regs, setting.points)
    if wrong:
        return not_in_force(AckStatus.CANNOT_COMPLY, f"{mid} read-back mismatch",
                            "; ".join(wrong))
    names = "/".join(p for p, _ in setting.points)
    return completed(f"{mid} {names} {'in force' if held else 'written'}, read-back verified")


def combine(outcomes: Sequence[Outcome], refusals: Sequence[str]) -> Outcome:
    """One acknowledgement for the function settings: completed only if every part was.
    Settings SunSpec cannot express (`refusals`) are refused; they do not make the rest
    any less delivered."""
    failed = [o for o in outcomes if not o.ok]
    if refusals:
        failed.insert(0, Outcome(AckStatus.CANNOT_COMPLY, "not representable",
                                 "; ".join(refusals)))
    if not failed:
        return completed("; ".join(o.protocol_status for o in outcomes))
    worst = next((o for o in failed if o.status is AckStatus.REJECTED), failed[0])
    return Outcome(worst.status, worst.protocol_status, "; ".join(o.detail for o in failed),
                   in_force=all(o.in_force for o in outcomes))


def _utcnow() -> datetime:
    return datetime.now(UTC)
