"""The adapter's state: its operators over the records port, and the fleet the model shows.

The store is the truth. `Fleet` is a cache of the part of the platform the address space
shows (DERs, their connection points and LDCs, effective controls), refreshed from the
event log (`render.py`), never by an in-process call alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.opcua.model.users import OperatorAccount, UserDirectory, account_from_doc
from gateway.domain import ConnectionPoint, EffectiveControl, Participant, Resource

USER_RECORD = "user"
ALARM_ACK_RECORD = "alarm_ack"


class Records(Protocol):
    """What the adapter uses of its records port."""

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

    async def put(self, ident: str, user: str, comment: str, at: str) -> None:
        await self._records.put(ALARM_ACK_RECORD, ident, {"user": user, "comment": comment,
                                                          "at": at})
        self._acked.add(ident)

    async def delete(self, ident: str) -> None:
        if ident in self._acked:
            await self._records.delete(ALARM_ACK_RECORD, ident)
            self._acked.discard(ident)


@dataclass
class Fleet:
    """The DERs the model shows, with their connection points, LDCs and controls."""

    resources: dict[str, Resource] = field(default_factory=dict)
    connection_points: dict[str, ConnectionPoint] = field(default_factory=dict)
    ldcs: dict[str, Participant] = field(default_factory=dict)
    controls: dict[str, EffectiveControl] = field(default_factory=dict)

    def owner(self, resource_id: str) -> str | None:
        """The LDC whose area a DER belongs to (None: not in the model)."""
        res = self.resources.get(resource_id)
        cp = self.connection_points.get(res.connection_point_id) if res else None
        return cp.ldc_id if cp else None
