"""Effective controls and the notices coordination raised, as their readers may see them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway import authz
from gateway.coordination.topology import Topology
from gateway.domain import EffectiveControl, LimitationNotice, Participant, Role, TargetKind
from gateway.services.unit import UnitOfWork
from gateway.store import repo


class Controls:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def effective_control(self, resource_id: str) -> EffectiveControl | None:
        async with self._uow.db.read() as session:
            return await repo.control(session, resource_id)

    async def effective_controls(self, resource_ids: Iterable[str] | None = None
                                 ) -> dict[str, EffectiveControl]:
        async with self._uow.db.read() as session:
            return await repo.controls(session, resource_ids)

    async def effective_control_documents(self, resource_ids: Iterable[str] | None = None
                                          ) -> list[dict[str, Any]]:
        """The same controls as JSON documents, for the API."""
        async with self._uow.db.read() as session:
            return await repo.control_documents(session, resource_ids)

    async def notices(self, actor: Participant, *, since_id: int = 0,
                      limit: int = 100) -> list[tuple[int, LimitationNotice]]:
        """Notices the actor may see, in id order; pages past invisible ones until `limit`."""
        topo = await self._uow.topology()
        found: list[tuple[int, LimitationNotice]] = []
        while len(found) < limit:
            async with self._uow.db.read() as session:
                rows = await repo.notices(session, since_id=since_id, limit=500)
            if not rows:
                break
            found += [(i, n) for i, n in rows if notice_visible(actor, n, topo)]
            since_id = rows[-1][0]
        return found[:limit]


def notice_visible(actor: Participant, notice: LimitationNotice, topo: Topology) -> bool:
    if actor.role is Role.ADMIN or actor.id in notice.recipients:
        return True
    if actor.role in {Role.LDC, Role.SCADA}:
        ldc_id = actor.ldc_id if actor.role is Role.SCADA else actor.id
        if notice.subject.kind is TargetKind.RESOURCE:
            area = authz.area_of(actor, topo) or set()
            return notice.subject.id in area
        return bool(ldc_id and ldc_id in notice.recipients)
    return False
