"""A small in-memory stand-in for the documented core interface (GatewayServices, records,
deliveries), used only by these unit-level server tests; integration tests use the real
gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.domain import (
    Acknowledgement,
    DeliveryMark,
    EffectiveControl,
    Participant,
    Reading,
    Resource,
)
from gateway.ports import RecordWrite


class FakeDeliveries:
    """What was committed for delivery, and what was cancelled (by subject)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.cancelled: list[str] = []

    async def enqueue_many(self, items: list[Any], **_: Any) -> list[int]:
        self.items.extend(items)
        return list(range(len(items)))


class FakeRecords:
    def __init__(self, deliveries: FakeDeliveries | None = None) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq: dict[str, int] = {}
        self.deliveries = deliveries or FakeDeliveries()

    async def put_many(self, kind: str, docs: dict[str, dict[str, Any]]) -> None:
        for key, doc in docs.items():
            self.docs[(kind, key)] = dict(doc)

    async def write(self, change: RecordWrite) -> list[int]:
        for kind, docs in change.puts.items():
            await self.put_many(kind, docs)
        for kind, key in change.deletes:
            self.docs.pop((kind, key), None)
        self.deliveries.cancelled.extend(change.cancel)
        return await self.deliveries.enqueue_many(change.deliveries)

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        doc = self.docs.get((kind, key))
        return dict(doc) if doc is not None else None

    async def get_many(self, kind: str, keys: Any) -> dict[str, dict[str, Any]]:
        return {k: dict(d) for k in keys if (d := self.docs.get((kind, k))) is not None}

    async def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.docs[(kind, key)] = dict(doc)

    async def delete(self, kind: str, key: str) -> bool:
        return self.docs.pop((kind, key), None) is not None

    async def list(self, kind: str, prefix: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return sorted((k, dict(d)) for (kd, k), d in self.docs.items()
                      if kd == kind and (prefix is None or k.startswith(prefix)))

    async def next_sequence(self, name: str, count: int = 1) -> int:
        self.seq[name] = self.seq.get(name, 0) + count
        return self.seq[name]


@dataclass
class FakeGateway:
    resources_: dict[str, Resource] = field(default_factory=dict)
    participants_: dict[str, Participant] = field(default_factory=dict)
    controls: dict[str, EffectiveControl] = field(default_factory=dict)
    acks: list[Acknowledgement] = field(default_factory=list)
    readings_: list[Reading] = field(default_factory=list)
    connection_points_: dict[str, Any] = field(default_factory=dict)
    marks: list[DeliveryMark] = field(default_factory=list)
    online: dict[str, bool] = field(default_factory=dict)

    async def resource(self, rid: str) -> Resource | None:
        return self.resources_.get(rid)

    async def resources(self, protocol: Any = None, aggregator_id: str | None = None,
                        ids: Any = None) -> list[Resource]:
        return [r for r in self.resources_.values()
                if (protocol is None or r.binding.protocol == protocol)
                and (aggregator_id is None or r.aggregator_id == aggregator_id)
                and (ids is None or r.id in set(ids))]

    async def find_resources(self, protocol: Any, **address: Any) -> list[Resource]:
        return [r for r in self.resources_.values() if r.binding.protocol == protocol and all(
            str(r.binding.address.get(k, "")).lower() == str(v).lower()
            for k, v in address.items())]

    async def participant(self, pid: str) -> Participant | None:
        return self.participants_.get(pid)

    async def connection_point(self, cid: str) -> Any:
        return self.connection_points_.get(cid)  # like the core: None when unknown

    async def register_resources(self, actor: Any, resources: list[Resource]) -> None:
        for r in resources:
            self.resources_[r.id] = r

    async def effective_control(self, rid: str) -> EffectiveControl | None:
        return self.controls.get(rid)

    async def effective_controls(self, ids: Any = None) -> dict[str, EffectiveControl]:
        return {k: v for k, v in self.controls.items() if ids is None or k in set(ids)}

    async def record_acknowledgement(self, ack: Acknowledgement) -> None:
        self.acks.append(ack)

    async def record_readings(self, readings: list[Reading]) -> None:
        self.readings_.extend(readings)

    async def mark_delivery(self, marks: list[DeliveryMark]) -> None:
        self.marks.extend(marks)

    async def delivery_states(self, ids: Any = None) -> dict[str, Any]:
        return {}

    async def set_online_many(self, marks: dict[str, bool]) -> dict[str, bool]:
        self.online.update(marks)
        return marks
