"""Semantic checks on what parties submit: ranges, windows, shapes. Raises domain errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.coordination.topology import Topology
from gateway.domain import InstructionDraft, InstructionKind, TargetKind, utcnow
from gateway.errors import Unprocessable

MAX_POWER_W = 1e10  # 10 GW: anything above is a unit error, not a DER


def _finite(value: float, name: str, *, signed: bool = False) -> None:
    if not math.isfinite(value) or abs(value) > MAX_POWER_W or (not signed and value < 0):
        raise Unprocessable(f"{name} must be a finite {'' if signed else 'non-negative '}"
                            f"number of watts below {MAX_POWER_W:.0e}")


def _check_dispatch(draft: InstructionDraft, topology: Topology) -> None:
    if not draft.schedule:
        raise Unprocessable("a dispatch needs a schedule of at least one step")
    end = draft.end
    previous = None
    for step in draft.schedule:
        _finite(step.setpoint_w, "setpoint_w", signed=True)
        if step.start < draft.start or (end is not None and (step.end is None or step.end > end)):
            raise Unprocessable("every schedule step must lie inside the instruction's window")
        if step.end is not None and step.end <= step.start:
            raise Unprocessable("a schedule step must end after it starts")
        if previous is not None and (previous.end is None or step.start < previous.end):
            raise Unprocessable("schedule steps must be in order and must not overlap")
        previous = step
    if draft.target.kind is TargetKind.RESOURCE:
        plate = topology.resources[draft.target.id].nameplate
        for step in draft.schedule:
            if not -plate.import_max_w - 1e-6 <= step.setpoint_w <= plate.export_max_w + 1e-6:
                raise Unprocessable(
                    f"setpoint {step.setpoint_w} W is outside the DER's range "
                    f"[{-plate.import_max_w}, {plate.export_max_w}] W")


def _check_limit(draft: InstructionDraft, _topology: Topology) -> None:
    if draft.limits is None or not draft.limits.items():
        raise Unprocessable("a limit needs at least one of export_max_w, import_max_w, "
                            "generation_max_w, load_max_w")
    for quantity, value in draft.limits.items():
        _finite(value, quantity.value)


def _check_connection(draft: InstructionDraft, _topology: Topology) -> None:
    if draft.connect is None and draft.energize is None:
        raise Unprocessable("a connection instruction needs connect and/or energize")


def _check_settings(draft: InstructionDraft, _topology: Topology) -> None:
    if not draft.settings:
        raise Unprocessable(f"a {draft.kind.value} instruction needs settings")


_CHECKS: dict[InstructionKind, Callable[[InstructionDraft, Topology], None]] = {
    InstructionKind.DISPATCH: _check_dispatch,
    InstructionKind.LIMIT: _check_limit,
    InstructionKind.CONNECTION: _check_connection,
    InstructionKind.DEFAULT_CONTROL: _check_settings,
    InstructionKind.FUNCTION_SETTINGS: _check_settings,
}


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How far from now an instruction's window may lie. Back: a limit already in force
    may be recorded with its true start; ahead: every protocol can express it (2030.5
    carries a duration in 32 bits of seconds; a window "to 9999" became a control that
    ended in year 137)."""

    max_past: timedelta = timedelta(days=366)
    max_ahead: timedelta = timedelta(days=5 * 366)


def check_window(draft: InstructionDraft, now: datetime, policy: WindowPolicy) -> None:
    if draft.end is not None and draft.end <= draft.start:
        raise Unprocessable("end must be after start")
    if draft.end is not None and draft.end <= now:
        raise Unprocessable(f"the window ended at {draft.end.isoformat()}: the instruction "
                            "would have no effect (times are UTC; send a window that ends "
                            "in the future)")
    if draft.start < now - policy.max_past:
        raise Unprocessable(f"start is more than {policy.max_past.days} days in the past")
    latest = now + policy.max_ahead
    if draft.start > latest or (draft.end is not None and draft.end > latest):
        raise Unprocessable(f"the window reaches more than {policy.max_ahead.days} days "
                            "ahead, further than the gateway plans and every protocol can "
                            "carry")


def validate_instruction(draft: InstructionDraft, topology: Topology, *,
                         now: datetime | None = None,
                         policy: WindowPolicy = WindowPolicy()) -> None:
    check_window(draft, now or utcnow(), policy)
    _CHECKS[draft.kind](draft, topology)
