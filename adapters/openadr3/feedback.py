"""Up: a VEN's reports become canonical readings and acknowledgements (docs/openadr3.md,
"Up: reports -> readings and acknowledgements")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.openadr3 import mapper
from adapters.openadr3.state import GATEWAY, Records, StoredObject, resource_name_key
from adapters.openadr3.vtn.service import Change, Hook, VtnService
from gateway.domain import Acknowledgement

ACK = "ack"  # records kind: the last acknowledgement per (version, event, DER)
ACKED_CACHE = 100_000  # (event, DER) acknowledgements kept in memory


class Feedback(Hook):
    """After a report is stored: its readings and, where it answers an event, the DERs'
    acknowledgements, recorded in the core."""

    def __init__(self, service: VtnService, gateway: Any, records: Records, name: str) -> None:
        self.service = service
        self.gateway = gateway
        self.records = records
        self.protocol = name  # the Binding.protocol of our DERs
        # The last acknowledgement per (event, DER), as in the records: periodic reports
        # repeat it, and must not cost a read each. Bounded; the records stay the truth.
        self._acked: dict[str, dict[str, Any]] = {}
        # Events whose acknowledgement records were all read into `_acked`: a DER's first
        # report on a new event then costs no read (it was one read per DER of a fan-out).
        self._loaded: set[str] = set()

    def forget(self, keys: tuple[str, ...] | None) -> None:
        """Another process recorded acknowledgements (those keys; None: any): what is
        remembered of them here is read again from the records when next needed."""
        if keys is None:
            self._acked.clear()
            self._loaded.clear()
            return
        for key in keys:
            self._acked.pop(key, None)
            self._loaded.discard(_event_prefix(key))

    async def after_write(self, change: Change) -> None:
        if change.kind == "report" and change.operation != "DELETE":
            await self._feedback(change.obj)

    async def _feedback(self, report: StoredObject) -> None:
        names = self._named_ders(report)
        if not names:
            return
        now = datetime.now(UTC)
        readings = mapper.report_readings(report.body, names, now, self.protocol)
        if readings:
            await self.gateway.record_readings(readings)
        event = self.service.store.get(report.version, "event", report.body["eventID"])
        if event is None:
            return
        acknowledged = _acknowledged(event)
        for entry in report.body.get("resources", ()):
            rid = names.get(entry["resourceName"])
            if rid in acknowledged:
                await self._acknowledge(event, rid, acknowledged[rid], entry, now)

    def _named_ders(self, report: StoredObject) -> dict[str, str]:
        """The platform DERs the report's resources name, by resource name: looked up in the
        index of names under the reporting client's VENs (a scan of all its resources, per
        report, was 250 objects sorted for each DER's report)."""
        store, version = self.service.store, report.version
        vens = store.owned(version, "ven", report.owner)
        names: dict[str, str] = {}
        for entry in report.body.get("resources", ()):
            name = entry.get("resourceName") if isinstance(entry, dict) else None
            if not isinstance(name, str) or name in names:
                continue
            for ven in vens:
                key = resource_name_key(ven.id, name)
                found = [r for r in store.named(version, "resource", key)
                         if r.owner == report.owner and "resource_id" in r.meta]
                if found:
                    names[name] = found[0].meta["resource_id"]
                    break
        return names

    async def _acknowledge(
        self,
        event: StoredObject,
        rid: str,
        instructions: list[str],
        entry: dict[str, Any],
        now: datetime,
    ) -> None:
        status, word = mapper.report_ack_status(entry)
        ref = f"{event.id}@{event.body['modificationDateTime']}"
        key = f"{event.version}:{event.id}:{rid}"
        last = await self._last_ack(key)
        if last.get("ref") == ref and last.get("status") == status.value:
            self._acked[key] = last
            return  # periodic reports repeat themselves; acknowledge a change only
        await self.gateway.record_acknowledgement(
            Acknowledgement(
                resource_id=rid,
                status=status,
                protocol=self.protocol,
                protocol_status=word,
                at=now,
                instruction_id=instructions[0] if instructions else None,
                control_ref=ref,
            )
        )
        self._acked.pop(key, None)
        await self.records.put(ACK, key, {"ref": ref, "status": status.value})
        if len(self._acked) >= ACKED_CACHE:
            self._acked.clear()
            self._loaded.clear()
        self._acked[key] = {"ref": ref, "status": status.value}

    async def _last_ack(self, key: str) -> dict[str, Any]:
        """The last acknowledgement recorded under `key`, or {}: from memory, else read with
        every other record of the same event (one read per event, not one per DER)."""
        last = self._acked.get(key)
        if last is not None:
            return last
        prefix = _event_prefix(key)
        if prefix in self._loaded:
            return {}
        found = await self.records.list(ACK, prefix)
        if len(self._acked) + len(found) >= ACKED_CACHE:
            self._acked.clear()
            self._loaded.clear()
        self._acked.update(found)
        self._loaded.add(prefix)
        return self._acked.get(key, {})


def _event_prefix(key: str) -> str:
    """'version:event:' of an acknowledgement record's key 'version:event:DER' (a DER id with
    a colon makes it longer: fewer records per read, each still exactly those it names)."""
    return key[:key.rfind(":") + 1]


def _acknowledged(event: StoredObject) -> dict[str, list[str]]:
    """DERs a report on `event` acknowledges, with the instructions behind each: the DER of a
    gateway-rendered event, or the DERs a business-logic event instructed."""
    if event.meta.get("origin") == GATEWAY and "resource_id" in event.meta:
        return {event.meta["resource_id"]: list(event.meta.get("instructions") or [])}
    return dict(event.meta.get("by_resource") or {})
