"""Canonical model <-> OpenADR 3 bodies: pure functions, no I/O.

Down: an EffectiveControl becomes one event per DER (EXPORT/IMPORT_CAPACITY_LIMIT,
DISPATCH_SETPOINT, SIMPLE), in kW on the wire and W in the core.
Up: report payloads become Readings; OPERATING_STATE (or the mere arrival of a report) becomes
an Acknowledgement. Events written by business-logic clients become InstructionDrafts.
The rules are written out in docs/openadr3.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.openadr3.codec.timing import (
    format_duration,
    parse_duration,
    parse_start,
    rfc3339,
    window,
)
from gateway.domain import (
    AckStatus,
    EffectiveControl,
    EffectiveInterval,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Quantity,
    Reading,
    SetpointStep,
    Target,
    TargetKind,
)

EXPORT_LIMIT = "EXPORT_CAPACITY_LIMIT"
IMPORT_LIMIT = "IMPORT_CAPACITY_LIMIT"
SETPOINT = "DISPATCH_SETPOINT"
SIMPLE = "SIMPLE"
SIMPLE_CONNECTED, SIMPLE_DISCONNECTED = 0, 3

# Unit word -> factor to the core's SI unit (W, var, V, Hz, Wh; state of charge in %).
UNIT_FACTORS: dict[str, float] = {
    "W": 1.0,
    "KW": 1e3,
    "MW": 1e6,
    "VAR": 1.0,
    "KVAR": 1e3,
    "VOLTS": 1.0,
    "V": 1.0,
    "HZ": 1.0,
    "WH": 1.0,
    "KWH": 1e3,
    "MWH": 1e6,
    "PERCENT": 100.0,
}

# Report payload type -> (canonical quantity, default unit).
READING_TYPES: dict[str, tuple[Quantity, str]] = {
    "READING": (Quantity.ACTIVE_POWER, "KW"),
    "DEMAND": (Quantity.ACTIVE_POWER, "KW"),
    "USAGE": (Quantity.ENERGY, "KWH"),
    "STORAGE_CHARGE_LEVEL": (Quantity.STATE_OF_CHARGE, "PERCENT"),
}
# A READING's unit can name another quantity than power.
UNIT_QUANTITY: dict[str, Quantity] = {
    "KVAR": Quantity.REACTIVE_POWER,
    "VAR": Quantity.REACTIVE_POWER,
    "VOLTS": Quantity.VOLTAGE,
    "V": Quantity.VOLTAGE,
    "HZ": Quantity.FREQUENCY,
    "KWH": Quantity.ENERGY,
    "WH": Quantity.ENERGY,
}

# OPERATING_STATE value -> acknowledgement status (a report without one: RECEIVED).
OPERATING_STATE_ACK: dict[str, AckStatus] = {
    "NORMAL": AckStatus.RECEIVED,
    "IDLE_NORMAL": AckStatus.RECEIVED,
    "RUNNING_NORMAL": AckStatus.RECEIVED,
    "RUNNING_CURTAILED": AckStatus.STARTED,
    "IDLE_CURTAILED": AckStatus.STARTED,
    "RUNNING_HEIGHTENED": AckStatus.STARTED,
    "IDLE_HEIGHTENED": AckStatus.STARTED,
    "IDLE_OPTED_OUT": AckStatus.OPTED_OUT,
    "RUNNING_OPTED_OUT": AckStatus.OPTED_OUT,
    "ERROR": AckStatus.CANNOT_COMPLY,
    "SGD_ERROR_CONDITION": AckStatus.CANNOT_COMPLY,
}


class MappingError(ValueError):
    """An OpenADR body that cannot become a canonical instruction."""


# --- down: effective control -> event -------------------------------------------------------


def _kw(watts: float) -> float:
    return round(watts / 1e3, 6)


def interval_payloads(iv: EffectiveInterval) -> list[dict[str, Any]]:
    payloads = [
        {"type": EXPORT_LIMIT, "values": [_kw(iv.export_max_w)]},
        {"type": IMPORT_LIMIT, "values": [_kw(iv.import_max_w)]},
    ]
    if iv.setpoint_w is not None:
        payloads.append({"type": SETPOINT, "values": [_kw(iv.setpoint_w)]})
    connected = iv.connect and iv.energize
    payloads.append(
        {"type": SIMPLE, "values": [SIMPLE_CONNECTED if connected else SIMPLE_DISCONNECTED]}
    )
    return payloads


EVENT_PAYLOAD_DESCRIPTORS = [
    {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": EXPORT_LIMIT, "units": "KW"},
    {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": IMPORT_LIMIT, "units": "KW"},
    {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": SETPOINT, "units": "KW"},
    {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": SIMPLE},
]
REPORT_REQUESTS = [
    {"payloadType": "READING", "readingType": "DIRECT_READ", "units": "KW"},
    {"payloadType": "OPERATING_STATE"},
]


def event_for_control(
    control: EffectiveControl, program_id: str, targets: list[Any], event_name: str
) -> dict[str, Any] | None:
    """The event body (without VTN metadata) that renders one DER's effective control."""
    if not control.intervals:
        return None
    intervals = [
        {
            "id": n,
            "intervalPeriod": {
                "start": rfc3339(iv.start),
                "duration": format_duration(None if iv.end is None else iv.end - iv.start),
            },
            "payloads": interval_payloads(iv),
        }
        for n, iv in enumerate(control.intervals)
    ]
    return {
        "programID": program_id,
        "eventName": event_name,
        "priority": 0,
        "targets": targets,
        "payloadDescriptors": EVENT_PAYLOAD_DESCRIPTORS,
        "reportDescriptors": REPORT_REQUESTS,
        "intervals": intervals,
    }


def control_sources(control: EffectiveControl) -> list[str]:
    """Instruction ids behind a control, in order of first appearance."""
    ids: dict[str, None] = {}
    for iv in control.intervals:
        ids.update(dict.fromkeys(iv.instruction_ids))
    return list(ids)


# --- timing shared by events and reports ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime
    end: datetime | None
    payloads: list[dict[str, Any]]


def slots(body: dict[str, Any], intervals: Iterable[dict[str, Any]], now: datetime) -> list[Slot]:
    """Each interval's window: its own intervalPeriod, else the parent's, laid end to end."""
    default = body.get("intervalPeriod") or {}
    cursor = parse_start(default.get("start"), now)
    out: list[Slot] = []
    for iv in intervals:
        own = iv.get("intervalPeriod") or {}
        start = parse_start(own["start"], now) if own.get("start") else cursor
        duration = parse_duration(
            own.get("duration") or default.get("duration") or body.get("duration")
        )
        start, end = window(start, duration)
        out.append(Slot(start, end, list(iv.get("payloads") or [])))
        cursor = end or start
    return out


def _units(descriptors: list[dict[str, Any]] | None, payload_type: str, default: str) -> str:
    for d in descriptors or ():
        if d.get("payloadType") == payload_type and d.get("units"):
            return str(d["units"]).upper()
    return default


def _number(values: list[Any]) -> float | None:
    if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], int | float):
        return None
    return float(values[0])


# --- up: report -> readings and acknowledgement status --------------------------------------


def report_readings(
    report: dict[str, Any],
    resource_ids: dict[str, str],
    now: datetime,
    protocol: str = "openadr3",
) -> list[Reading]:
    """Readings from a report; `resource_ids` maps the report's resourceName to DER ids."""
    readings: list[Reading] = []
    descriptors = report.get("payloadDescriptors")
    for entry in report.get("resources") or ():
        resource_id = resource_ids.get(entry.get("resourceName", ""))
        if resource_id is None:
            continue
        try:
            windows = slots(entry, entry.get("intervals") or (), now)
        except ValueError:  # valid OpenADR, but beyond what the core's calendar can hold
            continue
        for slot in windows:
            for payload in slot.payloads:
                reading = _reading(payload, descriptors, resource_id, slot.start, protocol)
                if reading is not None:
                    readings.append(reading)
    return readings


def _reading(
    payload: dict[str, Any],
    descriptors: list[dict[str, Any]] | None,
    resource_id: str,
    at: datetime,
    protocol: str,
) -> Reading | None:
    kind = READING_TYPES.get(str(payload.get("type")))
    value = _number(list(payload.get("values") or ()))
    if kind is None or value is None:
        return None
    quantity, default_unit = kind
    unit = _units(descriptors, str(payload["type"]), default_unit)
    factor = UNIT_FACTORS.get(unit)
    if factor is None:
        return None
    if payload["type"] == "READING":
        quantity = UNIT_QUANTITY.get(unit, quantity)
    return Reading(resource_id, quantity, value * factor, at, protocol)


def report_ack_status(entry: dict[str, Any]) -> tuple[AckStatus, str]:
    """The acknowledgement one report resource entry carries, with the protocol's word."""
    for iv in reversed(entry.get("intervals") or ()):
        for payload in iv.get("payloads") or ():
            if payload.get("type") == "OPERATING_STATE":
                state = str((payload.get("values") or [""])[0])
                return OPERATING_STATE_ACK.get(state, AckStatus.RECEIVED), state
    return AckStatus.RECEIVED, "REPORT"


# --- business-logic event -> instructions ---------------------------------------------------


def _limit(slot: Slot, quantity: str, watts: float) -> InstructionDraft:
    envelope = LimitEnvelope(**{quantity: watts})
    return InstructionDraft(
        kind=InstructionKind.LIMIT,
        target=_NO_TARGET,
        start=slot.start,
        end=slot.end,
        limits=envelope,
        reason="OpenADR event",
    )


def _connection(slot: Slot, level: float) -> InstructionDraft:
    if level not in (SIMPLE_CONNECTED, SIMPLE_DISCONNECTED):
        raise MappingError("SIMPLE must be 0 (connect) or 3 (disconnect) for a DER")
    return InstructionDraft(
        kind=InstructionKind.CONNECTION,
        target=_NO_TARGET,
        start=slot.start,
        end=slot.end,
        connect=level == SIMPLE_CONNECTED,
        reason="OpenADR event",
    )


_NO_TARGET = Target(TargetKind.RESOURCE, "")
PayloadRule = Callable[[Slot, float, float], InstructionDraft | SetpointStep]
PAYLOAD_RULES: dict[str, PayloadRule] = {
    EXPORT_LIMIT: lambda s, v, f: _limit(s, "export_max_w", v * f),
    IMPORT_LIMIT: lambda s, v, f: _limit(s, "import_max_w", v * f),
    SETPOINT: lambda s, v, f: SetpointStep(s.start, s.end, v * f),
    SIMPLE: lambda s, v, _f: _connection(s, v),
}
DEFAULT_UNITS = {EXPORT_LIMIT: "KW", IMPORT_LIMIT: "KW", SETPOINT: "KW", SIMPLE: "W"}


def event_instructions(body: dict[str, Any], now: datetime) -> list[InstructionDraft]:
    """Instructions (without target) that a business-logic event asks for.

    Limits and connection changes: one instruction per interval. Setpoints: one dispatch whose
    schedule has a step per interval. Payload types the gateway does not control are ignored.
    """
    drafts: list[InstructionDraft] = []
    steps: list[SetpointStep] = []
    for slot in slots(body, body.get("intervals") or (), now):
        for payload in slot.payloads:
            rule = PAYLOAD_RULES.get(str(payload.get("type")))
            if rule is None:
                continue
            value = _number(list(payload.get("values") or ()))
            if value is None:
                raise MappingError(f"{payload['type']} needs one numeric value")
            unit = _units(
                body.get("payloadDescriptors"), payload["type"], DEFAULT_UNITS[payload["type"]]
            )
            factor = UNIT_FACTORS.get(unit)
            if factor is None:
                raise MappingError(f"unit {unit} is not a power unit")
            made = rule(slot, value, factor)
            if isinstance(made, SetpointStep):
                steps.append(made)
            else:
                drafts.append(made)
    if steps:
        drafts.append(
            InstructionDraft(
                kind=InstructionKind.DISPATCH,
                target=_NO_TARGET,
                start=steps[0].start,
                end=steps[-1].end,
                schedule=tuple(steps),
                reason="OpenADR event",
            )
        )
    return drafts
