"""Up the stack: Responses become canonical acknowledgements, mirrored readings canonical
readings; DER documents (capability, settings, status, availability) and LogEvents are
kept as posted. Every check happens before anything is stored.

A Response is acknowledged once per (device, DERControl, status): a client that retries a
POST it had no answer to gets the Response stored the first time (the core is idempotent
on the same key)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from adapters.ieee2030_5.function_sets.documents import DER_DOCS, RESPONSE_SET, Hrefs
from adapters.ieee2030_5.function_sets.end_devices import EndDeviceRegistry
from adapters.ieee2030_5.function_sets.scope import ClientScope
from adapters.ieee2030_5.state import (
    PENDING_READINGS,
    AdapterState,
    ControlRecord,
    EndDeviceRecord,
    MupRecord,
    ResponseRecord,
)
from gateway.domain import Acknowledgement, Quantity, Reading, utcnow
from gateway.errors import InvalidInput, NotFound
from gateway.ports import GatewayPort


class MupIndex:
    """Every MirrorUsagePoint, read from the store once and kept current by this adapter
    (their only writer), so a POST does not list them all: by id, mRID, device and owned
    MirrorMeterReading mRID."""

    def __init__(self, records: list[MupRecord]) -> None:
        self.by_id: dict[int, MupRecord] = {}
        self.by_mrid: dict[str, int] = {}
        self.by_lfdi: dict[str, set[int]] = {}
        self.reading_owner: dict[str, int] = {}
        for record in records:
            self.put(record)

    def put(self, record: MupRecord) -> None:
        self.drop(record.id)
        self.by_id[record.id] = record
        self.by_mrid[record.mrid] = record.id
        self.by_lfdi.setdefault(record.lfdi, set()).add(record.id)
        for mrid in record.readings:
            self.reading_owner[mrid] = record.id

    def drop(self, mup_id: int) -> None:
        old = self.by_id.pop(mup_id, None)
        if old is None:
            return
        self.by_mrid.pop(old.mrid, None)
        self.by_lfdi.get(old.lfdi, set()).discard(mup_id)
        for mrid in old.readings:
            if self.reading_owner.get(mrid) == mup_id:
                del self.reading_owner[mrid]


@dataclass(slots=True)
class _Waiting:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    count: int = 0


ID_BLOCK = 100  # record ids taken from the store this many at a time


class IdBlocks:
    """Record ids taken from a store sequence a block at a time (one transaction per block,
    not per Response); with several processes each takes its own blocks."""

    def __init__(self, state: AdapterState) -> None:
        self._state = state
        self._next: dict[str, tuple[int, int]] = {}  # name -> (next id, last id of the block)
        self._lock = asyncio.Lock()

    async def take(self, name: str) -> int:
        async with self._lock:
            nxt, last = self._next.get(name, (1, 0))
            if nxt > last:
                last = await self._state.next_ids(name, ID_BLOCK)
                nxt = last - ID_BLOCK + 1
            self._next[name] = (nxt + 1, last)
            return nxt


class Feedback:
    def __init__(self, gateway: GatewayPort, state: AdapterState, registry: EndDeviceRegistry,
                 protocol: str, responses_kept: int = 64,
                 published: Callable[[str], Awaitable[list[ControlRecord]]] | None = None,
                 ) -> None:
        self.gateway = gateway
        self.state = state
        self.registry = registry
        self.protocol = protocol
        # A DER's published DERControls, from the renderer's memory (a Response names one):
        # read per Response from the records, they were most of a fan-out's queries.
        self._published = published or state.controls
        self._ids = IdBlocks(state)
        self._responding: dict[tuple[str, str, int], _Waiting] = {}
        # Each device's stored Responses, oldest first: the newest `responses_kept` are kept
        # (a soak grew them without bound). Read from the records on first use.
        self.responses_kept = responses_kept
        self._kept: dict[str, deque[ResponseRecord]] | None = None
        self._mups: MupIndex | None = None
        # A MirrorUsagePoint POST is check-then-write across awaits (two POSTs of one new
        # mRID must not both create it), and the index changes only after the store does.
        self._mup_writes = asyncio.Lock()

    def _visible_device(self, scope: ClientScope, lfdi: str) -> EndDeviceRecord:
        record = self.registry.visible_device(scope, lfdi)
        if record is None:
            raise NotFound("unknown endDeviceLFDI for this client")
        return record

    # --- responses ----------------------------------------------------------------------

    async def respond(self, scope: ClientScope, doc: m.Response) -> ResponseRecord:
        record = self._visible_device(scope, doc.endDeviceLFDI)
        if doc.status is None or doc.status not in mapper.RESPONSE_STATUS:
            raise InvalidInput(f"unsupported Response status {doc.status}")
        if record.resource_id is None:
            raise NotFound("Response subject is not a DERControl of this EndDevice")
        control = _named(await self._published(record.resource_id), doc.subject)
        if control is None and self._published != self.state.controls:
            # Published a moment ago by another process, whose announcement this one has
            # not followed yet: the records, written before the device was told, decide.
            control = _named(await self.state.controls(record.resource_id), doc.subject)
        if control is None:
            raise NotFound("Response subject is not a DERControl of this EndDevice")
        # One at a time per (device, DERControl, status): a retry arriving while the first
        # is still being written finds it stored instead of storing another.
        key = (record.lfdi, control.mrid, doc.status)
        entry = self._responding.setdefault(key, _Waiting())
        entry.count += 1
        try:
            async with entry.lock:
                return await self._respond_once(record, control.mrid, control.instruction_ids,
                                                doc)
        finally:
            entry.count -= 1
            if entry.count == 0:
                del self._responding[key]

    async def _respond_once(self, record: EndDeviceRecord, mrid: str,
                            instruction_ids: list[str], doc: m.Response) -> ResponseRecord:
        assert doc.status is not None and record.resource_id is not None
        kept = (await self._kept_responses()).setdefault(record.lfdi, deque())
        known = next((r for r in kept if r.subject == mrid and r.status == doc.status), None)
        if known is not None:  # a retry: the device's kept Responses hold every stored one
            return known
        now = int(time.time())
        stored = ResponseRecord(id=await self._ids.take("rsp"), set_id=RESPONSE_SET,
                                subject=mrid, lfdi=record.lfdi, status=doc.status,
                                created=doc.createdDateTime or now)
        # The core keeps one acknowledgement per (DER, instruction, control, status).
        await self.gateway.record_acknowledgement(Acknowledgement(
            resource_id=record.resource_id, status=mapper.ack_status(doc.status),
            protocol=self.protocol, protocol_status=str(doc.status),
            at=mapper.from_epoch(stored.created),
            instruction_id=instruction_ids[0] if instruction_ids else None,
            control_ref=mrid))
        # (taken out before the write: concurrent Responses of one device drop each its own)
        dropped = [kept.popleft() for _ in range(max(0, len(kept) + 1 - self.responses_kept))]
        await self.state.save_response(stored, dropped)
        kept.append(stored)
        return stored

    async def _kept_responses(self) -> dict[str, deque[ResponseRecord]]:
        if self._kept is None:
            kept: dict[str, deque[ResponseRecord]] = {}
            for r in sorted(await self.state.responses(RESPONSE_SET), key=lambda r: r.id):
                kept.setdefault(r.lfdi, deque()).append(r)
            self._kept = kept
        return self._kept

    def forget_responses(self) -> None:
        """Another process stored Responses: read them afresh on next use."""
        self._kept = None

    async def reread_responses(self, keys: Iterable[str]) -> None:
        """Another process stored (or dropped) these Responses: keep them as the store has
        them now. (Reading every device's Responses again for each one another process
        stored was a fifth of a two-process fan-out's work.)"""
        if self._kept is None:
            return  # read whole on first use
        keys = list(keys)
        stored = await self.state.responses_by_key(keys)
        gone = {int(k.rsplit("/", 1)[-1]) for k in keys if k not in stored}
        if gone:
            for lfdi, kept in self._kept.items():
                if any(r.id in gone for r in kept):
                    self._kept[lfdi] = deque(r for r in kept if r.id not in gone)
        for record in sorted(stored.values(), key=lambda r: r.id):
            if record.set_id != RESPONSE_SET:
                continue
            kept = self._kept.setdefault(record.lfdi, deque())
            if all(r.id != record.id for r in kept):
                kept.append(record)
                if len(kept) > 1 and kept[-2].id > record.id:  # (oldest first, by id)
                    self._kept[record.lfdi] = deque(sorted(kept, key=lambda r: r.id))

    # --- mirror usage points ----------------------------------------------------------------

    def forget_mups(self) -> None:
        """Another process changed MirrorUsagePoints: read them afresh on next use."""
        self._mups = None

    async def reread_mups(self, keys: Iterable[str]) -> None:
        """Another process wrote these MirrorUsagePoints: index them as stored now."""
        if self._mups is None:
            return  # read whole on first use
        keys = list(keys)
        stored = await self.state.mups_by_key(keys)
        for key in keys:
            record = stored.get(key)
            if record is not None:
                self._mups.put(record)
            else:
                self._mups.drop(int(key))

    async def _index(self) -> MupIndex:
        if self._mups is None:
            self._mups = MupIndex(await self.state.mups())
        return self._mups

    async def upsert_mup(self, scope: ClientScope, doc: m.MirrorUsagePoint) -> MupRecord:
        device = self._visible_device(scope, doc.deviceLFDI)
        async with self._mup_writes:
            index = await self._index()
            known = index.by_id.get(index.by_mrid.get(doc.mRID.upper(), -1))
            if known is not None and known.lfdi != device.lfdi:
                raise InvalidInput("mRID belongs to another device's MirrorUsagePoint")
            record = _copy(known) if known is not None else MupRecord(
                id=await self.state.next_id("mup"), mrid=doc.mRID.upper(), lfdi=device.lfdi,
                edev_id=device.id, role_flags=doc.roleFlags,
                service_category=doc.serviceCategoryKind, status=doc.status)
            record.description = doc.description
            record.role_flags, record.status = doc.roleFlags, doc.status
            await self._readings(index, record, device.resource_id, doc.MirrorMeterReading)
            await self.state.save_mup(record)
            index.put(record)
        return record

    async def post_readings(self, scope: ClientScope, mup_id: int,
                            mmrs: list[m.MirrorMeterReading]) -> MupRecord:
        async with self._mup_writes:
            index = await self._index()
            record = _copy(await self.mup(scope, mup_id))
            device = self._visible_device(scope, record.lfdi)
            await self._readings(index, record, device.resource_id, mmrs)
            await self.state.save_mup(record)
            index.put(record)
        return record

    async def delete_mup(self, scope: ClientScope, mup_id: int) -> None:
        async with self._mup_writes:
            record = await self.mup(scope, mup_id)
            await self.state.delete_mup(record.id)
            (await self._index()).drop(record.id)

    async def mup(self, scope: ClientScope, mup_id: int) -> MupRecord:
        record = (await self._index()).by_id.get(mup_id)
        if record is None or not self.registry.sees_lfdi(scope, record.lfdi):
            raise NotFound("no such MirrorUsagePoint")
        return record

    async def mups(self, scope: ClientScope) -> list[MupRecord]:
        index = await self._index()
        ids = sorted(i for lfdi in self.registry.visible_set(scope).lfdis
                     for i in index.by_lfdi.get(lfdi, ()))
        return [index.by_id[i] for i in ids]

    async def mup_count(self, scope: ClientScope) -> int:
        index = await self._index()
        return sum(len(index.by_lfdi.get(lfdi, ()))
                   for lfdi in self.registry.visible_set(scope).lfdis)

    @staticmethod
    def _check_mmr_owners(index: MupIndex, record: MupRecord,
                          mmrs: list[m.MirrorMeterReading]) -> None:
        """A MirrorMeterReading mRID belongs to one MirrorUsagePoint: refuse a second owner."""
        for mmr in mmrs:
            owner = index.reading_owner.get(mmr.mRID.upper())
            if owner is not None and owner != record.id:
                raise InvalidInput("MirrorMeterReading mRID belongs to another MirrorUsagePoint")

    async def _readings(self, index: MupIndex, record: MupRecord, resource_id: str | None,
                        mmrs: list[m.MirrorMeterReading]) -> None:
        self._check_mmr_owners(index, record, mmrs)
        now = utcnow()
        for mmr in mmrs:
            key = mmr.mRID.upper()
            known = record.readings.get(key, {})
            rt = mmr.ReadingType or (m.ReadingType(**known["reading_type"])
                                     if known.get("reading_type") else None)
            if rt is None:
                raise InvalidInput(f"MirrorMeterReading {key} has no ReadingType")
            values = mapper.mirrored_values(rt, mmr, now)
            record.pending.extend({"quantity": v.quantity.value, "value": v.value,
                                   "at": mapper.epoch(v.at)} for v in values)
            record.readings[key] = {
                "description": mmr.description,
                "reading_type": {"uom": rt.uom, "powerOfTenMultiplier": rt.powerOfTenMultiplier,
                                 "kind": rt.kind, "flowDirection": rt.flowDirection,
                                 "phase": rt.phase, "dataQualifier": rt.dataQualifier,
                                 "accumulationBehaviour": rt.accumulationBehaviour,
                                 "commodity": rt.commodity, "intervalLength": rt.intervalLength},
            }
        if resource_id is None:  # not a platform DER yet: kept until it is
            del record.pending[:-PENDING_READINGS]
            return
        readings = [Reading(resource_id=resource_id, quantity=Quantity(p["quantity"]),
                            value=p["value"], at=mapper.from_epoch(p["at"]),
                            protocol=self.protocol) for p in record.pending]
        if readings:
            await self.gateway.record_readings(readings)
        record.pending = []


    # --- DER documents and log events ---------------------------------------------------------

    async def der_document(self, record: EndDeviceRecord, which: str) -> bytes:
        stored = await self.state.der_document(record.id, which)
        if stored is None:
            raise NotFound(f"no {DER_DOCS[which]} has been posted")
        return stored.encode()

    async def put_der_document(self, record: EndDeviceRecord, which: str, model: Any) -> None:
        model.href = Hrefs(record.id).path("der", 1, which)
        await self.state.save_der_document(record.id, which, serialize(model).decode())

    async def log_event(self, record: EndDeviceRecord, model: m.LogEvent) -> str:
        log_id = await self.state.next_id("log")
        href = Hrefs(record.id).path("lel", log_id)
        model.href = href
        await self.state.save_log_event(record.id, log_id, serialize(model).decode())
        return href


def _copy(record: MupRecord) -> MupRecord:
    """A working copy: the indexed record changes only once the store has the new one."""
    return copy.deepcopy(record)


def _named(controls: list[ControlRecord], mrid: str) -> ControlRecord | None:
    return next((c for c in controls if c.mrid.upper() == mrid.upper()), None)
