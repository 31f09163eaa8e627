"""The adapter's own durable state, on top of `ctx.records` (JSON documents by kind and key).

Typed records in, typed records out; nothing HTTP-shaped is stored here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.ports import RecordsPort, RecordWrite


@dataclass(slots=True)
class EndDeviceRecord:
    id: int
    lfdi: str  # uppercase
    sfdi: int
    changed_time: int
    registered_time: int
    pin: int
    resource_id: str | None = None  # the canonical DER it stands for (None: aggregator's own)
    aggregator_id: str | None = None
    inband: bool = False
    connection_point_id: str | None = None
    post_rate: int | None = None
    enabled: bool = True


@dataclass(slots=True)
class ControlRecord:
    """One DERControl the server has published for a DER."""

    mrid: str
    start: int
    duration: int
    base_xml: str  # the DERControlBase as rendered
    created: int
    instruction_ids: list[str] = field(default_factory=list)
    status: int = 0  # 0 live (scheduled/active by time), 2 cancelled, 4 superseded
    status_time: int = 0
    randomize_start: int | None = None
    program: int = 1  # which of the DER's DERPrograms carries it (see programs.py)


@dataclass(slots=True)
class Subscription:
    id: int
    edev_id: int
    resource: str  # the subscribed href
    notification_uri: str
    limit: int
    encoding: int = 0
    level: str = "+S1"


@dataclass(slots=True)
class ResponseRecord:
    id: int
    set_id: int
    subject: str
    lfdi: str
    status: int | None
    created: int


@dataclass(slots=True)
class MupRecord:
    id: int
    mrid: str
    lfdi: str
    edev_id: int | None
    role_flags: str
    service_category: int
    status: int
    description: str | None = None
    post_rate: int | None = None
    readings: dict[str, dict[str, Any]] = field(default_factory=dict)  # mRID -> MMR document
    # Readings of an in-band device the platform does not know yet, kept (newest
    # PENDING_READINGS) until it does: {"quantity", "value", "at" (epoch s)}.
    pending: list[dict[str, Any]] = field(default_factory=list)


PENDING_READINGS = 1000


@dataclass(slots=True)
class Published:
    """What a DER's clients currently see: its DERControls and its DefaultDERControl digest."""

    controls: list[ControlRecord]
    default: str | None = None


def _key(n: int) -> str:
    return f"{n:010d}"


def subscription_key(edev_id: int, sub_id: int) -> tuple[str, str]:
    """The (kind, key) a Subscription is stored under."""
    return "sub", f"{_key(edev_id)}/{_key(sub_id)}"


def published_docs(published: dict[str, Published]) -> dict[str, dict[str, Any]]:
    """DERs' published controls as the documents `derc` records hold (by resource id)."""
    return {rid: {"controls": [asdict(c) for c in p.controls], "default": p.default}
            for rid, p in published.items()}


class AdapterState:
    """Typed access to the 2030.5 adapter's records."""

    def __init__(self, records: RecordsPort) -> None:
        self.records = records

    async def write(self, change: RecordWrite) -> None:
        """Records, the notifications they imply and cancellations: one transaction."""
        await self.records.write(change)

    # --- end devices and clients --------------------------------------------------------

    async def end_devices(self) -> list[EndDeviceRecord]:
        return [EndDeviceRecord(**doc) for _, doc in await self.records.list("edev")]

    async def end_device(self, edev_id: int) -> EndDeviceRecord | None:
        doc = await self.records.get("edev", _key(edev_id))
        return EndDeviceRecord(**doc) if doc else None

    async def end_devices_by_id(self, edev_ids: Iterable[int]) -> dict[int, EndDeviceRecord]:
        """The EndDevices of these ids that are stored."""
        docs = await self.records.get_many("edev", [_key(i) for i in edev_ids])
        return {int(k): EndDeviceRecord(**d) for k, d in docs.items()}

    async def save_end_device(self, record: EndDeviceRecord) -> None:
        await self.records.put("edev", _key(record.id), asdict(record))

    async def save_end_devices(self, records: list[EndDeviceRecord]) -> None:
        await self.records.put_many("edev", {_key(r.id): asdict(r) for r in records})

    @staticmethod
    def end_device_key(edev_id: int) -> tuple[str, str]:
        return "edev", _key(edev_id)

    async def next_id(self, name: str) -> int:
        return await self.records.next_sequence(name)

    async def next_ids(self, name: str, count: int) -> int:
        """Take `count` numbers at once; the last of them is returned."""
        return await self.records.next_sequence(name, count)

    async def client_access(self) -> dict[str, dict[str, Any]]:
        """Client certificate LFDI -> {"aggregator_id": id or None, "granted": bool}."""
        return dict(await self.records.list("client"))

    async def set_client_access(self, lfdi: str, aggregator_id: str | None, granted: bool) -> None:
        await self.records.put("client", lfdi.upper(),
                               {"aggregator_id": aggregator_id, "granted": granted})

    # --- published controls ---------------------------------------------------------------

    async def controls(self, resource_id: str) -> list[ControlRecord]:
        return (await self.published(resource_id)).controls

    async def published(self, resource_id: str) -> Published:
        doc = await self.records.get("derc", resource_id) or {}
        return Published([ControlRecord(**c) for c in doc.get("controls", [])],
                         doc.get("default"))

    async def programs(self) -> dict[str, dict[str, Any]]:
        return dict(await self.records.list("program"))

    # --- subscriptions ----------------------------------------------------------------------

    async def subscriptions(self, edev_id: int | None = None) -> list[Subscription]:
        prefix = f"{_key(edev_id)}/" if edev_id is not None else None
        return [Subscription(**d) for _, d in await self.records.list("sub", prefix)]

    async def subscriptions_by_key(self, keys: Iterable[str]) -> dict[str, Subscription]:
        """The Subscriptions stored under these keys (those that still are)."""
        return {k: Subscription(**d) for k, d in (await self.records.get_many("sub", keys)).items()}

    async def save_subscription(self, sub: Subscription) -> None:
        await self.records.put(*subscription_key(sub.edev_id, sub.id), asdict(sub))

    # --- DER documents (capability, settings, status, availability) ------------------------

    async def der_document(self, edev_id: int, which: str) -> str | None:
        doc = await self.records.get("der", f"{_key(edev_id)}/{which}")
        return doc["xml"] if doc else None

    async def save_der_document(self, edev_id: int, which: str, xml: str) -> None:
        await self.records.put("der", f"{_key(edev_id)}/{which}", {"xml": xml})

    # --- responses, log events, mirror usage points ---------------------------------------

    async def responses(self, set_id: int) -> list[ResponseRecord]:
        return [ResponseRecord(**d) for _, d in await self.records.list("rsp", f"{_key(set_id)}/")]

    async def response(self, set_id: int, response_id: int) -> ResponseRecord | None:
        doc = await self.records.get("rsp", f"{_key(set_id)}/{_key(response_id)}")
        return ResponseRecord(**doc) if doc else None

    async def responses_by_key(self, keys: Iterable[str]) -> dict[str, ResponseRecord]:
        return {k: ResponseRecord(**d)
                for k, d in (await self.records.get_many("rsp", keys)).items()}

    async def save_response(self, record: ResponseRecord,
                            dropped: Sequence[ResponseRecord] = ()) -> None:
        """The Response and the deletion of the device's Responses past retention, in one
        transaction. (A retry is found among the device's kept Responses, in memory.)"""
        await self.records.write(RecordWrite(
            puts={"rsp": {f"{_key(record.set_id)}/{_key(record.id)}": asdict(record)}},
            deletes=[("rsp", f"{_key(old.set_id)}/{_key(old.id)}") for old in dropped]))

    async def log_events(self, edev_id: int) -> list[tuple[int, str]]:
        return [(d["id"], d["xml"]) for _, d in await self.records.list("log", f"{_key(edev_id)}/")]

    async def log_event(self, edev_id: int, log_id: int) -> str | None:
        doc = await self.records.get("log", f"{_key(edev_id)}/{_key(log_id)}")
        return doc["xml"] if doc else None

    async def save_log_event(self, edev_id: int, log_id: int, xml: str) -> None:
        await self.records.put("log", f"{_key(edev_id)}/{_key(log_id)}", {"id": log_id, "xml": xml})

    async def mups(self) -> list[MupRecord]:
        return [MupRecord(**d) for _, d in await self.records.list("mup")]

    async def mup(self, mup_id: int) -> MupRecord | None:
        doc = await self.records.get("mup", _key(mup_id))
        return MupRecord(**doc) if doc else None

    async def mups_by_key(self, keys: Iterable[str]) -> dict[str, MupRecord]:
        return {k: MupRecord(**d) for k, d in (await self.records.get_many("mup", keys)).items()}

    async def save_mup(self, record: MupRecord) -> None:
        await self.records.put("mup", _key(record.id), asdict(record))

    async def delete_mup(self, mup_id: int) -> bool:
        return await self.records.delete("mup", _key(mup_id))

    # --- rates and program settings set through the platform -------------------------------
    # (written by the renderer in one transaction with the notifications of the lists they
    # change: kinds "settings"/"rates" and "program"/<LFDI>)

    async def rates(self) -> dict[str, dict[str, int]]:
        return await self.records.get("settings", "rates") or {"poll": {}, "post": {}}
