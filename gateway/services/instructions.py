"""Instructions: submitted, coordinated and announced in one transaction; cancelled by
their issuer. Idempotent with an Idempotency-Key."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from gateway import authz
from gateway.domain import Instruction, InstructionDraft, Participant, utcnow
from gateway.errors import Conflict, Forbidden, NotFound
from gateway.events import Topic
from gateway.jsonform import to_json
from gateway.services.unit import UnitOfWork
from gateway.store import repo
from gateway.validation import WindowPolicy, validate_instruction

log = logging.getLogger(__name__)


def instruction_event(ins: Instruction, status: str) -> tuple[str, dict[str, Any]]:
    """What `instruction.changed` carries: enough to decide who may see it (issuer and
    target) without reading the store."""
    return Topic.INSTRUCTION_CHANGED, {
        "instruction_id": ins.id, "status": status, "issuer_id": ins.issuer_id,
        "kind": ins.kind.value, "target": {"kind": ins.target.kind.value, "id": ins.target.id}}


class Instructions:
    def __init__(self, uow: UnitOfWork, windows: WindowPolicy | None = None) -> None:
        self._uow = uow
        self._windows = windows or WindowPolicy()

    async def submit(self, actor: Participant, draft: InstructionDraft,
                     idempotency_key: str | None = None, request: Any = None,
                     ) -> tuple[Instruction, bool]:
        """Store, coordinate and announce an instruction. Returns (instruction, created)."""
        topo = await self._uow.topology()
        issuer = authz.acting_as(actor, topo)
        req_hash = repo.request_hash(request if request is not None else to_json(draft))
        if idempotency_key:
            async with self._uow.db.read() as session:
                found = await repo.instruction_by_idempotency(session, issuer.id, idempotency_key)
            if found is not None:
                if found[1] != req_hash:
                    raise Conflict("this Idempotency-Key was used for a different request")
                return found[0], False
        authz.check_instruction(issuer, draft, topo)
        now = utcnow()
        validate_instruction(draft, topo, now=now, policy=self._windows)
        try:
            async with self._uow.write() as session:
                ins = Instruction(
                    id=str(uuid.uuid4()), kind=draft.kind, issuer_id=issuer.id,
                    target=draft.target, start=draft.start, end=draft.end, created_at=now,
                    seq=await repo.next_instruction_seq(session), reason=draft.reason,
                    schedule=draft.schedule, limits=draft.limits, connect=draft.connect,
                    energize=draft.energize, settings=dict(draft.settings),
                    idempotency_key=idempotency_key)
                await repo.add_instruction(session, ins, req_hash)
                await repo.add_outbox_many(session, [instruction_event(ins, "active")])
                await self._uow.recompute(session, topo.target_ldcs(ins.target), now)
        except IntegrityError as exc:  # a concurrent retry with the same key won the race
            raise Conflict("this Idempotency-Key is being used by a concurrent request") from exc
        self._uow.committed()
        log.info("instruction %s (%s) by %s on %s %s accepted", ins.id, ins.kind.value,
                 issuer.id, ins.target.kind.value, ins.target.id)
        return ins, True

    async def cancel(self, actor: Participant, instruction_id: str) -> Instruction:
        topo = await self._uow.topology()
        issuer = authz.acting_as(actor, topo)
        now = utcnow()
        async with self._uow.write() as session:
            ins = await repo.instruction(session, instruction_id)
            if ins is None:
                raise NotFound(f"no instruction {instruction_id!r}")
            if ins.issuer_id != issuer.id:
                raise Forbidden("only the issuer may cancel an instruction")
            if ins.cancelled_at is not None:
                return ins
            await repo.cancel_instruction(session, instruction_id, now)
            await repo.add_outbox_many(session, [instruction_event(ins, "cancelled")])
            await self._uow.recompute(session, topo.target_ldcs(ins.target), now)
        self._uow.committed()
        return replace(ins, cancelled_at=now)

    async def instruction(self, instruction_id: str) -> Instruction | None:
        async with self._uow.db.read() as session:
            return await repo.instruction(session, instruction_id)

    async def instructions(self, *, live_only: bool = True, issuer_id: str | None = None,
                           limit: int | None = None, offset: int = 0) -> list[Instruction]:
        async with self._uow.db.read() as session:
            return await repo.instructions(session, live_at=utcnow() if live_only else None,
                                           issuer_id=issuer_id, limit=limit, offset=offset)
