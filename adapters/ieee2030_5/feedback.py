"""Up the stack: Responses become canonical acknowledgements, mirrored readings canonical
readings. Every check happens before anything is stored."""

from __future__ import annotations

import time
from typing import Any

from adapters.ieee2030_5 import mapper
from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.registry import EndDeviceRegistry
from adapters.ieee2030_5.scope import ClientScope
from adapters.ieee2030_5.state import AdapterState, MupRecord, ResponseRecord
from adapters.ieee2030_5.views import RESPONSE_SET
from gateway.domain import Acknowledgement, Protocol, Reading, utcnow
from gateway.errors import InvalidInput, NotFound


class Feedback:
    def __init__(self, gateway: Any, state: AdapterState, registry: EndDeviceRegistry) -> None:
        self.gateway = gateway
        self.state = state
        self.registry = registry

    def _visible_device(self, scope: ClientScope, lfdi: str) -> Any:
        lfdi = lfdi.upper()
        for record in self.registry.visible(scope):
            if record.lfdi == lfdi and record.resource_id is not None:
                return record
        raise NotFound("unknown endDeviceLFDI for this client")

    # --- responses ----------------------------------------------------------------------

    async def respond(self, scope: ClientScope, doc: m.Response) -> ResponseRecord:
        record = self._visible_device(scope, doc.endDeviceLFDI)
        if doc.status is None or doc.status not in mapper.RESPONSE_STATUS:
            raise InvalidInput(f"unsupported Response status {doc.status}")
        controls = await self.state.controls(record.resource_id)
        control = next((c for c in controls if c.mrid.upper() == doc.subject.upper()), None)
        if control is None:
            raise NotFound("Response subject is not a DERControl of this EndDevice")
        now = int(time.time())
        stored = ResponseRecord(id=await self.state.next_id("rsp"), set_id=RESPONSE_SET,
                                subject=control.mrid, lfdi=record.lfdi, status=doc.status,
                                created=doc.createdDateTime or now)
        await self.gateway.record_acknowledgement(Acknowledgement(
            resource_id=record.resource_id, status=mapper.ack_status(doc.status),
            protocol=Protocol.IEEE2030_5, protocol_status=str(doc.status),
            at=mapper.from_epoch(stored.created),
            instruction_id=control.instruction_ids[0] if control.instruction_ids else None,
            control_ref=control.mrid))
        await self.state.save_response(stored)
        return stored

    # --- mirror usage points ----------------------------------------------------------------

    async def upsert_mup(self, scope: ClientScope, doc: m.MirrorUsagePoint) -> MupRecord:
        device = self._visible_device(scope, doc.deviceLFDI)
        existing = next((r for r in await self.state.mups() if r.mrid == doc.mRID.upper()), None)
        if existing is not None and existing.lfdi != device.lfdi:
            raise InvalidInput("mRID belongs to another device's MirrorUsagePoint")
        record = existing or MupRecord(
            id=await self.state.next_id("mup"), mrid=doc.mRID.upper(), lfdi=device.lfdi,
            edev_id=device.id, role_flags=doc.roleFlags, service_category=doc.serviceCategoryKind,
            status=doc.status)
        record.description = doc.description
        record.role_flags, record.status = doc.roleFlags, doc.status
        await self._readings(record, device.resource_id, doc.MirrorMeterReading)
        await self.state.save_mup(record)
        return record

    async def post_readings(self, scope: ClientScope, mup_id: int,
                            mmrs: list[m.MirrorMeterReading]) -> MupRecord:
        record = await self.mup(scope, mup_id)
        device = self._visible_device(scope, record.lfdi)
        await self._readings(record, device.resource_id, mmrs)
        await self.state.save_mup(record)
        return record

    async def mup(self, scope: ClientScope, mup_id: int) -> MupRecord:
        record = await self.state.mup(mup_id)
        visible = {r.lfdi for r in self.registry.visible(scope)}
        if record is None or record.lfdi not in visible:
            raise NotFound("no such MirrorUsagePoint")
        return record

    async def mups(self, scope: ClientScope) -> list[MupRecord]:
        visible = {r.lfdi for r in self.registry.visible(scope)}
        return [r for r in await self.state.mups() if r.lfdi in visible]

    async def _check_mmr_owners(self, record: MupRecord,
                                mmrs: list[m.MirrorMeterReading]) -> None:
        """A MirrorMeterReading mRID belongs to one MirrorUsagePoint: refuse a second owner."""
        wanted = {mmr.mRID.upper() for mmr in mmrs}
        for other in await self.state.mups():
            if other.id != record.id and wanted & set(other.readings):
                raise InvalidInput("MirrorMeterReading mRID belongs to another MirrorUsagePoint")

    async def _readings(self, record: MupRecord, resource_id: str,
                        mmrs: list[m.MirrorMeterReading]) -> None:
        await self._check_mmr_owners(record, mmrs)
        now = utcnow()
        readings: list[Reading] = []
        for mmr in mmrs:
            key = mmr.mRID.upper()
            known = record.readings.get(key, {})
            rt = mmr.ReadingType or (m.ReadingType(**known["reading_type"])
                                     if known.get("reading_type") else None)
            if rt is None:
                raise InvalidInput(f"MirrorMeterReading {key} has no ReadingType")
            values = mapper.mirrored_values(rt, mmr, now)
            readings.extend(Reading(resource_id=resource_id, quantity=v.quantity, value=v.value,
                                    at=v.at, protocol=Protocol.IEEE2030_5) for v in values)
            record.readings[key] = {
                "description": mmr.description,
                "reading_type": {"uom": rt.uom, "powerOfTenMultiplier": rt.powerOfTenMultiplier,
                                 "kind": rt.kind, "flowDirection": rt.flowDirection,
                                 "phase": rt.phase, "dataQualifier": rt.dataQualifier,
                                 "accumulationBehaviour": rt.accumulationBehaviour,
                                 "commodity": rt.commodity, "intervalLength": rt.intervalLength},
            }
        if readings:
            await self.gateway.record_readings(readings)
