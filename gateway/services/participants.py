"""Participants and their credentials: registration, correction, removal, bearer tokens.

The admin registers, corrects and removes participants. A correction that changes how
controls are coordinated (an LDC's DSO model or host) recomputes the LDC trees it touches,
in the same transaction. Host relations stay acyclic. A participant still referenced (an LDC
with connection points, embedded LDCs or SCADA clients; an aggregator with DERs; an issuer of
live instructions) cannot be removed: the answer says what to remove first.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from hashlib import sha256

from sqlalchemy.exc import IntegrityError

from gateway import authz
from gateway.coordination.topology import Topology
from gateway.domain import Participant, ParticipantChange, Role, utcnow
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from gateway.events import Topic
from gateway.services.unit import UnitOfWork
from gateway.store import repo

TOKEN_PREFIX = "dgw_"  # noqa: S105 - a prefix, not a secret
MAX_TOKEN_TTL = timedelta(days=366)


class Participants:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def participant(self, participant_id: str) -> Participant | None:
        return (await self._uow.topology()).participants.get(participant_id)

    async def participants(self, role: Role | None = None) -> list[Participant]:
        parts = (await self._uow.topology()).participants.values()
        return sorted((p for p in parts if role is None or p.role is role), key=lambda p: p.id)

    async def visible_participants(self, viewer: Participant, role: Role | None = None
                                   ) -> list[Participant]:
        """Those `viewer` may know of (authz.sees_participant); certificate fingerprints
        only to the admin and of the viewer itself."""
        topo = await self._uow.topology()
        return [p if viewer.role is Role.ADMIN or p.id == viewer.id
                else replace(p, cert_sha256=None)
                for p in await self.participants(role)
                if authz.sees_participant(viewer, p.id, topo)]

    async def participant_by_cert(self, sha256_hex: str) -> Participant | None:
        async with self._uow.db.read() as session:
            return await repo.participant_by_cert(session, sha256_hex)

    async def register(self, actor: Participant, participants: Sequence[Participant]
                       ) -> list[Participant]:
        _require_admin(actor)
        topo = await self._uow.topology()
        batch = {p.id: p for p in participants}
        if len(batch) != len(participants):
            raise InvalidInput("duplicate participant id in the request")
        merged = {**topo.participants, **batch}
        for p in participants:
            if p.id in topo.participants:
                raise Conflict(f"a participant {p.id!r} exists (correct it with PUT)")
            _check_participant(p, merged)
        _check_hosts_acyclic(merged)
        await self._add(participants)
        return list(participants)

    async def ensure(self, participant: Participant) -> bool:
        """Register `participant` unless one of its id exists: the start-up bootstrap of the
        admin, which no one could register. True if it was added."""
        if await self.participant(participant.id) is not None:
            return False
        try:
            await self._add([participant])
        except Conflict:
            # Another process (a worker starting beside this one) added it meanwhile.
            self._uow.invalidate()
            if await self.participant(participant.id) is not None:
                return False
            raise
        return True

    async def _add(self, participants: Sequence[Participant]) -> None:
        """Store participants and announce each, in one transaction."""
        try:
            async with self._uow.write(topology=True) as session:
                await repo.add_participants(session, participants)
                await repo.add_outbox_many(session, [
                    participant_event(p.id, ParticipantChange.REGISTERED) for p in participants])
        except IntegrityError as exc:
            raise Conflict("a participant with that id or certificate already exists") from exc
        finally:
            self._uow.invalidate()
        self._uow.committed()

    async def update(self, actor: Participant, updated: Participant) -> Participant:
        """Correct a participant (name, certificate, DSO model, host LDC, SCADA's LDC); its
        role stays (remove and register it again to change that)."""
        _require_admin(actor)
        topo = await self._uow.topology()
        current = topo.participants.get(updated.id)
        if current is None:
            raise NotFound(f"no participant {updated.id!r}")
        if updated.role is not current.role:
            raise InvalidInput("a participant's role cannot change: remove it and register "
                               "it again")
        merged = {**topo.participants, updated.id: updated}
        _check_participant(updated, merged)
        _check_hosts_acyclic(merged)
        recompute = (current.dso_model, current.host_ldc_id) != (updated.dso_model,
                                                                  updated.host_ldc_id)
        try:
            async with self._uow.write(topology=True) as session:
                await repo.update_participant(session, updated)
                await repo.add_outbox_many(session, [
                    participant_event(updated.id, ParticipantChange.UPDATED)])
                self._uow.invalidate()
                if recompute:
                    trees = {updated.id, *topo.hosts_of(updated.id)}
                    if current.host_ldc_id:
                        trees.add(current.host_ldc_id)
                    await self._uow.recompute(session, trees)
        except IntegrityError as exc:
            raise Conflict("another participant has that certificate") from exc
        finally:
            self._uow.invalidate()
        self._uow.committed()
        return updated

    async def delete(self, actor: Participant, participant_id: str) -> None:
        _require_admin(actor)
        if participant_id == actor.id:
            raise Forbidden("the admin cannot remove itself")
        topo = await self._uow.topology()
        subject = topo.participants.get(participant_id)
        if subject is None:
            raise NotFound(f"no participant {participant_id!r}")
        blockers = _references(subject, topo.participants, topo)
        async with self._uow.db.read() as session:
            issued = await repo.instructions(session, live_at=utcnow(), issuer_id=participant_id)
        if issued:
            blockers.append(f"{len(issued)} live instruction(s) it issued (cancel them)")
        if blockers:
            raise Conflict(f"participant {participant_id!r} is still referenced: "
                           + "; ".join(blockers))
        try:
            async with self._uow.write(topology=True) as session:
                await repo.delete_participant(session, participant_id)
                await repo.add_outbox_many(session, [
                    participant_event(participant_id, ParticipantChange.DELETED)])
        finally:
            self._uow.invalidate()
        self._uow.committed()

    # -- bearer tokens -----------------------------------------------------------------------

    async def issue_token(self, actor: Participant, participant_id: str,
                          ttl: timedelta = timedelta(days=90)) -> tuple[str, datetime]:
        """A bearer token shown once; only its hash is stored. Lifetimes are positive and at
        most MAX_TOKEN_TTL: a token that never expires is a credential no one reviews."""
        _require_admin(actor)
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise InvalidInput(f"a token lives between 1 second and {MAX_TOKEN_TTL.days} days")
        if await self.participant(participant_id) is None:
            raise NotFound(f"no participant {participant_id!r}")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + ttl
        async with self._uow.write() as session:
            await repo.add_token(session, token_id=token_id, participant_id=participant_id,
                                 created_at=now, expires_at=expires,
                                 secret_hash=sha256(secret.encode()).hexdigest())
            await repo.add_outbox_many(session, [
                participant_event(participant_id, ParticipantChange.TOKEN_ISSUED)])
        self._uow.committed()
        return f"{TOKEN_PREFIX}{token_id}.{secret}", expires

    async def revoke_token(self, actor: Participant, token_id: str) -> None:
        _require_admin(actor)
        async with self._uow.write() as session:
            exists, participant_id = await repo.revoke_token(session, token_id, utcnow())
            if not exists:
                raise NotFound("no such token")
            if participant_id is None:
                return  # revoked before: keep that time, announce nothing new
            await repo.add_outbox_many(session, [
                participant_event(participant_id, ParticipantChange.TOKEN_REVOKED)])
        self._uow.committed()

    async def authenticate_token(self, token: str) -> Participant:
        token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition(".")
        async with self._uow.db.read() as session:
            row = await repo.token(session, token_id)
        if (row is None or row.revoked_at is not None
                or (row.expires_at is not None and row.expires_at <= utcnow())
                or not secrets.compare_digest(row.secret_hash,
                                              sha256(secret.encode()).hexdigest())):
            raise Unauthenticated("invalid, expired or revoked token")
        found = await self.participant(row.participant_id)
        if found is None:
            raise Unauthenticated("token of a removed participant")
        return found


def participant_event(participant_id: str, change: ParticipantChange
                      ) -> tuple[str, dict[str, str]]:
    """A participant's outbox row: who and what happened, never a credential (no token, no
    certificate fingerprint)."""
    return Topic.PARTICIPANT_CHANGED, {"participant_id": participant_id, "change": change}


def _require_admin(actor: Participant) -> None:
    if actor.role is not Role.ADMIN:
        raise Forbidden("requires role admin")


def _check_participant(p: Participant, known: Mapping[str, Participant]) -> None:
    def ldc_exists(ldc_id: str) -> bool:
        other = known.get(ldc_id)
        return other is not None and other.role is Role.LDC

    if p.role is Role.LDC and p.dso_model is None:
        raise InvalidInput(f"LDC {p.id} needs a dso_model")
    if p.role is not Role.LDC and (p.dso_model or p.host_ldc_id):
        raise InvalidInput(f"{p.id}: only an LDC has a DSO model or a host LDC")
    if p.host_ldc_id and (p.host_ldc_id == p.id or not ldc_exists(p.host_ldc_id)):
        raise InvalidInput(f"{p.id}: host LDC {p.host_ldc_id!r} is not a registered LDC")
    if p.role is Role.SCADA and not (p.ldc_id and ldc_exists(p.ldc_id)):
        raise InvalidInput(f"SCADA client {p.id} needs the id of its LDC (ldc_id)")
    if p.role is not Role.SCADA and p.ldc_id:
        raise InvalidInput(f"{p.id}: only a SCADA client acts for an LDC (ldc_id)")


def _check_hosts_acyclic(participants: Mapping[str, Participant]) -> None:
    """No LDC may host itself through a chain of embedded LDCs."""
    for start in participants.values():
        seen = {start.id}
        current = start
        while current.host_ldc_id:
            if current.host_ldc_id in seen:
                raise InvalidInput(f"host LDCs would form a cycle through {start.id!r}: "
                                   "an LDC cannot be embedded below itself")
            seen.add(current.host_ldc_id)
            nxt = participants.get(current.host_ldc_id)
            if nxt is None:
                break
            current = nxt


def _references(subject: Participant, participants: Mapping[str, Participant],
                topo: Topology) -> list[str]:
    found: list[str] = []
    if subject.role is Role.LDC:
        cps = [c.id for c in topo.connection_points.values() if c.ldc_id == subject.id]
        if cps:
            found.append(f"{len(cps)} connection point(s)")
        embedded = [p.id for p in participants.values() if p.host_ldc_id == subject.id]
        if embedded:
            found.append(f"embedded LDC(s) {', '.join(sorted(embedded))}")
        scada = [p.id for p in participants.values() if p.ldc_id == subject.id]
        if scada:
            found.append(f"SCADA client(s) {', '.join(sorted(scada))}")
    if subject.role is Role.AGGREGATOR:
        ders = [r.id for r in topo.resources.values() if r.aggregator_id == subject.id]
        if ders:
            found.append(f"{len(ders)} DER(s)")
    return found
