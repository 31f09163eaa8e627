"""The adapter's state: its operators over the records port, and the fleet the model shows.

The store is the truth. `Fleet` is a cache of the part of the platform the address space
shows (DERs, their connection points and LDCs, effective controls) and of the latest values
in it, refreshed from the event log (`render.py`, `feedback.py`), never by an in-process
call alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from adapters.opcua.codec.values import Quality, Value
from adapters.opcua.mapper import acknowledgement_values, control_values
from adapters.opcua.model import node_ids as ids
from adapters.opcua.model.aggregates import Aggregates
from adapters.opcua.model.users import OperatorAccount, UserDirectory, account_from_doc
from gateway.domain import (
    Acknowledgement,
    ConnectionPoint,
    EffectiveControl,
    Nameplate,
    Participant,
    Resource,
)

USER_RECORD = "user"
ALARM_ACK_RECORD = "alarm_ack"


class Records(Protocol):
    """What the adapter uses of its records port."""

    async def get(self, kind: str, key: str) -> dict[str, Any] | None: ...
    async def put(self, kind: str, key: str, doc: dict[str, Any]) -> None: ...
    async def delete(self, kind: str, key: str) -> bool: ...
    async def list(self, kind: str, prefix: str | None = None
                   ) -> list[tuple[str, dict[str, Any]]]: ...


class OperatorRecords:
    """Operators provisioned through the platform routes, kept in the adapter's records."""

    def __init__(self, records: Records, directory: UserDirectory) -> None:
        self._records = records
        self._directory = directory

    async def load(self) -> None:
        """Every stored operator into the directory (those from the settings file win)."""
        for _, doc in await self._records.list(USER_RECORD):
            account = account_from_doc(doc)
            if not self._directory.is_fixed(account.name):
                self._directory.add(account)

    async def refresh(self, kind: str, keys: tuple[str, ...] | None) -> None:
        """Another process changed operators (`keys`; None: any of them)."""
        if kind != USER_RECORD:
            return
        if keys is None:
            stored = dict(await self._records.list(USER_RECORD))
            keys = tuple(set(stored) | {a.name for a in self._directory.all()})
        for name in keys:
            if self._directory.is_fixed(name):
                continue
            doc = await self._records.get(USER_RECORD, name)
            if doc is None:
                self._directory.remove(name)
            else:
                self._directory.add(account_from_doc(doc))

    async def put(self, account: OperatorAccount) -> None:
        """Stored first, then effective: a crash never leaves a user that was not stored."""
        await self._records.put(USER_RECORD, account.name, account.to_doc())
        self._directory.add(account)

    async def delete(self, name: str) -> None:
        await self._records.delete(USER_RECORD, name)
        self._directory.remove(name)


class AlarmAcks:
    """Acknowledged alarms that are still active, so that a restart does not raise them again
    unacknowledged: stored before the acknowledgement is answered Good, deleted when the
    condition is gone."""

    def __init__(self, records: Records) -> None:
        self._records = records
        self._acked: set[str] = set()  # condition idents

    async def load(self) -> None:
        self._acked = {key for key, _ in await self._records.list(ALARM_ACK_RECORD)}

    def acked(self, ident: str) -> bool:
        return ident in self._acked

    async def refresh(self, kind: str, keys: tuple[str, ...] | None) -> None:
        """Another process acknowledged or forgot alarms."""
        if kind == ALARM_ACK_RECORD:
            await self.load()

    async def put(self, ident: str, user: str, comment: str, at: str) -> None:
        await self._records.put(ALARM_ACK_RECORD, ident, {"user": user, "comment": comment,
                                                          "at": at})
        self._acked.add(ident)

    async def delete(self, ident: str) -> None:
        if ident in self._acked:
            await self._records.delete(ALARM_ACK_RECORD, ident)
            self._acked.discard(ident)


@dataclass(slots=True)
class DerRecord:
    """What the model shows of one DER, compact (a DER costs this and its indexes at rest)."""

    connection_point_id: str
    kind: str
    protocol: str
    aggregator_id: str
    nameplate: Nameplate
    online: bool | None

    @classmethod
    def of(cls, res: Resource) -> DerRecord:
        return cls(res.connection_point_id, str(res.kind), str(res.binding.protocol),
                   res.aggregator_id or "", res.nameplate, res.online)


@dataclass(slots=True)
class Measurements:
    """A DER's latest reading of each quantity the model shows."""

    values: dict[str, tuple[float | bool, datetime]] = field(default_factory=dict)
    last_seen: datetime | None = None


class Fleet:
    """The part of the platform the address space shows, and the latest values in it.

    Nodes are made from this on demand (`model/shapes.py`); it is filled from the store at
    a rebuild and kept current from the event log. Connection points, T-D nodes and LDCs are
    shown while they have DERs."""

    def __init__(self) -> None:
        self.ders: dict[str, DerRecord] = {}
        self.cps: dict[str, ConnectionPoint] = {}
        self.ldcs: dict[str, Participant] = {}
        self._ders_of_cp: dict[str, set[str]] = {}
        self._cps_of_ldc: dict[str, set[str]] = {}
        self._cps_at_td: dict[tuple[str, str], set[str]] = {}
        self.controls: dict[str, EffectiveControl] = {}
        self.control_values: dict[str, dict[str, Value]] = {}  # DERs with a control only
        self.measurements: dict[str, Measurements] = {}
        self.acknowledgements: dict[str, Acknowledgement] = {}
        # sums over the DERs below each connection point and T-D node (by group ident)
        self.aggregates = Aggregates()
        # bumped whenever what is below what changes: caches of a node's owner compare it
        self.generation = 0

    # -- topology --------------------------------------------------------------------------

    def place(self, resource_id: str, record: DerRecord, cp: ConnectionPoint,
              ldc: Participant | None) -> list[str]:
        """Add or update a DER; the identifiers of the objects whose children changed."""
        old = self.ders.get(resource_id)
        changed: list[str] = []
        if old is not None and old.connection_point_id != cp.id:
            changed += self._unlink(resource_id, old.connection_point_id)
        self.ders[resource_id] = record
        if ldc is not None:
            self.ldcs[cp.ldc_id] = ldc
        if old is None or old.connection_point_id != cp.id:
            changed += self._link(resource_id, cp)
        elif self.cps.get(cp.id) != cp:
            changed += [ids.cp(cp.id)]
            self.cps[cp.id] = cp
        if changed:
            self.generation += 1
        return changed

    def drop(self, resource_id: str) -> list[str]:
        record = self.ders.pop(resource_id, None)
        if record is None:
            return []
        for store in (self.controls, self.control_values, self.measurements,
                      self.acknowledgements):
            store.pop(resource_id, None)
        self.generation += 1
        return self._unlink(resource_id, record.connection_point_id)

    def _link(self, resource_id: str, cp: ConnectionPoint) -> list[str]:
        changed = [ids.cp(cp.id)]
        ders = self._ders_of_cp.setdefault(cp.id, set())
        if not ders:  # a connection point (and maybe its T-D node, its LDC) appears
            self.cps[cp.id] = cp
            at_td = self._cps_at_td.setdefault((cp.ldc_id, cp.td_node), set())
            of_ldc = self._cps_of_ldc.setdefault(cp.ldc_id, set())
            changed += [ids.ldc(cp.ldc_id), ids.td_node(cp.ldc_id, cp.td_node),
                        ids.td_folder(cp.ldc_id), ids.FLEET]
            at_td.add(cp.id)
            of_ldc.add(cp.id)
        ders.add(resource_id)
        return changed

    def _unlink(self, resource_id: str, cp_id: str) -> list[str]:
        changed = [ids.cp(cp_id)]
        ders = self._ders_of_cp.get(cp_id, set())
        ders.discard(resource_id)
        cp = self.cps.get(cp_id)
        if not ders and cp is not None:  # its last DER left: the connection point goes
            del self._ders_of_cp[cp_id], self.cps[cp_id]
            _discard(self._cps_at_td, (cp.ldc_id, cp.td_node), cp_id)
            _discard(self._cps_of_ldc, cp.ldc_id, cp_id)
            changed += [ids.ldc(cp.ldc_id), ids.td_node(cp.ldc_id, cp.td_node),
                        ids.td_folder(cp.ldc_id), ids.FLEET]
        return changed

    # -- what exists (model.node_ids.Known) and what is below what -------------------------

    def has_der(self, resource_id: str) -> bool:
        return resource_id in self.ders

    def has_cp(self, cp_id: str) -> bool:
        return cp_id in self.cps

    def has_ldc(self, ldc_id: str) -> bool:
        return ldc_id in self._cps_of_ldc

    def has_td(self, ldc_id: str, td_node: str) -> bool:
        return (ldc_id, td_node) in self._cps_at_td

    def ldc_ids(self) -> list[str]:
        return sorted(self._cps_of_ldc)

    def cps_of_ldc(self, ldc_id: str) -> list[str]:
        return sorted(self._cps_of_ldc.get(ldc_id, ()))

    def td_nodes_of(self, ldc_id: str) -> list[str]:
        return sorted(td for (ldc, td) in self._cps_at_td if ldc == ldc_id)

    def cps_at_td(self, ldc_id: str, td_node: str) -> list[str]:
        return sorted(self._cps_at_td.get((ldc_id, td_node), ()))

    def ders_of_cp(self, cp_id: str) -> list[str]:
        return sorted(self._ders_of_cp.get(cp_id, ()))

    def cp_place(self, cp_id: str) -> tuple[str, str]:
        cp = self.cps[cp_id]
        return cp.ldc_id, cp.td_node

    def cp_of(self, resource_id: str) -> str:
        return self.ders[resource_id].connection_point_id

    def properties(self, kind: str, key: str) -> dict[str, Value]:
        """The property values of a DER, connection point or LDC."""
        return _PROPERTIES[kind](self, key)

    def owner(self, resource_id: str) -> str | None:
        """The LDC whose area a DER belongs to (None: not in the model)."""
        record = self.ders.get(resource_id)
        cp = self.cps.get(record.connection_point_id) if record else None
        return cp.ldc_id if cp else None

    # -- the latest values (what a node shows when it is made) -----------------------------

    def measurement(self, resource_id: str, name: str) -> tuple[Value, datetime | None, Quality]:
        record = self.ders.get(resource_id)
        if name == "Online":
            return (record.online if record else None), None, Quality.INITIAL
        seen = self.measurements.get(resource_id)
        if name == "LastSeen":
            return (seen.last_seen if seen else None), None, Quality.INITIAL
        quality = (Quality.NO_COMMUNICATION if record is not None and record.online is False
                   else Quality.INITIAL)
        value, at = seen.values.get(name, (None, None)) if seen else (None, None)
        return value, at, quality

    def control(self, resource_id: str, name: str) -> tuple[Value, datetime | None, Quality]:
        values = self.control_values.get(resource_id)
        if values is None:
            record = self.ders.get(resource_id)
            if record is None:
                return None, None, Quality.CURRENT
            values = control_values(None, {}, record.nameplate)
        return values.get(name), None, Quality.CURRENT

    def acknowledgement(self, resource_id: str, name: str
                        ) -> tuple[Value, datetime | None, Quality]:
        ack = self.acknowledgements.get(resource_id)
        if ack is None:
            return None, None, Quality.INITIAL
        return acknowledgement_values(ack).get(name), ack.at, Quality.CURRENT

    def total(self, group: str, name: str) -> tuple[Value, datetime | None, Quality]:
        return self.aggregates.totals(group).get(name), None, Quality.CURRENT


def der_properties(record: DerRecord) -> dict[str, Value]:
    return {"Kind": record.kind, "Protocol": record.protocol,
            "Aggregator": record.aggregator_id,
            "RatedExportW": float(record.nameplate.export_max_w),
            "RatedImportW": float(record.nameplate.import_max_w),
            "RatedVar": float(record.nameplate.var_max)}


def cp_properties(cp: ConnectionPoint) -> dict[str, Value]:
    return {"TdNode": cp.td_node, "Feeder": cp.feeder, "Ldc": cp.ldc_id}


def ldc_properties(ldc_id: str, ldc: Participant | None) -> dict[str, Value]:
    return {"ParticipantId": ldc_id,
            "DsoModel": str(ldc.dso_model) if ldc and ldc.dso_model else "",
            "HostLdc": (ldc.host_ldc_id or "") if ldc else ""}


_PROPERTIES: dict[str, Callable[[Fleet, str], dict[str, Value]]] = {
    "der": lambda fleet, key: der_properties(fleet.ders[key]) if key in fleet.ders else {},
    "cp": lambda fleet, key: cp_properties(fleet.cps[key]) if key in fleet.cps else {},
    "ldc": lambda fleet, key: ldc_properties(key, fleet.ldcs.get(key)),
}


def _discard[K](index: dict[K, set[str]], key: K, member: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
