"""An OpenADR 3 event -> the envelope its resource obeys now, and the report that says so. Pure.

Payload values are kW on the wire (the event's payloadDescriptors may name other units);
SIMPLE 0 means normal/connected, any other level disconnects the simulated DER.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.openadr3.codec.timing import parse_duration, parse_start, window
from simulators.feeder.envelope import Envelope

UNIT = {"W": 1.0, "KW": 1e3, "MW": 1e6}
FIELDS = {"EXPORT_CAPACITY_LIMIT": "export_max_w", "IMPORT_CAPACITY_LIMIT": "import_max_w",
          "DISPATCH_SETPOINT": "setpoint_w"}


def _units(event: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in event.get("payloadDescriptors") or ():
        out[str(d.get("payloadType"))] = UNIT.get(str(d.get("units") or "KW").upper(), 1e3)
    return out


def current_interval(event: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The interval of `event` in force at `now` (intervals without a period follow on from
    the event's own intervalPeriod, one after another)."""
    found = current_window(event, now)
    return found[0] if found else None


def current_window(event: dict[str, Any], now: datetime
                   ) -> tuple[dict[str, Any], datetime, datetime | None] | None:
    """The interval in force at `now`, with its start and end (None: open-ended)."""
    default = event.get("intervalPeriod") or {}
    cursor = parse_start(default.get("start"), now)
    for interval in event.get("intervals") or ():
        period = interval.get("intervalPeriod") or default
        start = parse_start(period.get("start"), now) if interval.get("intervalPeriod") else cursor
        start, end = window(start, parse_duration(period.get("duration")))
        if start <= now and (end is None or now < end):
            return interval, start, end
        cursor = end or cursor
    return None


def envelope_at(event: dict[str, Any], now: datetime) -> Envelope | None:
    interval = current_interval(event, now)
    return envelope_of(event, interval) if interval is not None else None


def envelope_of(event: dict[str, Any], interval: dict[str, Any]) -> Envelope:
    """What one interval of `event` asks of its resource."""
    units = _units(event)
    fields: dict[str, Any] = {}
    for payload in interval.get("payloads") or ():
        kind, values = str(payload.get("type")), payload.get("values") or []
        if not values:
            continue
        if kind in FIELDS and isinstance(values[0], int | float):
            fields[FIELDS[kind]] = float(values[0]) * units.get(kind, 1e3)
        elif kind == "SIMPLE":
            fields["connected"] = values[0] == 0
    return Envelope(**fields)


def report_body(event: dict[str, Any], client_name: str, resource: str, w: float,
                curtailed: bool, now: datetime, period_s: int) -> dict[str, Any]:
    start = now.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    state = "RUNNING_CURTAILED" if curtailed else "RUNNING_NORMAL"
    return {
        "programID": event["programID"], "eventID": event["id"], "clientName": client_name,
        "reportName": f"{resource} telemetry",
        "payloadDescriptors": [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR",
                                "payloadType": "READING", "readingType": "DIRECT_READ",
                                "units": "KW"}],
        "resources": [{"resourceName": resource, "intervals": [{
            "id": 0,
            "intervalPeriod": {"start": start,
                               "duration": f"PT{max(1, period_s)}S"},
            "payloads": [{"type": "READING", "values": [round(w / 1e3, 4)]},
                         {"type": "OPERATING_STATE", "values": [state]}]}]}],
    }


def is_curtailed(envelope: Envelope, available_w: float, rating_w: float) -> bool:
    """Whether what the event asks holds the DER below what it could do."""
    if not envelope.connected or envelope.setpoint_w is not None:
        return True
    cap = envelope.export_max_w
    return cap is not None and cap < min(available_w, rating_w)
