"""Canonical model <-> the OPC UA model's values and method arguments. Pure functions.

Values are plain Python (float, bool, str, datetime, list[str]); `None` means "no value", and
the variable's status says why (`codec.values`): a SCADA client never mistakes an absent
setpoint for 0 W.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.opcua.codec.arguments import ArgumentError
from adapters.opcua.codec.values import Value
from gateway import errors
from gateway.domain import (
    Acknowledgement,
    EffectiveInterval,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Quantity,
    Reading,
    SetpointStep,
    Source,
    Target,
    TargetKind,
)

# Which measurement variable each canonical reading quantity updates.
MEASUREMENT_OF: dict[str, str] = {
    Quantity.ACTIVE_POWER.value: "W",
    Quantity.REACTIVE_POWER.value: "var",
    Quantity.VOLTAGE.value: "V",
    Quantity.FREQUENCY.value: "Hz",
    Quantity.STATE_OF_CHARGE.value: "SoC",
    Quantity.CONNECTED.value: "Connected",
}

# gateway.errors -> OPC UA status code names (resolved to numbers by the server edge).
STATUS_OF_ERROR: dict[type[errors.GatewayError], str] = {
    errors.InvalidInput: "BadInvalidArgument",
    errors.Unprocessable: "BadOutOfRange",
    errors.Unauthenticated: "BadIdentityTokenRejected",
    errors.Forbidden: "BadUserAccessDenied",
    errors.NotFound: "BadNodeIdUnknown",
    errors.Conflict: "BadInvalidState",
    errors.Unavailable: "BadResourceUnavailable",
}

REASON_MAX = 500


def status_of_error(exc: errors.GatewayError) -> str:
    for cls in type(exc).__mro__:
        name = STATUS_OF_ERROR.get(cls)
        if name is not None:
            return name
    return "BadInternalError"


# --- feedback -> variable values -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeasurementUpdate:
    resource_id: str
    variable: str
    value: float | bool
    at: datetime


def reading_update(reading: Reading) -> MeasurementUpdate | None:
    """A reading as a measurement update, or None if the model has no variable for it."""
    variable = MEASUREMENT_OF.get(str(reading.quantity))
    if variable is None:
        return None
    raw = float(reading.value)
    value: float | bool = raw >= 0.5 if variable == "Connected" else raw
    return MeasurementUpdate(reading.resource_id, variable, value, reading.at)


def acknowledgement_values(ack: Acknowledgement) -> dict[str, Value]:
    """An acknowledgement as the Acknowledgement variables."""
    return {
        "Status": str(ack.status),
        "ProtocolStatus": ack.protocol_status,
        "InstructionId": ack.instruction_id,
        "Detail": ack.detail,
        "At": ack.at,
    }


def source_text(source: Source) -> str:
    value = "" if source.value is None else str(source.value)
    return f"{source.instruction_id}|{source.issuer_id}|{source.kind}|{source.quantity}|{value}"


def control_values(
    interval: EffectiveInterval | None, reasons: Mapping[str, str], nameplate: Nameplate
) -> dict[str, Value]:
    """The effective interval in force as Control variables.

    With no interval in force no instruction applies: the DER may use its nameplate, is
    connected and energised, and has no setpoint.
    """
    if interval is None:
        return {"ExportLimitW": float(nameplate.export_max_w),
                "ImportLimitW": float(nameplate.import_max_w), "GenerationLimitW": None,
                "LoadLimitW": None, "SetpointW": None, "RequestedSetpointW": None,
                "Connect": True, "Energize": True, "IntervalStart": None, "IntervalEnd": None,
                "IssuerOfRecord": None, "Sources": [], "LimitedBy": [], "Reason": ""}
    ids = interval.instruction_ids
    reason = "; ".join(dict.fromkeys(r for i in ids if (r := reasons.get(i))))
    return {
        "ExportLimitW": float(interval.export_max_w),
        "ImportLimitW": float(interval.import_max_w),
        "GenerationLimitW": _opt_float(interval.generation_max_w),
        "LoadLimitW": _opt_float(interval.load_max_w),
        "SetpointW": _opt_float(interval.setpoint_w),
        "RequestedSetpointW": _opt_float(interval.requested_setpoint_w),
        "Connect": interval.connect,
        "Energize": interval.energize,
        "IntervalStart": interval.start,
        "IntervalEnd": interval.end,
        "IssuerOfRecord": interval.issuer_of_record,
        "Sources": [source_text(s) for s in interval.sources],
        "LimitedBy": list(interval.limited_by),
        "Reason": reason,
    }


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


# --- method arguments (decoded by codec.arguments) -> instruction drafts ---------------------

Arguments = Mapping[str, Value]


def _number(args: Arguments, name: str) -> float:
    value = args[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentError((name,), f"{name} must be a number")
    return float(value)


def _window(now: datetime, args: Arguments) -> tuple[datetime, datetime | None]:
    seconds = int(_number(args, "DurationS"))
    if seconds < 0:
        raise ArgumentError(("DurationS",), "DurationS must be >= 0")
    return now, (now + timedelta(seconds=seconds) if seconds else None)


def _reason(args: Arguments, default: str) -> str:
    text = str(args.get("Reason") or "").strip()
    if len(text) > REASON_MAX:
        raise ArgumentError(("Reason",), f"Reason is longer than {REASON_MAX} characters")
    return text or default


def _cap(args: Arguments, name: str) -> float | None:
    """A cap argument: negative or NaN leaves the quantity uncapped; infinity is refused."""
    number = _number(args, name)
    if math.isnan(number) or number < 0:
        return None
    if math.isinf(number):
        raise ArgumentError((name,), f"{name} must be finite (negative: not capped)")
    return number


_CAPS = ("ExportMaxW", "ImportMaxW", "GenerationMaxW", "LoadMaxW")


def limit_draft(resource_id: str, now: datetime, args: Arguments) -> InstructionDraft:
    export_w, import_w, generation_w, load_w = (_cap(args, name) for name in _CAPS)
    envelope = LimitEnvelope(export_max_w=export_w, import_max_w=import_w,
                             generation_max_w=generation_w, load_max_w=load_w)
    if not envelope.items():
        raise ArgumentError(_CAPS, "at least one of ExportMaxW, ImportMaxW, GenerationMaxW, "
                                   "LoadMaxW must be >= 0")
    start, end = _window(now, args)
    return InstructionDraft(kind=InstructionKind.LIMIT,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            limits=envelope, reason=_reason(args, "OPC UA operating limit"))


def dispatch_draft(resource_id: str, now: datetime, args: Arguments) -> InstructionDraft:
    setpoint = _number(args, "SetpointW")
    if not math.isfinite(setpoint):
        raise ArgumentError(("SetpointW",), "SetpointW must be a finite number of watts")
    start, end = _window(now, args)
    return InstructionDraft(kind=InstructionKind.DISPATCH,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            schedule=(SetpointStep(start, end, setpoint),),
                            reason=_reason(args, "OPC UA dispatch"))


def connection_draft(
    resource_id: str, now: datetime, args: Arguments, *, connect: bool
) -> InstructionDraft:
    start, end = _window(now, args)
    default = "OPC UA connect" if connect else "OPC UA disconnect"
    return InstructionDraft(kind=InstructionKind.CONNECTION,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            connect=connect, reason=_reason(args, default))
