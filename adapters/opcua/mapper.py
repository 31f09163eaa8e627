"""Canonical model <-> OPC UA model values and method arguments. Pure functions.

Values are plain Python (float, bool, str, datetime, list[str]); `None` means "no value" and
is published with the status code Bad_NoData, so a SCADA client never mistakes an absent
setpoint for 0 W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway import errors
from gateway.domain import (
    EffectiveInterval,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Quantity,
    SetpointStep,
    Target,
    TargetKind,
)

Value = float | bool | str | int | datetime | list[str] | None

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


def status_of_error(exc: errors.GatewayError) -> str:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF_ERROR:
            return STATUS_OF_ERROR[cls]  # type: ignore[index]
    return "BadInternalError"


# --- bus payloads -> variable values ---------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp without zone")
    return parsed


@dataclass(frozen=True, slots=True)
class MeasurementUpdate:
    resource_id: str
    variable: str
    value: float | bool
    at: datetime


def reading_update(payload: Mapping[str, Any]) -> MeasurementUpdate | None:
    """A READING bus payload as a measurement update, or None if the model has no variable."""
    variable = MEASUREMENT_OF.get(str(payload.get("quantity")))
    at = parse_time(payload.get("at"))
    if variable is None or at is None:
        return None
    raw = float(payload["value"])
    value: float | bool = raw >= 0.5 if variable == "Connected" else raw
    return MeasurementUpdate(str(payload["resource_id"]), variable, value, at)


def acknowledgement_values(payload: Mapping[str, Any]) -> dict[str, Value]:
    """An ACKNOWLEDGEMENT bus payload (or a stored one) as Acknowledgement variables."""
    return {
        "Status": str(payload.get("status", "")),
        "ProtocolStatus": str(payload.get("protocol_status", "")),
        "InstructionId": payload.get("instruction_id"),
        "Detail": str(payload.get("detail", "")),
        "At": parse_time(payload.get("at")),
    }


def source_text(source: Any) -> str:
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


# --- method arguments -> instruction drafts --------------------------------------------------


def _window(now: datetime, duration_s: Any) -> tuple[datetime, datetime | None]:
    seconds = int(duration_s)
    if seconds < 0:
        raise errors.InvalidInput("DurationS must be >= 0")
    return now, (now + timedelta(seconds=seconds) if seconds else None)


def _reason(value: Any, default: str) -> str:
    text = str(value or "").strip()
    if len(text) > 500:
        raise errors.InvalidInput("Reason is longer than 500 characters")
    return text or default


def _cap(value: Any) -> float | None:
    number = float(value)
    if number != number:  # NaN: treat like "not capped"
        return None
    return None if number < 0 else number


def limit_draft(resource_id: str, now: datetime, args: list[Any]) -> InstructionDraft:
    export_w, import_w, generation_w, load_w, duration_s, reason = args
    envelope = LimitEnvelope(export_max_w=_cap(export_w), import_max_w=_cap(import_w),
                             generation_max_w=_cap(generation_w), load_max_w=_cap(load_w))
    if not envelope.items():
        raise errors.InvalidInput("at least one cap must be >= 0")
    start, end = _window(now, duration_s)
    return InstructionDraft(kind=InstructionKind.LIMIT,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            limits=envelope, reason=_reason(reason, "OPC UA operating limit"))


def dispatch_draft(resource_id: str, now: datetime, args: list[Any]) -> InstructionDraft:
    setpoint_w, duration_s, reason = args
    setpoint = float(setpoint_w)
    if setpoint != setpoint:
        raise errors.InvalidInput("SetpointW must be a number")
    start, end = _window(now, duration_s)
    return InstructionDraft(kind=InstructionKind.DISPATCH,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            schedule=(SetpointStep(start, end, setpoint),),
                            reason=_reason(reason, "OPC UA dispatch"))


def connection_draft(
    resource_id: str, now: datetime, args: list[Any], *, connect: bool
) -> InstructionDraft:
    duration_s, reason = args
    start, end = _window(now, duration_s)
    default = "OPC UA connect" if connect else "OPC UA disconnect"
    return InstructionDraft(kind=InstructionKind.CONNECTION,
                            target=Target(TargetKind.RESOURCE, resource_id), start=start, end=end,
                            connect=connect, reason=_reason(reason, default))
