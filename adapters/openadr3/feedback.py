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
        # repeat it, and must not cost a read each; nor must a DER's first report on a
        # changed event (that was a read per DER of every fan-out). While `_complete`, every
        # record is here but the `_stale` keys (another process wrote them): a key absent is
        # a key never recorded. Bounded; past the bound, keys are read one by one.
        self._acked: dict[str, dict[str, Any]] = {}
        self._complete = False
        self._stale: set[str] = set()

    async def load(self) -> None:
        """Read every acknowledgement record (start-up, or the event log's follower fell
        behind). Gateway-rendered events are one per DER and version, so they are bounded
        by the DERs; if there are more than the bound, keys are read when needed."""
        found = await self.records.list(ACK)
        self._stale.clear()
        self._complete = len(found) < ACKED_CACHE
        self._acked = dict(found) if self._complete else {}

    def forget(self, keys: tuple[str, ...]) -> None:
        """Another process recorded these acknowledgements: read them again when needed."""
        for key in keys:
            self._acked.pop(key, None)
            if self._complete:
                self._stale.add(key)

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
        self._stale.discard(key)
        self._remember(key, {"ref": ref, "status": status.value})

    async def _last_ack(self, key: str) -> dict[str, Any]:
        """The last acknowledgement recorded under `key`, or {}."""
        last = self._acked.get(key)
        if last is not None:
            return last
        if self._complete and key not in self._stale:
            return {}  # every record is in memory: none was written under this key
        last = await self.records.get(ACK, key) or {}
        self._stale.discard(key)
        if last:
            self._remember(key, last)
        return last

    def _remember(self, key: str, last: dict[str, Any]) -> None:
        if key not in self._acked and len(self._acked) >= ACKED_CACHE:
            self._acked.clear()  # past the bound: what is not in memory is read
            self._complete = False
            self._stale.clear()
        self._acked[key] = last


def _acknowledged(event: StoredObject) -> dict[str, list[str]]:
    """DERs a report on `event` acknowledges, with the instructions behind each: the DER of a
    gateway-rendered event, or the DERs a business-logic event instructed."""
    if event.meta.get("origin") == GATEWAY and "resource_id" in event.meta:
        return {event.meta["resource_id"]: list(event.meta.get("instructions") or [])}
    return dict(event.meta.get("by_resource") or {})
