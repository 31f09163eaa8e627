"""Domain objects <-> plain JSON values (the store's JSON columns, bus payloads, API bodies).

Datetimes become RFC 3339 strings in UTC with a 'Z'; enums their values; tuples lists.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from gateway.domain import (
    Acknowledgement,
    AckStatus,
    EffectiveControl,
    EffectiveInterval,
    Instruction,
    InstructionKind,
    LimitationNotice,
    LimitEnvelope,
    LimitingInstruction,
    NoticeKind,
    Quantity,
    Reading,
    SetpointStep,
    Source,
    Target,
    TargetKind,
)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without zone: {value!r}")
    return parsed.astimezone(UTC)


_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # per dataclass: its fields' names


def to_json(value: Any) -> Any:
    """Any domain value to JSON-compatible data. (Every acknowledgement, reading and control
    passes through here on its way to the event log: plain values and known dataclasses go
    first, without asking `dataclasses.fields` each time.)"""
    kind = type(value)
    if kind in _PLAIN:
        return value
    names = _FIELD_NAMES.get(kind)
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def _source(d: dict[str, Any] | None) -> Source | None:
    if d is None:
        return None
    return Source(d["instruction_id"], d["issuer_id"], InstructionKind(d["kind"]), d["quantity"],
                  d.get("value"))


def interval_from_json(d: dict[str, Any]) -> EffectiveInterval:
    return EffectiveInterval(
        start=parse_time(d["start"]),  # type: ignore[arg-type]
        end=parse_time(d.get("end")),
        export_max_w=d["export_max_w"],
        import_max_w=d["import_max_w"],
        generation_max_w=d.get("generation_max_w"),
        load_max_w=d.get("load_max_w"),
        setpoint_w=d.get("setpoint_w"),
        requested_setpoint_w=d.get("requested_setpoint_w"),
        connect=d.get("connect", True),
        energize=d.get("energize", True),
        issuer_of_record=d.get("issuer_of_record"),
        sources=tuple(s for s in map(_source, d.get("sources", ())) if s is not None),
        limited_by=tuple(d.get("limited_by", ())),
    )


def control_from_json(d: dict[str, Any]) -> EffectiveControl:
    return EffectiveControl(
        resource_id=d["resource_id"],
        intervals=tuple(interval_from_json(i) for i in d.get("intervals", ())),
        default_control=d.get("default_control"),
        default_source=_source(d.get("default_source")),
        function_settings=d.get("function_settings"),
        function_source=_source(d.get("function_source")),
    )


_CONTROL_KEYS = frozenset(f.name for f in dataclasses.fields(EffectiveControl))
_INTERVAL_KEYS = frozenset(f.name for f in dataclasses.fields(EffectiveInterval))
_SOURCE_KEYS = frozenset(f.name for f in dataclasses.fields(Source))


def control_document(d: dict[str, Any]) -> dict[str, Any]:
    """A stored control body as the API shows it: `to_json(control_from_json(d))`, without
    building the objects when `d` already has every field this version writes (bodies are
    written by `to_json`, so only one stored by an older version is rebuilt)."""
    def source_current(s: Any) -> bool:
        return s is None or s.keys() == _SOURCE_KEYS

    current = (d.keys() == _CONTROL_KEYS and source_current(d["default_source"])
               and source_current(d["function_source"])
               and all(i.keys() == _INTERVAL_KEYS and all(map(source_current, i["sources"]))
                       for i in d["intervals"]))
    return d if current else to_json(control_from_json(d))


def instruction_body(ins: Instruction) -> dict[str, Any]:
    """The kind-specific part of an instruction, for the store's JSON column."""
    return {
        "schedule": to_json(ins.schedule),
        "limits": to_json(ins.limits) if ins.limits else None,
        "connect": ins.connect,
        "energize": ins.energize,
        "settings": ins.settings,
    }


def instruction_from_parts(
    *,
    id: str,
    kind: str,
    issuer_id: str,
    target_kind: str,
    target_id: str,
    start: datetime,
    end: datetime | None,
    created_at: datetime,
    seq: int,
    reason: str,
    body: dict[str, Any],
    cancelled_at: datetime | None,
    idempotency_key: str | None,
) -> Instruction:
    limits = body.get("limits")
    return Instruction(
        id=id,
        kind=InstructionKind(kind),
        issuer_id=issuer_id,
        target=Target(TargetKind(target_kind), target_id),
        start=start,
        end=end,
        created_at=created_at,
        seq=seq,
        reason=reason,
        schedule=tuple(
            SetpointStep(parse_time(s["start"]), parse_time(s.get("end")), s["setpoint_w"])  # type: ignore[arg-type]
            for s in body.get("schedule") or ()
        ),
        limits=LimitEnvelope(**limits) if limits else None,
        connect=body.get("connect"),
        energize=body.get("energize"),
        settings=body.get("settings") or {},
        cancelled_at=cancelled_at,
        idempotency_key=idempotency_key,
    )


def notice_body(n: LimitationNotice) -> dict[str, Any]:
    return {"limiting": to_json(n.limiting), "recipients": list(n.recipients), "reason": n.reason}


def notice_from_parts(
    *, kind: str, subject_kind: str, subject_id: str, start: datetime, end: datetime | None,
    requested_w: float, effective_w: float, dispatch_id: str, body: dict[str, Any],
) -> LimitationNotice:
    return LimitationNotice(
        kind=NoticeKind(kind),
        subject=Target(TargetKind(subject_kind), subject_id),
        start=start,
        end=end,
        requested_w=requested_w,
        effective_w=effective_w,
        dispatch_id=dispatch_id,
        limiting=tuple(LimitingInstruction(**x) for x in body.get("limiting", ())),
        recipients=tuple(body.get("recipients", ())),
        reason=body.get("reason", ""),
    )


def ack_from_json(d: dict[str, Any]) -> Acknowledgement:
    return Acknowledgement(
        resource_id=d["resource_id"], status=AckStatus(d["status"]),
        protocol=str(d["protocol"]), protocol_status=d["protocol_status"],
        at=parse_time(d["at"]), instruction_id=d.get("instruction_id"),  # type: ignore[arg-type]
        control_ref=d.get("control_ref"), detail=d.get("detail", ""), id=d.get("id"),
    )


def reading_from_json(d: dict[str, Any]) -> Reading:
    return Reading(d["resource_id"], Quantity(d["quantity"]), d["value"],
                   parse_time(d["at"]), str(d["protocol"]), d.get("id"))  # type: ignore[arg-type]
