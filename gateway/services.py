"""Domain services: the one place where the platform API and every adapter change the truth.

Each write is one transaction: validate, store, recompute the effective controls it affects,
store the notices the outcome calls for, and write the outbox rows that announce it. Only
after the commit does anyone hear "accepted"; only the outbox relay publishes.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from hashlib import sha256
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import authz
from gateway.batching import Coalescer
from gateway.bindings import BindingRules
from gateway.bus import Topic
from gateway.coordination.engine import Coordinator
from gateway.coordination.topology import Topology
from gateway.delivery_state import DeliveryStates
from gateway.domain import (
    REFUSALS,
    Acknowledgement,
    ConnectionPoint,
    DeliveryMark,
    EffectiveControl,
    Instruction,
    InstructionDraft,
    InstructionKind,
    LimitationNotice,
    Participant,
    ParticipantChange,
    Quantity,
    Reading,
    Resource,
    ResourceDelivery,
    Role,
    TargetKind,
    utcnow,
)
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from gateway.jsonform import to_json
from gateway.store import repo
from gateway.store.engine import Database
from gateway.store.tables import ApiTokenRow
from gateway.validation import validate_instruction

log = logging.getLogger(__name__)
TOKEN_PREFIX = "dgw_"  # noqa: S105 - a prefix, not a secret


class GatewayServices:
    def __init__(self, db: Database, coordinator: Coordinator | None = None,
                 on_commit: Any = None, bindings: BindingRules | None = None) -> None:
        self.db = db
        self.bindings = bindings or BindingRules.installed()
        self.coordinator = coordinator or Coordinator()
        self._topology: Topology | None = None
        self._topology_generation = 0  # bumped by every invalidation
        self._versions: dict[str, str] | None = None
        self._on_commit = on_commit or (lambda: None)  # wakes the outbox relay
        self._pending_versions: dict[str, str] = {}
        self._acks: Coalescer[Acknowledgement, Acknowledgement] = Coalescer(
            self._store_acknowledgements)
        self._readings: Coalescer[Sequence[Reading], int] = Coalescer(self._store_readings)
        self._delivery = DeliveryStates(db, self.topology, self._wake)

    def _wake(self) -> None:
        self._on_commit()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction that keeps the version cache true to what was committed."""
        try:
            async with self.db.write() as session:
                self._pending_versions = {}
                yield session
        except BaseException:
            self._versions = None  # unknown: reload from the store next time
            raise
        finally:
            pending, self._pending_versions = self._pending_versions, {}
        if self._versions is not None:
            self._versions.update(pending)

    # -- topology cache --------------------------------------------------------------------

    async def topology(self, session: AsyncSession | None = None) -> Topology:
        cached = self._topology
        if cached is not None:
            return cached
        if session is None:
            async with self.db.read() as s:
                return await self.topology(s)
        generation = self._topology_generation
        parts = {p.id: p for p in await repo.participants(session)}
        cps = {c.id: c for c in await repo.connection_points(session)}
        res = {r.id: r for r in await repo.resources(session)}
        loaded = Topology(parts, cps, res)
        # A write that committed (and invalidated) while this was read may be missing from
        # it: keep it only if nothing was invalidated meanwhile, or a stale topology would
        # outlive the write (a new LDC "not found" right after it was registered).
        if generation == self._topology_generation:
            self._topology = loaded
        return loaded

    def _invalidate(self) -> None:
        self._topology = None
        self._topology_generation += 1

    # -- participants and credentials ------------------------------------------------------

    async def participant(self, participant_id: str) -> Participant | None:
        return (await self.topology()).participants.get(participant_id)

    async def participants(self, role: Role | None = None) -> list[Participant]:
        parts = (await self.topology()).participants.values()
        return sorted((p for p in parts if role is None or p.role is role), key=lambda p: p.id)

    async def participant_by_cert(self, sha256_hex: str) -> Participant | None:
        async with self.db.read() as session:
            return await repo.participant_by_cert(session, sha256_hex)

    async def register_participants(
        self, actor: Participant, participants: Sequence[Participant]
    ) -> list[Participant]:
        _require(actor, Role.ADMIN)
        topo = await self.topology()
        batch = {p.id: p for p in participants}
        if len(batch) != len(participants):
            raise InvalidInput("duplicate participant id in the request")
        for p in participants:
            _check_participant(p, topo.participants, batch)
        await self._add_participants(participants)
        return list(participants)

    async def ensure_participant(self, participant: Participant) -> bool:
        """Register `participant` unless one of its id exists: the start-up bootstrap of the
        admin, which no one could register. True if it was added."""
        if await self.participant(participant.id) is not None:
            return False
        await self._add_participants([participant])
        return True

    async def _add_participants(self, participants: Sequence[Participant]) -> None:
        """Store participants and announce each, in one transaction."""
        try:
            async with self.db.write() as session:
                await repo.add_participants(session, participants)
                await repo.add_outbox_many(session, [
                    _participant_event(p.id, ParticipantChange.REGISTERED)
                    for p in participants])
        except IntegrityError as exc:
            raise Conflict("a participant with that id or certificate already exists") from exc
        finally:
            self._invalidate()
        self._on_commit()

    async def issue_token(self, actor: Participant, participant_id: str,
                          ttl: timedelta | None = timedelta(days=90),
                          ) -> tuple[str, datetime | None]:
        """A bearer token shown once; only its hash is stored."""
        _require(actor, Role.ADMIN)
        if await self.participant(participant_id) is None:
            raise NotFound(f"no participant {participant_id!r}")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + ttl if ttl else None
        async with self.db.write() as session:
            await repo.add_token(session, ApiTokenRow(
                id=token_id, participant_id=participant_id, created_at=now, expires_at=expires,
                secret_hash=sha256(secret.encode()).hexdigest()))
            await repo.add_outbox_many(session, [
                _participant_event(participant_id, ParticipantChange.TOKEN_ISSUED)])
        self._on_commit()
        return f"{TOKEN_PREFIX}{token_id}.{secret}", expires

    async def revoke_token(self, actor: Participant, token_id: str) -> None:
        _require(actor, Role.ADMIN)
        async with self.db.write() as session:
            row = await repo.token(session, token_id)
            if row is None:
                raise NotFound("no such token")
            if row.revoked_at is not None:
                return  # revoked before: keep that time, announce nothing new
            row.revoked_at = utcnow()
            await repo.add_outbox_many(session, [
                _participant_event(row.participant_id, ParticipantChange.TOKEN_REVOKED)])
        self._on_commit()

    async def authenticate_token(self, token: str) -> Participant:
        token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition(".")
        async with self.db.read() as session:
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

    # -- topology registration -------------------------------------------------------------

    async def connection_point(self, cp_id: str) -> ConnectionPoint | None:
        return (await self.topology()).connection_points.get(cp_id)

    async def connection_points(self, actor: Participant) -> list[ConnectionPoint]:
        topo = await self.topology()
        cps = sorted(topo.connection_points.values(), key=lambda c: c.id)
        if actor.role in {Role.ADMIN, Role.ISO}:
            return cps
        if actor.role is Role.LDC:
            area = set(topo.area_ldcs(actor.id))
            return [c for c in cps if c.ldc_id in area]
        visible = {topo.resources[r].connection_point_id for r in authz.area_of(actor, topo) or ()}
        return [c for c in cps if c.id in visible]

    async def register_connection_points(
        self, actor: Participant, cps: Sequence[ConnectionPoint]
    ) -> list[ConnectionPoint]:
        topo = await self.topology()
        for cp in cps:
            ldc = topo.participants.get(cp.ldc_id)
            if ldc is None or ldc.role is not Role.LDC:
                raise InvalidInput(f"connection point {cp.id}: no LDC {cp.ldc_id!r}")
            _require_area(actor, topo, cp.ldc_id)
        try:
            async with self.db.write() as session:
                await repo.add_connection_points(session, cps)
        except IntegrityError as exc:
            raise Conflict("a connection point with that id already exists") from exc
        finally:
            self._invalidate()
        return list(cps)

    async def resource(self, resource_id: str) -> Resource | None:
        return (await self.topology()).resources.get(resource_id)

    async def resources(self, *, protocol: str | None = None,
                        aggregator_id: str | None = None,
                        ids: Iterable[str] | None = None) -> list[Resource]:
        topo = await self.topology()
        # Look up the ids asked for, filter, then sort only what matched (adapters ask for a
        # few DERs, or one protocol's, out of tens of thousands).
        pool = topo.resources.values() if ids is None else \
            [r for rid in set(ids) if (r := topo.resources.get(rid)) is not None]
        return sorted((r for r in pool
                       if (protocol is None or r.binding.protocol == protocol)
                       and (aggregator_id is None or r.aggregator_id == aggregator_id)),
                      key=_by_id)

    async def visible_resources(self, actor: Participant) -> list[Resource]:
        topo = await self.topology()
        area = authz.area_of(actor, topo)
        return [r for rid, r in sorted(topo.resources.items()) if area is None or rid in area]

    async def find_resources(self, protocol: str, **address: Any) -> list[Resource]:
        def matches(value: Any, wanted: Any) -> bool:
            if isinstance(value, str) and isinstance(wanted, str):
                return value.casefold() == wanted.casefold()
            return value == wanted

        return [r for r in await self.resources(protocol=protocol)
                if all(matches(r.binding.address.get(k), v) for k, v in address.items())]

    async def register_resources(
        self, actor: Participant, resources: Sequence[Resource]
    ) -> list[Resource]:
        topo = await self.topology()
        if len({r.id for r in resources}) != len(resources):
            raise InvalidInput("duplicate resource id in the request")
        keys: dict[str, str] = {}
        for r in resources:
            cp = topo.connection_points.get(r.connection_point_id)
            if cp is None:
                raise InvalidInput(
                    f"resource {r.id}: no connection point {r.connection_point_id!r}")
            if r.aggregator_id is not None:
                agg = topo.participants.get(r.aggregator_id)
                if agg is None or agg.role is not Role.AGGREGATOR:
                    raise InvalidInput(f"resource {r.id}: no aggregator {r.aggregator_id!r}")
            keys[r.id] = self.bindings.key(r.binding)
            if actor.role is Role.AGGREGATOR:
                if r.aggregator_id != actor.id:
                    raise Forbidden("an aggregator registers only its own resources")
            else:
                _require_area(actor, topo, cp.ldc_id)
        ldcs = {topo.connection_points[r.connection_point_id].ldc_id for r in resources}
        try:
            async with self._write() as session:
                await repo.add_resources(session, resources, keys)
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED, {"resource_id": r.id, "protocol": r.binding.protocol})
                    for r in resources])
                self._invalidate()
                await self._recompute(session, ldcs)
        except IntegrityError as exc:
            raise Conflict("a resource with that id or protocol address already exists") from exc
        finally:
            self._invalidate()
        self._on_commit()
        return list(resources)

    async def update_resource(self, actor: Participant, resource: Resource) -> Resource:
        """Replace a DER's registration (ratings, kind, binding, connection point)."""
        topo = await self.topology()
        current = topo.resources.get(resource.id)
        if current is None:
            raise NotFound(f"no resource {resource.id!r}")
        owners = {current.aggregator_id, resource.aggregator_id}
        if actor.role is Role.AGGREGATOR and owners != {actor.id}:
            raise Forbidden("an aggregator updates only its own resources")
        cp = topo.connection_points.get(resource.connection_point_id)
        if cp is None:
            raise InvalidInput(f"no connection point {resource.connection_point_id!r}")
        if actor.role is not Role.AGGREGATOR:
            _require_area(actor, topo, topo.connection_points[current.connection_point_id].ldc_id)
            _require_area(actor, topo, cp.ldc_id)
        key = self.bindings.key(resource.binding)
        ldcs = {cp.ldc_id, topo.connection_points[current.connection_point_id].ldc_id}
        try:
            async with self._write() as session:
                await repo.update_resource(session, replace(resource, online=current.online),
                                           key)
                await repo.add_outbox(session, Topic.RESOURCE_CHANGED,
                                      {"resource_id": resource.id,
                                       "protocol": resource.binding.protocol})
                self._invalidate()
                await self._recompute(session, ldcs)
        except IntegrityError as exc:
            raise Conflict("another resource has that protocol address") from exc
        finally:
            self._invalidate()
        self._on_commit()
        return replace(resource, online=current.online)

    async def delete_resource(self, actor: Participant, resource_id: str) -> None:
        topo = await self.topology()
        current = topo.resources.get(resource_id)
        if current is None:
            raise NotFound(f"no resource {resource_id!r}")
        ldc = topo.connection_points[current.connection_point_id].ldc_id
        if actor.role is Role.AGGREGATOR:
            if current.aggregator_id != actor.id:
                raise Forbidden("an aggregator removes only its own resources")
        else:
            _require_area(actor, topo, ldc)
        try:
            async with self._write() as session:
                await repo.delete_resource(session, resource_id)
                protocol = current.binding.protocol
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED,
                     {"resource_id": resource_id, "protocol": protocol, "deleted": True}),
                    (Topic.EFFECTIVE_CONTROL_CHANGED,
                     {"resource_id": resource_id, "protocol": protocol})])
                self._invalidate()
                await self._recompute(session, {ldc})
        finally:
            self._invalidate()
        if self._versions is not None:
            self._versions.pop(resource_id, None)
        self._delivery.forget(resource_id)
        self._on_commit()

    async def update_binding_settings(self, resource_id: str, settings: dict[str, Any]) -> Resource:
        """Protocol settings kept with a binding (e.g. a 2030.5 pollRate): adapters only."""
        res = await self.resource(resource_id)
        if res is None:
            raise NotFound(f"no resource {resource_id!r}")
        binding = replace(res.binding, address={**res.binding.address, "settings": settings})
        async with self.db.write() as session:
            await repo.update_binding(session, resource_id, binding,
                                      self.bindings.key(binding))
            await repo.add_outbox(session, Topic.RESOURCE_CHANGED,
                                  {"resource_id": resource_id, "protocol": binding.protocol})
        self._invalidate()
        self._on_commit()
        return replace(res, binding=binding)

    async def set_online(self, resource_id: str, online: bool) -> None:
        topo = await self.topology()
        if resource_id not in topo.resources:
            raise NotFound(f"no resource {resource_id!r}")
        await self.set_online_many({resource_id: online})

    async def set_online_many(self, marks: dict[str, bool]) -> dict[str, bool]:
        """Record whether DERs are reachable, all in one transaction with one recompute of
        the LDC trees they sit in (one at a time, thousands of devices coming online each
        reloaded the topology and recomputed their whole area). Unknown ids are skipped;
        returns the flags that changed."""
        if not marks:
            return {}
        try:
            async with self._write() as session:
                changed = await repo.set_online(session, marks)
                if not changed:
                    return {}
                self._invalidate()
                await repo.add_outbox_many(session, [
                    (Topic.RESOURCE_CHANGED, {"resource_id": rid, "online": online})
                    for rid, online in changed.items()])
                topo = await self.topology(session)
                ldcs = {ldc.id for rid in changed if (ldc := topo.ldc_of(rid)) is not None}
                await self._recompute(session, ldcs)
        except BaseException:
            self._invalidate()  # the cached topology may hold flags that were rolled back
            raise
        self._on_commit()
        return changed

    # -- instructions ----------------------------------------------------------------------

    async def submit_instruction(
        self, actor: Participant, draft: InstructionDraft, idempotency_key: str | None = None,
        request: Any = None,
    ) -> tuple[Instruction, bool]:
        """Store, coordinate and announce an instruction. Returns (instruction, created)."""
        topo = await self.topology()
        issuer = authz.acting_as(actor, topo)
        req_hash = repo.request_hash(request if request is not None else to_json(draft))
        if idempotency_key:
            async with self.db.read() as session:
                found = await repo.instruction_by_idempotency(session, issuer.id, idempotency_key)
            if found is not None:
                if found[1] != req_hash:
                    raise Conflict("this Idempotency-Key was used for a different request")
                return found[0], False
        authz.check_instruction(issuer, draft, topo)
        validate_instruction(draft, topo)
        now = utcnow()
        try:
            async with self._write() as session:
                ins = Instruction(
                    id=str(uuid.uuid4()), kind=draft.kind, issuer_id=issuer.id,
                    target=draft.target, start=draft.start, end=draft.end, created_at=now,
                    seq=await repo.next_instruction_seq(session), reason=draft.reason,
                    schedule=draft.schedule, limits=draft.limits, connect=draft.connect,
                    energize=draft.energize, settings=dict(draft.settings),
                    idempotency_key=idempotency_key)
                await repo.add_instruction(session, ins, req_hash)
                await repo.add_outbox(session, Topic.INSTRUCTION_CHANGED,
                                      {"instruction_id": ins.id, "status": "active"})
                await self._recompute(session, topo.target_ldcs(ins.target), now)
        except IntegrityError as exc:  # a concurrent retry with the same key won the race
            raise Conflict("this Idempotency-Key is being used by a concurrent request") from exc
        self._on_commit()
        log.info("instruction %s (%s) by %s on %s %s accepted", ins.id, ins.kind.value,
                 issuer.id, ins.target.kind.value, ins.target.id)
        return ins, True

    async def cancel_instruction(self, actor: Participant, instruction_id: str) -> Instruction:
        topo = await self.topology()
        issuer = authz.acting_as(actor, topo)
        now = utcnow()
        async with self._write() as session:
            ins = await repo.instruction(session, instruction_id)
            if ins is None:
                raise NotFound(f"no instruction {instruction_id!r}")
            if ins.issuer_id != issuer.id:
                raise Forbidden("only the issuer may cancel an instruction")
            if ins.cancelled_at is not None:
                return ins
            await repo.cancel_instruction(session, instruction_id, now)
            await repo.add_outbox(session, Topic.INSTRUCTION_CHANGED,
                                  {"instruction_id": ins.id, "status": "cancelled"})
            await self._recompute(session, topo.target_ldcs(ins.target), now)
        self._on_commit()
        return replace(ins, cancelled_at=now)

    async def instruction(self, instruction_id: str) -> Instruction | None:
        async with self.db.read() as session:
            return await repo.instruction(session, instruction_id)

    async def instructions(self, *, live_only: bool = True, issuer_id: str | None = None,
                           limit: int | None = None, offset: int = 0) -> list[Instruction]:
        async with self.db.read() as session:
            return await repo.instructions(session, live_at=utcnow() if live_only else None,
                                           issuer_id=issuer_id, limit=limit, offset=offset)

    async def _recompute(self, session: AsyncSession, ldc_ids: Iterable[str],
                         now: datetime | None = None) -> list[str]:
        """Recompute the LDC trees touched; store what changed; announce it. Same transaction."""
        now = now or utcnow()
        topo = await self.topology(session)
        scope = topo.component(ldc_ids)
        if not scope:
            return []
        live = await repo.instructions(session, live_at=now)
        result = self.coordinator.coordinate(topo, live, now=now, scope=scope,
                                             refusals=await repo.refusals(session))
        if self._versions is None:
            self._versions = await repo.control_versions(session)
        changed = []
        memo: dict[tuple[int, int, int], tuple[str, dict[str, Any]]] = {}
        for control in result.controls.values():
            version, body = repo.control_version(control, memo)
            if self._versions.get(control.resource_id) != version:
                changed.append((control, version, body))
        await repo.put_controls(session, changed, now)
        events: list[tuple[str, dict[str, Any]]] = [
            (Topic.EFFECTIVE_CONTROL_CHANGED,
             {"resource_id": c.resource_id,
              "protocol": topo.resources[c.resource_id].binding.protocol})
            for c, _, _ in changed]
        for notice_id, notice in await repo.add_notices(session, result.notices, now):
            events.append((Topic.NOTICE, {"id": notice_id, **to_json(notice)}))
        await repo.add_outbox_many(session, events)
        # These versions become true only when the caller's transaction commits (_write).
        self._pending_versions.update({c.resource_id: v for c, v, _ in changed})
        return [c.resource_id for c, _, _ in changed]

    # -- effective controls and notices ----------------------------------------------------

    async def effective_control(self, resource_id: str) -> EffectiveControl | None:
        async with self.db.read() as session:
            return await repo.control(session, resource_id)

    async def effective_controls(
        self, resource_ids: Iterable[str] | None = None
    ) -> dict[str, EffectiveControl]:
        async with self.db.read() as session:
            return await repo.controls(session, resource_ids)

    async def notices(self, actor: Participant, *, since_id: int = 0,
                      limit: int = 100) -> list[tuple[int, LimitationNotice]]:
        """Notices the actor may see, in id order; pages past invisible ones until `limit`."""
        topo = await self.topology()
        found: list[tuple[int, LimitationNotice]] = []
        while len(found) < limit:
            async with self.db.read() as session:
                rows = await repo.notices(session, since_id=since_id, limit=500)
            if not rows:
                break
            found += [(i, n) for i, n in rows if notice_visible(actor, n, topo)]
            since_id = rows[-1][0]
        return found[:limit]

    # -- feedback --------------------------------------------------------------------------

    async def record_acknowledgement(self, ack: Acknowledgement) -> Acknowledgement:
        """Store and announce an acknowledgement, once: a repeat of one stored before (same
        DER, instruction, control and status) returns the stored one and announces nothing.
        Concurrent ones share a transaction (gateway.batching); a refusal of an aggregate
        dispatch, which recomputes, has its own."""
        topo = await self.topology()
        if ack.resource_id not in topo.resources:
            raise NotFound(f"no resource {ack.resource_id!r}")
        if not (ack.status in REFUSALS and ack.instruction_id):
            return await self._acks.submit(ack)
        async with self._write() as session:
            ((ack_id, new),) = await repo.add_acknowledgements(session, [ack])
            stored = replace(ack, id=ack_id)
            if new:
                await repo.add_outbox(session, Topic.ACKNOWLEDGEMENT, to_json(stored))
                ins = await repo.instruction(session, ack.instruction_id)
                if ins and ins.kind is InstructionKind.DISPATCH and (
                        ins.target.kind is not TargetKind.RESOURCE):
                    await self._recompute(session, topo.target_ldcs(ins.target))
        self._on_commit()
        return stored

    async def _store_acknowledgements(self, acks: list[Acknowledgement]
                                      ) -> list[Acknowledgement]:
        async with self.db.write() as session:
            ids = await repo.add_acknowledgements(session, acks)
            stored = [replace(a, id=i) for a, (i, _) in zip(acks, ids, strict=True)]
            await repo.add_outbox_many(session, [
                (Topic.ACKNOWLEDGEMENT, to_json(s))
                for s, (_, new) in zip(stored, ids, strict=True) if new])
        self._on_commit()
        return stored

    async def record_readings(self, readings: Sequence[Reading]) -> int:
        if not readings:
            return 0
        topo = await self.topology()
        unknown = {r.resource_id for r in readings} - set(topo.resources)
        if unknown:
            raise NotFound(f"no resource {sorted(unknown)[0]!r}")
        return await self._readings.submit(readings)

    async def _store_readings(self, batches: list[Sequence[Reading]]) -> list[int]:
        """Concurrent callers' readings in one transaction (telemetry arrives from thousands
        of DERs at once, like acknowledgements)."""
        readings = [r for batch in batches for r in batch]
        async with self.db.write() as session:
            ids = await repo.add_readings(session, readings)
            await repo.add_outbox_many(session, [
                (Topic.READING, to_json(replace(r, id=rid)))
                for rid, r in zip(ids, readings, strict=True)])
        self._on_commit()
        return [len(batch) for batch in batches]

    # -- delivery state --------------------------------------------------------------------

    async def mark_delivery(self, marks: Sequence[DeliveryMark]) -> None:
        """What adapters know of getting DERs' controls to them (gateway.delivery_state);
        a first contact marks a DER online."""
        first = await self._delivery.mark(marks)
        if first:
            await self.set_online_many(dict.fromkeys(first, True))

    async def resource_delivery(self, resource_id: str) -> ResourceDelivery | None:
        return (await self.delivery_states([resource_id])).get(resource_id)

    async def delivery_states(self, resource_ids: Iterable[str]) -> dict[str, ResourceDelivery]:
        async with self.db.read() as session:
            return await repo.resource_deliveries(session, resource_ids)

    async def acknowledgements(self, *, resource_id: str | None = None,
                               resource_ids: Iterable[str] | None = None,
                               instruction_id: str | None = None, since_id: int = 0,
                               limit: int = 100) -> list[Acknowledgement]:
        ids = [resource_id] if resource_id else resource_ids
        async with self.db.read() as session:
            return await repo.acknowledgements(session, resource_ids=ids,
                                               instruction_id=instruction_id, since_id=since_id,
                                               limit=limit)

    async def latest_acknowledgements(
        self, resource_ids: Iterable[str] | None = None
    ) -> dict[str, Acknowledgement]:
        async with self.db.read() as session:
            return await repo.latest_acknowledgements(session, resource_ids)

    async def readings(self, *, resource_id: str | None = None,
                       resource_ids: Iterable[str] | None = None,
                       quantity: Quantity | None = None, since: datetime | None = None,
                       since_id: int = 0, limit: int = 100) -> list[Reading]:
        ids = [resource_id] if resource_id else resource_ids
        async with self.db.read() as session:
            return await repo.readings(session, resource_ids=ids, quantity=quantity, since=since,
                                       since_id=since_id, limit=limit)


def _by_id(resource: Resource) -> str:
    return resource.id


def _participant_event(participant_id: str, change: ParticipantChange
                       ) -> tuple[str, dict[str, Any]]:
    """A participant's outbox row: who and what happened, never a credential (no token, no
    certificate fingerprint)."""
    return Topic.PARTICIPANT_CHANGED, {"participant_id": participant_id, "change": change}


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


def _require(actor: Participant, *roles: Role) -> None:
    if actor.role not in roles:
        raise Forbidden(f"requires role {' or '.join(r.value for r in roles)}")


def _require_area(actor: Participant, topo: Topology, ldc_id: str) -> None:
    if actor.role is Role.ADMIN:
        return
    if actor.role is Role.LDC and ldc_id in topo.area_ldcs(actor.id):
        return
    raise Forbidden(f"{actor.id} may not register in LDC {ldc_id}'s area")


def _check_participant(p: Participant, known: dict[str, Participant],
                       batch: dict[str, Participant]) -> None:
    def ldc_exists(ldc_id: str) -> bool:
        other = known.get(ldc_id) or batch.get(ldc_id)
        return other is not None and other.role is Role.LDC

    if p.role is Role.LDC and p.dso_model is None:
        raise InvalidInput(f"LDC {p.id} needs a dso_model")
    if p.role is not Role.LDC and (p.dso_model or p.host_ldc_id):
        raise InvalidInput(f"{p.id}: only an LDC has a DSO model or a host LDC")
    if p.host_ldc_id and (p.host_ldc_id == p.id or not ldc_exists(p.host_ldc_id)):
        raise InvalidInput(f"{p.id}: host LDC {p.host_ldc_id!r} is not a registered LDC")
    if p.role is Role.SCADA and not (p.ldc_id and ldc_exists(p.ldc_id)):
        raise InvalidInput(f"SCADA client {p.id} needs the id of its LDC (ldc_id)")
