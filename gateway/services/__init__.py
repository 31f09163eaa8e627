"""Domain services: the one place where the platform API and every adapter change the truth.

Split by job over one shared unit of work (`unit.UnitOfWork`: the store, the caches, the
recompute): participants and credentials, the registry of connection points and DERs,
instructions, controls and notices, feedback (acknowledgements, readings, delivery state).
`GatewayServices` is the one object the platform API and the adapters' port
(`gateway.ports.GatewayPort`) talk to; it only routes each call to its job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.bindings import BindingRules
from gateway.coordination.engine import Coordinator
from gateway.coordination.topology import Topology
from gateway.domain import (
    Acknowledgement,
    ConnectionPoint,
    DeliveryMark,
    EffectiveControl,
    Instruction,
    InstructionDraft,
    LimitationNotice,
    Participant,
    Quantity,
    Reading,
    Resource,
    ResourceDelivery,
    Role,
)
from gateway.errors import NotFound
from gateway.services.controls import Controls, notice_visible
from gateway.services.feedback import Feedback
from gateway.services.instructions import Instructions
from gateway.services.participants import TOKEN_PREFIX, Participants
from gateway.services.registry import Registry
from gateway.services.unit import UnitOfWork
from gateway.store import repo
from gateway.store.engine import Database
from gateway.validation import WindowPolicy

__all__ = ["TOKEN_PREFIX", "GatewayServices", "notice_visible"]


class GatewayServices:
    def __init__(self, db: Database, coordinator: Coordinator | None = None,
                 on_commit: Callable[[], None] | None = None,
                 bindings: BindingRules | None = None,
                 windows: WindowPolicy | None = None) -> None:
        self.uow = UnitOfWork(db, coordinator, on_commit, bindings)
        self.db = db
        self.participants_ = Participants(self.uow)
        self.registry = Registry(self.uow)
        self.instructions_ = Instructions(self.uow, windows)
        self.controls = Controls(self.uow)
        self.feedback = Feedback(self.uow, self.registry.set_online_many)

    async def topology(self) -> Topology:
        return await self.uow.topology()

    async def counts(self) -> dict[str, int]:
        """Rows the status shows: acknowledgements, readings, outbox rows not yet published."""
        async with self.db.read() as session:
            return await repo.counts(session)

    # -- participants and credentials --------------------------------------------------------

    async def participant(self, participant_id: str) -> Participant | None:
        return await self.participants_.participant(participant_id)

    async def participants(self, role: Role | None = None) -> list[Participant]:
        return await self.participants_.participants(role)

    async def visible_participants(self, viewer: Participant, role: Role | None = None
                                   ) -> list[Participant]:
        return await self.participants_.visible_participants(viewer, role)

    async def participant_by_cert(self, sha256_hex: str) -> Participant | None:
        return await self.participants_.participant_by_cert(sha256_hex)

    async def register_participants(self, actor: Participant,
                                    participants: Sequence[Participant]) -> list[Participant]:
        return await self.participants_.register(actor, participants)

    async def ensure_participant(self, participant: Participant) -> bool:
        return await self.participants_.ensure(participant)

    async def update_participant(self, actor: Participant, participant: Participant
                                 ) -> Participant:
        return await self.participants_.update(actor, participant)

    async def delete_participant(self, actor: Participant, participant_id: str) -> None:
        await self.participants_.delete(actor, participant_id)

    async def issue_token(self, actor: Participant, participant_id: str,
                          ttl: timedelta = timedelta(days=90)) -> tuple[str, datetime]:
        return await self.participants_.issue_token(actor, participant_id, ttl)

    async def revoke_token(self, actor: Participant, token_id: str) -> None:
        await self.participants_.revoke_token(actor, token_id)

    async def authenticate_token(self, token: str) -> Participant:
        return await self.participants_.authenticate_token(token)

    # -- connection points and DERs ----------------------------------------------------------

    async def connection_point(self, cp_id: str) -> ConnectionPoint | None:
        return await self.registry.connection_point(cp_id)

    async def connection_points(self, actor: Participant) -> list[ConnectionPoint]:
        return await self.registry.connection_points(actor)

    async def register_connection_points(self, actor: Participant,
                                         cps: Sequence[ConnectionPoint]) -> list[ConnectionPoint]:
        return await self.registry.register_connection_points(actor, cps)

    async def resource(self, resource_id: str) -> Resource | None:
        return await self.registry.resource(resource_id)

    async def resources(self, *, protocol: str | None = None, aggregator_id: str | None = None,
                        ids: Iterable[str] | None = None) -> list[Resource]:
        return await self.registry.resources(protocol=protocol, aggregator_id=aggregator_id,
                                             ids=ids)

    async def visible_resources(self, actor: Participant) -> list[Resource]:
        return await self.registry.visible_resources(actor)

    async def find_resources(self, protocol: str, **address: Any) -> list[Resource]:
        return await self.registry.find_resources(protocol, **address)

    async def register_resources(self, actor: Participant, resources: Sequence[Resource]
                                 ) -> list[Resource]:
        return await self.registry.register_resources(actor, resources)

    async def update_resource(self, actor: Participant, resource: Resource) -> Resource:
        return await self.registry.update_resource(actor, resource)

    async def delete_resource(self, actor: Participant, resource_id: str) -> None:
        await self.registry.delete_resource(actor, resource_id)
        self.feedback.forget(resource_id)

    async def update_binding_settings(self, resource_id: str, settings: dict[str, Any]
                                      ) -> Resource:
        return await self.registry.update_binding_settings(resource_id, settings)

    async def set_online(self, resource_id: str, online: bool) -> None:
        if await self.resource(resource_id) is None:
            raise NotFound(f"no resource {resource_id!r}")
        await self.registry.set_online_many({resource_id: online})

    async def set_online_many(self, marks: dict[str, bool]) -> dict[str, bool]:
        return await self.registry.set_online_many(marks)

    # -- instructions ------------------------------------------------------------------------

    async def submit_instruction(self, actor: Participant, draft: InstructionDraft,
                                 idempotency_key: str | None = None, request: Any = None,
                                 ) -> tuple[Instruction, bool]:
        return await self.instructions_.submit(actor, draft, idempotency_key, request)

    async def cancel_instruction(self, actor: Participant, instruction_id: str) -> Instruction:
        return await self.instructions_.cancel(actor, instruction_id)

    async def instruction(self, instruction_id: str) -> Instruction | None:
        return await self.instructions_.instruction(instruction_id)

    async def instructions(self, *, live_only: bool = True, issuer_id: str | None = None,
                           limit: int | None = None, offset: int = 0) -> list[Instruction]:
        return await self.instructions_.instructions(live_only=live_only, issuer_id=issuer_id,
                                                     limit=limit, offset=offset)

    # -- controls and notices ----------------------------------------------------------------

    async def effective_control(self, resource_id: str) -> EffectiveControl | None:
        return await self.controls.effective_control(resource_id)

    async def effective_controls(self, resource_ids: Iterable[str] | None = None
                                 ) -> dict[str, EffectiveControl]:
        return await self.controls.effective_controls(resource_ids)

    async def effective_control_documents(self, resource_ids: Iterable[str] | None = None
                                          ) -> list[dict[str, Any]]:
        return await self.controls.effective_control_documents(resource_ids)

    async def notices(self, actor: Participant, *, since_id: int = 0, limit: int = 100
                      ) -> list[tuple[int, LimitationNotice]]:
        return await self.controls.notices(actor, since_id=since_id, limit=limit)

    # -- feedback ----------------------------------------------------------------------------

    async def record_acknowledgement(self, ack: Acknowledgement) -> Acknowledgement:
        return await self.feedback.record_acknowledgement(ack)

    async def record_readings(self, readings: Sequence[Reading]) -> int:
        return await self.feedback.record_readings(readings)

    async def acknowledgements(self, *, resource_id: str | None = None,
                               resource_ids: Iterable[str] | None = None,
                               instruction_id: str | None = None, since_id: int = 0,
                               limit: int = 100) -> list[Acknowledgement]:
        return await self.feedback.acknowledgements(
            resource_id=resource_id, resource_ids=resource_ids, instruction_id=instruction_id,
            since_id=since_id, limit=limit)

    async def latest_acknowledgements(self, resource_ids: Iterable[str] | None = None
                                      ) -> dict[str, Acknowledgement]:
        return await self.feedback.latest_acknowledgements(resource_ids)

    async def readings(self, *, resource_id: str | None = None,
                       resource_ids: Iterable[str] | None = None,
                       quantity: Quantity | None = None, since: datetime | None = None,
                       since_id: int = 0, limit: int = 100) -> list[Reading]:
        return await self.feedback.readings(
            resource_id=resource_id, resource_ids=resource_ids, quantity=quantity, since=since,
            since_id=since_id, limit=limit)

    async def mark_delivery(self, marks: Sequence[DeliveryMark]) -> None:
        await self.feedback.mark_delivery(marks)

    async def delivery_states(self, resource_ids: Iterable[str] | None = None
                              ) -> dict[str, ResourceDelivery]:
        """Each DER's latest delivery state; every DER's with no ids."""
        return await self.feedback.delivery_states(resource_ids)

    async def resource_delivery(self, resource_id: str) -> ResourceDelivery | None:
        return (await self.delivery_states([resource_id])).get(resource_id)
