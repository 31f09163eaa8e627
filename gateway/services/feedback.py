"""What comes back from DERs: acknowledgements and readings, group-committed (thousands of
DERs answer one instruction at once), and what the adapters know of delivering controls.

Acknowledgements are idempotent per (DER, instruction, control, status): a retried or
repeated answer returns the stored one and announces nothing new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from gateway.batching import Coalescer
from gateway.delivery_state import DeliveryStates
from gateway.domain import (
    REFUSALS,
    Acknowledgement,
    DeliveryMark,
    InstructionKind,
    Quantity,
    Reading,
    ResourceDelivery,
    TargetKind,
)
from gateway.errors import NotFound
from gateway.events import Topic
from gateway.jsonform import to_json
from gateway.services.unit import UnitOfWork
from gateway.store import repo


class Feedback:
    def __init__(self, uow: UnitOfWork,
                 set_online: Callable[[dict[str, bool]], Awaitable[dict[str, bool]]]) -> None:
        self._uow = uow
        self._set_online = set_online
        self.acks: Coalescer[Acknowledgement, Acknowledgement] = Coalescer(self._store_acks)
        self.readings_batches: Coalescer[Sequence[Reading], int] = Coalescer(
            self._store_readings)
        self._delivery = DeliveryStates(uow.db, uow.topology, uow.committed)

    # -- acknowledgements --------------------------------------------------------------------

    async def record_acknowledgement(self, ack: Acknowledgement) -> Acknowledgement:
        """Store and announce an acknowledgement, once. Concurrent ones share a transaction
        (gateway.batching); a refusal of an aggregate dispatch, which recomputes, has its
        own."""
        topo = await self._uow.topology()
        if ack.resource_id not in topo.resources:
            raise NotFound(f"no resource {ack.resource_id!r}")
        if not (ack.status in REFUSALS and ack.instruction_id):
            return await self.acks.submit(ack)
        async with self._uow.write() as session:
            ((ack_id, new),) = await repo.add_acknowledgements(session, [ack])
            stored = replace(ack, id=ack_id)
            if new:
                await repo.add_outbox(session, Topic.ACKNOWLEDGEMENT, to_json(stored))
                ins = await repo.instruction(session, ack.instruction_id)
                if ins and ins.kind is InstructionKind.DISPATCH and (
                        ins.target.kind is not TargetKind.RESOURCE):
                    await self._uow.recompute(session, topo.target_ldcs(ins.target))
        self._uow.committed()
        return stored

    async def _store_acks(self, acks: list[Acknowledgement]) -> list[Acknowledgement]:
        async with self._uow.db.write() as session:
            ids = await repo.add_acknowledgements(session, acks)
            stored = [replace(a, id=i) for a, (i, _) in zip(acks, ids, strict=True)]
            await repo.add_outbox_many(session, [
                (Topic.ACKNOWLEDGEMENT, to_json(s))
                for s, (_, new) in zip(stored, ids, strict=True) if new])
        self._uow.committed()
        return stored

    async def acknowledgements(self, *, resource_id: str | None = None,
                               resource_ids: Iterable[str] | None = None,
                               instruction_id: str | None = None, since_id: int = 0,
                               limit: int = 100) -> list[Acknowledgement]:
        ids = [resource_id] if resource_id else resource_ids
        async with self._uow.db.read() as session:
            return await repo.acknowledgements(session, resource_ids=ids,
                                               instruction_id=instruction_id, since_id=since_id,
                                               limit=limit)

    async def latest_acknowledgements(self, resource_ids: Iterable[str] | None = None
                                      ) -> dict[str, Acknowledgement]:
        async with self._uow.db.read() as session:
            return await repo.latest_acknowledgements(session, resource_ids)

    # -- readings ----------------------------------------------------------------------------

    async def record_readings(self, readings: Sequence[Reading]) -> int:
        if not readings:
            return 0
        topo = await self._uow.topology()
        # (a set of every DER per call was most of a VEN report's cost at 10,000 DERs)
        unknown = {r.resource_id for r in readings if r.resource_id not in topo.resources}
        if unknown:
            raise NotFound(f"no resource {sorted(unknown)[0]!r}")
        return await self.readings_batches.submit(readings)

    async def _store_readings(self, batches: list[Sequence[Reading]]) -> list[int]:
        readings = [r for batch in batches for r in batch]
        async with self._uow.db.write() as session:
            ids = await repo.add_readings(session, readings)
            await repo.add_outbox_many(session, [
                (Topic.READING, to_json(replace(r, id=rid)))
                for rid, r in zip(ids, readings, strict=True)])
        self._uow.committed()
        return [len(batch) for batch in batches]

    async def readings(self, *, resource_id: str | None = None,
                       resource_ids: Iterable[str] | None = None,
                       quantity: Quantity | None = None, since: datetime | None = None,
                       since_id: int = 0, limit: int = 100) -> list[Reading]:
        ids = [resource_id] if resource_id else resource_ids
        async with self._uow.db.read() as session:
            return await repo.readings(session, resource_ids=ids, quantity=quantity, since=since,
                                       since_id=since_id, limit=limit)

    # -- delivery state ----------------------------------------------------------------------

    async def mark_delivery(self, marks: Sequence[DeliveryMark]) -> None:
        """What adapters know of getting DERs' controls to them (gateway.delivery_state);
        a first contact marks a DER online."""
        first = await self._delivery.mark(marks)
        if first:
            await self._set_online(dict.fromkeys(first, True))

    def forget(self, resource_id: str) -> None:
        self._delivery.forget(resource_id)

    @property
    def delivery(self) -> DeliveryStates:
        return self._delivery

    async def delivery_states(self, resource_ids: Iterable[str] | None = None
                              ) -> dict[str, ResourceDelivery]:
        async with self._uow.db.read() as session:
            return await repo.resource_deliveries(session, resource_ids)
