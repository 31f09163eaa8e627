"""The event log's vocabulary: topics, the raw event the bus carries, and typed events.

Every event was first committed to the outbox in the same transaction as the change it
announces; its id is the outbox row's id (increasing, the same in every process). Payloads
are JSON in the store and on the platform's event stream; subscribers inside the gateway
read them as the typed events below (`decode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.domain import Acknowledgement, Reading
from gateway.jsonform import ack_from_json, reading_from_json


class Topic(StrEnum):
    EFFECTIVE_CONTROL_CHANGED = "effective_control.changed"
    RESOURCE_CHANGED = "resource.changed"
    ACKNOWLEDGEMENT = "acknowledgement"
    READING = "reading"
    NOTICE = "notice"
    INSTRUCTION_CHANGED = "instruction.changed"
    PARTICIPANT_CHANGED = "participant.changed"
    DELIVERY_CHANGED = "delivery.changed"
    TOPOLOGY_CHANGED = "topology.changed"  # connection points: {"connection_point_ids"}
    RECORDS_CHANGED = "records.changed"  # an adapter's documents (several processes)


@dataclass(frozen=True, slots=True)
class Event:
    """What the bus carries: an outbox row, and its typed form (decoded once, when the bus
    publishes it, for every subscriber; None for a topic this version does not know)."""

    id: int
    topic: str
    payload: dict[str, Any] = field(default_factory=dict)
    typed: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ControlChanged:
    """A DER's effective control changed: re-read it from the store and render it."""

    id: int
    resource_id: str
    protocol: str | None


@dataclass(frozen=True, slots=True)
class ResourceChanged:
    """A DER was registered, changed (binding, ratings, place), removed, or only its online
    flag changed (`online` is then set and nothing else about it changed)."""

    id: int
    resource_id: str
    protocol: str | None
    online: bool | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class AcknowledgementRecorded:
    id: int
    acknowledgement: Acknowledgement


@dataclass(frozen=True, slots=True)
class ReadingRecorded:
    id: int
    reading: Reading


@dataclass(frozen=True, slots=True)
class NoticeRaised:
    id: int
    notice_id: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InstructionChanged:
    id: int
    instruction_id: str
    status: str


@dataclass(frozen=True, slots=True)
class ParticipantChanged:
    id: int
    participant_id: str
    change: str


@dataclass(frozen=True, slots=True)
class DeliveryChanged:
    """What the gateway knows of getting a DER's control to it changed (see DeliveryMark)."""

    id: int
    resource_id: str
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class TopologyChanged:
    """Connection points were registered (DERs and participants have their own events)."""

    id: int
    connection_point_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordsChanged:
    """Process `by` wrote adapter `adapter`'s documents: kind -> keys (None: many - reload
    the kind). Only announced with several processes (PostgreSQL)."""

    id: int
    adapter: str
    by: str
    changes: dict[str, tuple[str, ...] | None]


def _records(e: Event) -> RecordsChanged:
    raw = e.payload.get("changes") or {}
    return RecordsChanged(e.id, str(e.payload["adapter"]), str(e.payload.get("by", "")),
                          {str(k): (None if v is None else tuple(str(x) for x in v))
                           for k, v in raw.items()})


TypedEvent = (ControlChanged | ResourceChanged | AcknowledgementRecorded | ReadingRecorded
              | NoticeRaised | InstructionChanged | ParticipantChanged | DeliveryChanged
              | TopologyChanged | RecordsChanged)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _control(e: Event) -> TypedEvent:
    return ControlChanged(e.id, str(e.payload["resource_id"]),
                          _optional_str(e.payload.get("protocol")))


def _resource(e: Event) -> TypedEvent:
    online = e.payload.get("online")
    return ResourceChanged(e.id, str(e.payload["resource_id"]),
                           _optional_str(e.payload.get("protocol")),
                           None if online is None else bool(online),
                           bool(e.payload.get("deleted", False)))


def _notice(e: Event) -> TypedEvent:
    return NoticeRaised(e.id, int(e.payload.get("id", 0)), dict(e.payload))


_DECODERS: dict[str, Any] = {
    Topic.EFFECTIVE_CONTROL_CHANGED: _control,
    Topic.RESOURCE_CHANGED: _resource,
    Topic.ACKNOWLEDGEMENT: lambda e: AcknowledgementRecorded(e.id, ack_from_json(e.payload)),
    Topic.READING: lambda e: ReadingRecorded(e.id, reading_from_json(e.payload)),
    Topic.NOTICE: _notice,
    Topic.INSTRUCTION_CHANGED: lambda e: InstructionChanged(
        e.id, str(e.payload["instruction_id"]), str(e.payload["status"])),
    Topic.PARTICIPANT_CHANGED: lambda e: ParticipantChanged(
        e.id, str(e.payload["participant_id"]), str(e.payload["change"])),
    Topic.TOPOLOGY_CHANGED: lambda e: TopologyChanged(
        e.id, tuple(str(i) for i in e.payload.get("connection_point_ids", ()))),
    Topic.RECORDS_CHANGED: _records,
    Topic.DELIVERY_CHANGED: lambda e: DeliveryChanged(
        e.id, str(e.payload["resource_id"]), str(e.payload["state"]),
        _optional_str(e.payload.get("reason"))),
}


def decode(event: Event) -> TypedEvent:
    """The typed form of a raw event; KeyError for a topic this version does not know."""
    if event.typed is not None:
        cached: TypedEvent = event.typed
        return cached
    decoded: TypedEvent = _DECODERS[event.topic](event)
    return decoded


def with_typed(event: Event) -> Event:
    """The event carrying its typed form (what the bus hands every subscriber)."""
    decoder = _DECODERS.get(event.topic)
    if decoder is None or event.typed is not None:
        return event
    return Event(event.id, event.topic, event.payload, decoder(event))
