"""Storage functions, one small group per resource, typed with domain types only.

Each takes the caller's session so that a unit of work (an instruction, its effective
controls, its notices and its outbox rows) commits as one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from gateway.domain import (
    Acknowledgement,
    AckStatus,
    Binding,
    ConnectionPoint,
    DeliveryMark,
    DeliveryState,
    DerKind,
    DsoModel,
    EffectiveControl,
    Instruction,
    LimitationNotice,
    Nameplate,
    Participant,
    Quantity,
    Reading,
    Resource,
    ResourceDelivery,
    Role,
    utcnow,
)
from gateway.jsonform import (
    control_document,
    control_from_json,
    instruction_body,
    instruction_from_parts,
    notice_body,
    notice_from_parts,
    to_json,
)
from gateway.store.tables import (
    AcknowledgementRow,
    AdapterRecordRow,
    ApiTokenRow,
    ConnectionPointRow,
    DeliveryRow,
    EffectiveControlRow,
    GenerationRow,
    InstructionRow,
    LeaseRow,
    LogPositionRow,
    NoticeRow,
    OutboxRow,
    ParticipantRow,
    ReadingRow,
    ResourceDeliveryRow,
    ResourceRow,
    SequenceRow,
)

# --- participants ---------------------------------------------------------------------------


def _participant(row: ParticipantRow) -> Participant:
    return Participant(
        id=row.id, role=Role(row.role), name=row.name,
        dso_model=DsoModel(row.dso_model) if row.dso_model else None,
        host_ldc_id=row.host_ldc_id, ldc_id=row.ldc_id, cert_sha256=row.cert_sha256,
    )


async def add_participants(session: AsyncSession, participants: Sequence[Participant]) -> None:
    now = utcnow()
    session.add_all(
        ParticipantRow(id=p.id, role=p.role.value, name=p.name,
                       dso_model=p.dso_model.value if p.dso_model else None,
                       host_ldc_id=p.host_ldc_id, ldc_id=p.ldc_id,
                       cert_sha256=p.cert_sha256.lower() if p.cert_sha256 else None,
                       created_at=now)
        for p in participants
    )
    await session.flush()


async def update_participant(session: AsyncSession, p: Participant) -> None:
    await session.execute(update(ParticipantRow).where(col(ParticipantRow.id) == p.id).values(
        name=p.name, dso_model=p.dso_model.value if p.dso_model else None,
        host_ldc_id=p.host_ldc_id, ldc_id=p.ldc_id,
        cert_sha256=p.cert_sha256.lower() if p.cert_sha256 else None))


async def delete_participant(session: AsyncSession, participant_id: str) -> None:
    """Remove a participant and its bearer tokens (its history stays: instructions,
    notices and acknowledgements keep naming it)."""
    await session.execute(delete(ApiTokenRow).where(
        col(ApiTokenRow.participant_id) == participant_id))
    await session.execute(delete(ParticipantRow).where(col(ParticipantRow.id) == participant_id))


async def participant(session: AsyncSession, participant_id: str) -> Participant | None:
    row = await session.get(ParticipantRow, participant_id)
    return _participant(row) if row else None


async def participant_by_cert(session: AsyncSession, sha256: str) -> Participant | None:
    row = (await session.execute(
        select(ParticipantRow).where(col(ParticipantRow.cert_sha256) == sha256.lower())
    )).scalar_one_or_none()
    return _participant(row) if row else None


async def participants(session: AsyncSession, role: Role | None = None) -> list[Participant]:
    query = select(ParticipantRow).order_by(col(ParticipantRow.id))
    if role is not None:
        query = query.where(col(ParticipantRow.role) == role.value)
    return [_participant(r) for r in (await session.execute(query)).scalars()]


# --- tokens -------------------------------------------------------------------------------


async def add_token(session: AsyncSession, *, token_id: str, participant_id: str,
                    created_at: datetime, expires_at: datetime, secret_hash: str) -> None:
    session.add(ApiTokenRow(id=token_id, participant_id=participant_id, created_at=created_at,
                            expires_at=expires_at, secret_hash=secret_hash))
    await session.flush()


async def revoke_token(session: AsyncSession, token_id: str, at: datetime
                       ) -> tuple[bool, str | None]:
    """(whether the token exists, its participant if this revoked it now)."""
    row = await session.get(ApiTokenRow, token_id)
    if row is None:
        return False, None
    if row.revoked_at is not None:
        return True, None
    row.revoked_at = at
    return True, row.participant_id


async def token(session: AsyncSession, token_id: str) -> ApiTokenRow | None:
    return await session.get(ApiTokenRow, token_id)


# --- topology -----------------------------------------------------------------------------


def _cp(row: ConnectionPointRow) -> ConnectionPoint:
    return ConnectionPoint(row.id, row.ldc_id, row.td_node, row.feeder, row.bus)


async def add_connection_points(session: AsyncSession, cps: Sequence[ConnectionPoint]) -> None:
    now = utcnow()
    session.add_all(
        ConnectionPointRow(id=c.id, ldc_id=c.ldc_id, td_node=c.td_node, feeder=c.feeder,
                           bus=c.bus, created_at=now)
        for c in cps
    )
    await session.flush()


async def connection_points(session: AsyncSession) -> list[ConnectionPoint]:
    rows = (await session.execute(select(ConnectionPointRow).order_by(col(ConnectionPointRow.id))))
    return [_cp(r) for r in rows.scalars()]


def _resource(row: ResourceRow) -> Resource:
    return Resource(
        id=row.id, connection_point_id=row.connection_point_id, kind=DerKind(row.kind),
        nameplate=Nameplate(row.export_max_w, row.import_max_w, row.var_max, row.energy_wh),
        binding=Binding(row.protocol, dict(row.binding)),
        aggregator_id=row.aggregator_id, online=row.online,
    )


async def add_resources(session: AsyncSession, resources: Sequence[Resource],
                        keys: dict[str, str]) -> None:
    """Store new DERs; `keys` maps each id to its binding key (gateway.bindings)."""
    now = utcnow()
    await session.execute(table_of(ResourceRow).insert(), [
        {"id": r.id, "connection_point_id": r.connection_point_id, "kind": r.kind.value,
         "export_max_w": r.nameplate.export_max_w, "import_max_w": r.nameplate.import_max_w,
         "var_max": r.nameplate.var_max, "energy_wh": r.nameplate.energy_wh,
         "protocol": str(r.binding.protocol), "binding_key": keys[r.id],
         "binding": r.binding.address, "aggregator_id": r.aggregator_id, "online": r.online,
         "created_at": now}
        for r in resources])


async def resources(
    session: AsyncSession,
    *,
    protocol: str | None = None,
    aggregator_id: str | None = None,
    ids: Iterable[str] | None = None,
) -> list[Resource]:
    query = select(ResourceRow).order_by(col(ResourceRow.id))
    if protocol is not None:
        query = query.where(col(ResourceRow.protocol) == str(protocol))
    if aggregator_id is not None:
        query = query.where(col(ResourceRow.aggregator_id) == aggregator_id)
    if ids is not None:
        query = query.where(col(ResourceRow.id).in_(list(ids)))
    return [_resource(r) for r in (await session.execute(query)).scalars()]


async def resource(session: AsyncSession, resource_id: str) -> Resource | None:
    row = await session.get(ResourceRow, resource_id)
    return _resource(row) if row else None


async def set_online(session: AsyncSession, marks: dict[str, bool]
                     ) -> dict[str, tuple[bool | None, bool]]:
    """Set many DERs' online flags; returns those that changed, with the flag before (unknown
    ids are skipped)."""
    changed: dict[str, tuple[bool | None, bool]] = {}
    ids = list(marks)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = await session.execute(select(col(ResourceRow.id), col(ResourceRow.online)).where(
            col(ResourceRow.id).in_(chunk)))
        changed.update({rid: (online, marks[rid]) for rid, online in rows.all()
                        if online != marks[rid]})
    for value in (True, False):
        flip = [rid for rid, (_, on) in changed.items() if on is value]
        for start in range(0, len(flip), 500):
            await session.execute(update(ResourceRow).where(
                col(ResourceRow.id).in_(flip[start:start + 500])).values(online=value))
    return changed


async def update_resource(session: AsyncSession, r: Resource, key: str) -> None:
    await session.execute(
        update(ResourceRow).where(col(ResourceRow.id) == r.id).values(
            connection_point_id=r.connection_point_id, kind=r.kind.value,
            export_max_w=r.nameplate.export_max_w, import_max_w=r.nameplate.import_max_w,
            var_max=r.nameplate.var_max, energy_wh=r.nameplate.energy_wh,
            protocol=str(r.binding.protocol), binding_key=key,
            binding=r.binding.address, aggregator_id=r.aggregator_id))


async def delete_resource(session: AsyncSession, resource_id: str) -> None:
    """Remove a DER and its effective control; its acknowledgements and readings stay."""
    await session.execute(delete(EffectiveControlRow).where(
        col(EffectiveControlRow.resource_id) == resource_id))
    await session.execute(delete(ResourceRow).where(col(ResourceRow.id) == resource_id))


async def update_binding(session: AsyncSession, resource_id: str, binding: Binding,
                         key: str) -> None:
    await session.execute(
        update(ResourceRow).where(col(ResourceRow.id) == resource_id)
        .values(binding=binding.address, binding_key=key)
    )


# --- instructions -------------------------------------------------------------------------


def _instruction(row: InstructionRow) -> Instruction:
    return instruction_from_parts(
        id=row.id, kind=row.kind, issuer_id=row.issuer_id, target_kind=row.target_kind,
        target_id=row.target_id, start=row.start, end=row.end, created_at=row.created_at,
        seq=row.seq, reason=row.reason, body=row.body, cancelled_at=row.cancelled_at,
        idempotency_key=row.idempotency_key,
    )


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def add_instruction(session: AsyncSession, ins: Instruction, req_hash: str | None) -> None:
    session.add(InstructionRow(
        id=ins.id, kind=ins.kind.value, issuer_id=ins.issuer_id,
        target_kind=ins.target.kind.value, target_id=ins.target.id, start=ins.start,
        end=ins.end, created_at=ins.created_at, seq=ins.seq, reason=ins.reason,
        body=instruction_body(ins), idempotency_key=ins.idempotency_key, request_hash=req_hash,
    ))
    await session.flush()


async def next_instruction_seq(session: AsyncSession) -> int:
    query = select(func.max(col(InstructionRow.seq)))
    current = (await session.execute(query)).scalar_one_or_none()
    return (current or 0) + 1


async def instruction_by_idempotency(
    session: AsyncSession, issuer_id: str, key: str
) -> tuple[Instruction, str | None] | None:
    row = (await session.execute(
        select(InstructionRow).where(col(InstructionRow.issuer_id) == issuer_id,
                                     col(InstructionRow.idempotency_key) == key)
    )).scalar_one_or_none()
    return (_instruction(row), row.request_hash) if row else None


async def instruction(session: AsyncSession, instruction_id: str) -> Instruction | None:
    row = await session.get(InstructionRow, instruction_id)
    return _instruction(row) if row else None


async def instructions(
    session: AsyncSession,
    *,
    live_at: datetime | None = None,
    issuer_id: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Instruction]:
    """Instructions in order of record; `live_at`: only those not cancelled nor ended then."""
    query = select(InstructionRow).order_by(col(InstructionRow.seq))
    if live_at is not None:
        query = query.where(col(InstructionRow.cancelled_at).is_(None)).where(
            (col(InstructionRow.end).is_(None)) | (col(InstructionRow.end) > live_at)
        )
    if issuer_id is not None:
        query = query.where(col(InstructionRow.issuer_id) == issuer_id)
    if limit is not None:
        query = query.limit(limit).offset(offset)
    return [_instruction(r) for r in (await session.execute(query)).scalars()]


async def cancel_instruction(session: AsyncSession, instruction_id: str, at: datetime) -> None:
    await session.execute(
        update(InstructionRow).where(col(InstructionRow.id) == instruction_id)
        .values(cancelled_at=at)
    )


# --- effective controls ---------------------------------------------------------------------


def control_version(
    control: EffectiveControl,
    memo: dict[tuple[int, int, int], tuple[str, dict[str, Any]]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The control's JSON body and a digest of everything but the DER id.

    DERs of one coordination class share their interval and settings objects; `memo` (keyed
    by those objects' identities, valid while they live: one recompute) serialises and
    hashes them once per class.
    """
    key = (id(control.intervals), id(control.default_control), id(control.function_settings))
    cached = memo.get(key) if memo is not None else None
    if cached is None:
        body = to_json(replace(control, resource_id=""))
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        cached = (digest, body)
        if memo is not None:
            memo[key] = cached
    digest, body = cached
    return digest, {**body, "resource_id": control.resource_id}


async def control_versions(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(
        select(col(EffectiveControlRow.resource_id), col(EffectiveControlRow.version)))
    return dict(rows.all())


async def put_controls(
    session: AsyncSession, controls: Sequence[tuple[EffectiveControl, str, dict[str, Any]]],
    at: datetime,
) -> None:
    """Upsert many controls with two executemany statements (not one round trip per DER)."""
    if not controls:
        return
    ids = [c.resource_id for c, _, _ in controls]
    existing: set[str] = set()
    for chunk in range(0, len(ids), 5000):
        existing.update((await session.execute(
            select(col(EffectiveControlRow.resource_id)).where(
                col(EffectiveControlRow.resource_id).in_(ids[chunk:chunk + 5000]))
        )).scalars())
    rows = [{"resource_id": c.resource_id, "version": v, "body": b, "computed_at": at}
            for c, v, b in controls]
    fresh = [r for r in rows if r["resource_id"] not in existing]
    known = [{"rid": r["resource_id"], "version": r["version"], "body": r["body"],
              "computed_at": at} for r in rows if r["resource_id"] in existing]
    table = table_of(EffectiveControlRow)
    if fresh:
        await session.execute(table.insert(), fresh)
    if known:
        await session.execute(
            table.update().where(table.c.resource_id == bindparam("rid"))
            .values(version=bindparam("version"), body=bindparam("body"),
                    computed_at=bindparam("computed_at")), known)


async def control(session: AsyncSession, resource_id: str) -> EffectiveControl | None:
    row = await session.get(EffectiveControlRow, resource_id)
    return control_from_json(row.body) if row else None


async def control_documents(session: AsyncSession, resource_ids: Iterable[str] | None = None
                            ) -> list[dict[str, Any]]:
    """Controls as the API shows them, read as their stored JSON (a platform reading every
    DER's control must not cost an object per interval and source, twice over)."""
    table = table_of(EffectiveControlRow)
    query = select(table.c.body)
    if resource_ids is not None:
        query = query.where(table.c.resource_id.in_(list(resource_ids)))
    return [control_document(body) for body in (await session.execute(query)).scalars()]


async def controls(
    session: AsyncSession, resource_ids: Iterable[str] | None = None
) -> dict[str, EffectiveControl]:
    table = table_of(EffectiveControlRow)  # (columns, not ORM rows: read on every change)
    query = select(table.c.resource_id, table.c.body)
    if resource_ids is not None:
        query = query.where(table.c.resource_id.in_(list(resource_ids)))
    return {rid: control_from_json(body) for rid, body in (await session.execute(query)).all()}


# --- notices ------------------------------------------------------------------------------


async def add_notices(
    session: AsyncSession, notices: Sequence[LimitationNotice], at: datetime
) -> list[tuple[int, LimitationNotice]]:
    """Store the notices not already stored (by key); return the new ones with their ids."""
    if not notices:
        return []
    keys = [n.key for n in notices]
    known = set((await session.execute(
        select(col(NoticeRow.key)).where(col(NoticeRow.key).in_(keys))
    )).scalars())
    fresh = []
    for n in notices:
        if n.key in known:
            continue
        known.add(n.key)
        row = NoticeRow(key=n.key, kind=n.kind.value, subject_kind=n.subject.kind.value,
                        subject_id=n.subject.id, dispatch_id=n.dispatch_id, start=n.start,
                        end=n.end, requested_w=n.requested_w, effective_w=n.effective_w,
                        body=notice_body(n), created_at=at)
        session.add(row)
        fresh.append((row, n))
    await session.flush()
    return [(row.id, n) for row, n in fresh]  # type: ignore[misc]


async def notices(
    session: AsyncSession, *, since_id: int = 0, limit: int = 100
) -> list[tuple[int, LimitationNotice]]:
    rows = (await session.execute(
        select(NoticeRow).where(col(NoticeRow.id) > since_id).order_by(col(NoticeRow.id))
        .limit(limit)
    )).scalars()
    return [(r.id, notice_from_parts(  # type: ignore[misc]
        kind=r.kind, subject_kind=r.subject_kind, subject_id=r.subject_id, start=r.start,
        end=r.end, requested_w=r.requested_w, effective_w=r.effective_w,
        dispatch_id=r.dispatch_id, body=r.body)) for r in rows]


# --- feedback -----------------------------------------------------------------------------


def ack_dedup_key(ack: Acknowledgement) -> str | None:
    """One row per (DER, instruction, control, status): a retried or repeated answer to the
    same control is the same acknowledgement. Answers naming no control are all kept."""
    if ack.instruction_id is None and ack.control_ref is None:
        return None
    return (f"{ack.resource_id}|{ack.instruction_id or ''}|{ack.control_ref or ''}|"
            f"{ack.status.value}")[:512]


async def add_acknowledgements(session: AsyncSession, acks: Sequence[Acknowledgement]
                               ) -> list[tuple[int, bool]]:
    """Store acknowledgements not stored before; for each, in order, (its id, whether it is
    new). A repeat (same de-duplication key, in the store or earlier in `acks`) gets the id
    of the one first stored."""
    keys = [ack_dedup_key(a) for a in acks]
    wanted = [k for k in keys if k is not None]
    known: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        rows = await session.execute(select(col(AcknowledgementRow.dedup_key),
                                            col(AcknowledgementRow.id))
                                     .where(col(AcknowledgementRow.dedup_key).in_(
                                         wanted[start:start + 500])))
        known.update({str(k): int(i) for k, i in rows.all() if i is not None})
    fresh: list[dict[str, Any]] = []  # rows to insert, in order
    slots: list[int | None] = []  # per ack: its index in `fresh`, or None (a repeat)
    for ack, key in zip(acks, keys, strict=True):
        if key is not None and key in known:
            slots.append(None)
            continue
        slots.append(len(fresh))
        fresh.append({"resource_id": ack.resource_id, "instruction_id": ack.instruction_id,
                      "control_ref": ack.control_ref, "status": ack.status.value,
                      "protocol": str(ack.protocol), "protocol_status": ack.protocol_status,
                      "detail": ack.detail[:1024], "at": ack.at, "dedup_key": key})
        if key is not None:
            known[key] = -1  # taken by this batch: later repeats point at this row
    ids = await _insert_returning_ids(session, AcknowledgementRow, fresh)
    for row, new_id in zip(fresh, ids, strict=True):
        if row["dedup_key"] is not None:
            known[row["dedup_key"]] = new_id
    return [(ids[slot], True) if slot is not None else (known[str(key)], False)
            for slot, key in zip(slots, keys, strict=True)]


async def _insert_returning_ids(session: AsyncSession, model: type[SQLModel],
                                rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` in one executemany and return their ids in the rows' order. (Through
    the ORM, each row was an object with its own state to build and flush: most of the cost
    of storing thousands of acknowledgements or readings at once.)"""
    if not rows:
        return []
    table = table_of(model)
    result = await session.execute(
        table.insert().returning(table.c.id, sort_by_parameter_order=True), rows)
    return [int(i) for (i,) in result.all()]


async def acknowledgements(
    session: AsyncSession, *, resource_ids: Iterable[str] | None = None,
    instruction_id: str | None = None, since_id: int = 0, limit: int = 100,
) -> list[Acknowledgement]:
    query = select(AcknowledgementRow).where(col(AcknowledgementRow.id) > since_id)
    if resource_ids is not None:
        query = query.where(col(AcknowledgementRow.resource_id).in_(list(resource_ids)))
    if instruction_id is not None:
        query = query.where(col(AcknowledgementRow.instruction_id) == instruction_id)
    rows = (await session.execute(query.order_by(col(AcknowledgementRow.id)).limit(limit))
            ).scalars()
    return [Acknowledgement(r.resource_id, AckStatus(r.status), r.protocol,
                            r.protocol_status, r.at, r.instruction_id, r.control_ref, r.detail,
                            r.id) for r in rows]


async def latest_acknowledgements(
    session: AsyncSession, resource_ids: Iterable[str] | None = None
) -> dict[str, Acknowledgement]:
    """Each DER's most recent acknowledgement (for rebuilding views after a restart)."""
    latest = select(func.max(col(AcknowledgementRow.id))).group_by(
        col(AcknowledgementRow.resource_id))
    if resource_ids is not None:
        latest = latest.where(col(AcknowledgementRow.resource_id).in_(list(resource_ids)))
    rows = (await session.execute(
        select(AcknowledgementRow).where(col(AcknowledgementRow.id).in_(latest))
    )).scalars()
    return {r.resource_id: Acknowledgement(r.resource_id, AckStatus(r.status),
                                           r.protocol, r.protocol_status, r.at,
                                           r.instruction_id, r.control_ref, r.detail, r.id)
            for r in rows}


async def refusals(session: AsyncSession) -> set[tuple[str, str]]:
    """(instruction, DER) pairs whose latest acknowledgement refuses the instruction."""
    latest = (
        select(col(AcknowledgementRow.instruction_id), col(AcknowledgementRow.resource_id),
               func.max(col(AcknowledgementRow.id)).label("last"))
        .where(col(AcknowledgementRow.instruction_id).is_not(None))
        .group_by(col(AcknowledgementRow.instruction_id), col(AcknowledgementRow.resource_id))
        .subquery()
    )
    rows = await session.execute(
        select(col(AcknowledgementRow.instruction_id), col(AcknowledgementRow.resource_id))
        .join(latest, col(AcknowledgementRow.id) == latest.c.last)
        .where(col(AcknowledgementRow.status).in_(
            [AckStatus.REJECTED.value, AckStatus.CANNOT_COMPLY.value, AckStatus.OPTED_OUT.value]))
    )
    return {(i, r) for i, r in rows.all() if i is not None}


async def add_readings(session: AsyncSession, readings: Sequence[Reading]) -> list[int]:
    return await _insert_returning_ids(session, ReadingRow, [
        {"resource_id": r.resource_id, "quantity": r.quantity.value, "value": r.value,
         "at": r.at, "protocol": str(r.protocol)} for r in readings])


async def readings(
    session: AsyncSession, *, resource_ids: Iterable[str] | None = None,
    quantity: Quantity | None = None, since: datetime | None = None, since_id: int = 0,
    limit: int = 100,
) -> list[Reading]:
    query = select(ReadingRow).where(col(ReadingRow.id) > since_id)
    if resource_ids is not None:
        query = query.where(col(ReadingRow.resource_id).in_(list(resource_ids)))
    if quantity is not None:
        query = query.where(col(ReadingRow.quantity) == quantity.value)
    if since is not None:
        query = query.where(col(ReadingRow.at) >= since)
    rows = (await session.execute(query.order_by(col(ReadingRow.id)).limit(limit))).scalars()
    return [Reading(r.resource_id, Quantity(r.quantity), r.value, r.at, r.protocol, r.id)
            for r in rows]


# --- outbox and sequences ---------------------------------------------------------------------


# --- delivery state -------------------------------------------------------------------------


async def put_resource_deliveries(session: AsyncSession, marks: Sequence[DeliveryMark]
                                  ) -> list[tuple[DeliveryMark, DeliveryState | None]]:
    """Store each DER's latest delivery mark; returns each with the state it replaced.

    Rows are read and written as plain values with one executemany each for the new and the
    changed (through the ORM, each DER's row was an object to track and flush: a tenth of
    a fan-out's group-committed writes). A DER marked twice in one batch keeps the last."""
    if not marks:
        return []
    table = table_of(ResourceDeliveryRow)
    ids = list(dict.fromkeys(m.resource_id for m in marks))
    stored: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        found = await session.execute(select(table).where(
            table.c.resource_id.in_(ids[start:start + 500])))
        stored.update({r["resource_id"]: dict(r) for r in found.mappings()})
    rows: dict[str, dict[str, Any]] = {}
    changes: list[tuple[DeliveryMark, DeliveryState | None]] = []
    for mark in marks:
        row = rows.get(mark.resource_id) or stored.get(mark.resource_id)
        previous = DeliveryState(row["state"]) if row is not None else None
        if row is None:
            row = {"resource_id": mark.resource_id, "state": mark.state.value, "since": mark.at,
                   "fetched_at": None, "delivered_at": None}
        elif previous is not mark.state:
            row["state"], row["since"] = mark.state.value, mark.at
        row["reason"] = mark.reason[:512]
        row["updated_at"] = mark.at
        if mark.state is DeliveryState.FETCHED:
            row["fetched_at"] = mark.at
        elif mark.state is DeliveryState.DELIVERED:
            row["delivered_at"] = mark.at
        rows[mark.resource_id] = row
        changes.append((mark, previous))
    fresh = [r for rid, r in rows.items() if rid not in stored]
    known = [{"rid": rid, **{f"new_{c}": r[c] for c in _DELIVERY_COLUMNS}}
             for rid, r in rows.items() if rid in stored]
    if fresh:
        await session.execute(table.insert(), fresh)
    if known:
        await session.execute(table.update().where(table.c.resource_id == bindparam("rid"))
                              .values({c: bindparam(f"new_{c}") for c in _DELIVERY_COLUMNS}),
                              known)
    return changes


_DELIVERY_COLUMNS = ("state", "since", "reason", "updated_at", "fetched_at", "delivered_at")


async def resource_deliveries(session: AsyncSession, resource_ids: Iterable[str] | None
                              ) -> dict[str, ResourceDelivery]:
    """Delivery states of these DERs (of every DER with None)."""
    def state(row: ResourceDeliveryRow) -> ResourceDelivery:
        return ResourceDelivery(DeliveryState(row.state), row.since, row.reason,
                                row.fetched_at, row.delivered_at)

    if resource_ids is None:
        rows = (await session.execute(select(ResourceDeliveryRow))).scalars()
        return {row.resource_id: state(row) for row in rows}
    ids = list(resource_ids)
    found: dict[str, ResourceDelivery] = {}
    for start in range(0, len(ids), 500):
        rows = (await session.execute(select(ResourceDeliveryRow).where(
            col(ResourceDeliveryRow.resource_id).in_(ids[start:start + 500])))).scalars()
        found.update({row.resource_id: state(row) for row in rows})
    return found


async def add_outbox(session: AsyncSession, topic: str, payload: dict[str, Any]) -> None:
    await add_outbox_many(session, [(topic, payload)])


async def add_outbox_many(
    session: AsyncSession, events: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Outbox rows in one executemany, in the given order (ids keep that order)."""
    if not events:
        return
    # Ids in commit order: several processes follow the log by id, and a row given a lower id
    # but committed later would be passed over. The lock is held to the commit.
    await lock(session, "outbox")
    now = utcnow()
    await session.execute(table_of(OutboxRow).insert(),
                          [{"topic": t, "payload": to_json(p), "created_at": now,
                            "published_at": None} for t, p in events])
    await notify(session, OUTBOX_CHANNEL)


# --- retention ----------------------------------------------------------------------------


def _old_rows(table: str, cutoff: datetime, now: datetime) -> Any:
    """The ids of `table`'s rows past retention, oldest first (gateway.retention)."""
    if table == "reading":
        return select(col(ReadingRow.id)).where(col(ReadingRow.at) < cutoff).order_by(
            col(ReadingRow.at))
    if table == "acknowledgement":
        live = select(col(InstructionRow.id)).where(
            col(InstructionRow.cancelled_at).is_(None),
            (col(InstructionRow.end).is_(None)) | (col(InstructionRow.end) > now))
        return select(col(AcknowledgementRow.id)).where(
            col(AcknowledgementRow.at) < cutoff,
            col(AcknowledgementRow.instruction_id).is_(None)
            | col(AcknowledgementRow.instruction_id).not_in(live)).order_by(
            col(AcknowledgementRow.at))
    if table == "notice":
        return select(col(NoticeRow.id)).where(col(NoticeRow.created_at) < cutoff).order_by(
            col(NoticeRow.created_at))
    if table == "outbox":
        return select(col(OutboxRow.id)).where(col(OutboxRow.published_at) < cutoff).order_by(
            col(OutboxRow.published_at))
    if table == "delivery":
        return select(col(DeliveryRow.id)).where(
            col(DeliveryRow.created_at) < cutoff,
            col(DeliveryRow.delivered_at).is_not(None) | col(DeliveryRow.failed_at).is_not(None)
        ).order_by(col(DeliveryRow.created_at))
    raise ValueError(f"no retention for table {table!r}")


_TABLES: dict[str, Any] = {"reading": ReadingRow, "acknowledgement": AcknowledgementRow,
                           "notice": NoticeRow, "outbox": OutboxRow, "delivery": DeliveryRow}


async def delete_older(session: AsyncSession, table: str, cutoff: datetime, now: datetime,
                       limit: int) -> int:
    """Delete up to `limit` of `table`'s rows past retention; how many were deleted."""
    ids = list((await session.execute(_old_rows(table, cutoff, now).limit(limit))).scalars())
    if not ids:
        return 0
    model = _TABLES[table]
    await session.execute(delete(model).where(col(model.id).in_(ids)))
    return len(ids)


async def counts(session: AsyncSession) -> dict[str, int]:
    """Acknowledgements, readings, and outbox rows not yet published (for the status)."""
    async def count(query: Any) -> int:
        return int((await session.execute(query)).scalar_one())

    return {
        "acknowledgements": await count(select(func.count()).select_from(AcknowledgementRow)),
        "readings": await count(select(func.count()).select_from(ReadingRow)),
        "outbox_pending": await count(select(func.count()).select_from(OutboxRow).where(
            col(OutboxRow.published_at).is_(None))),
    }


async def outbox_pending(session: AsyncSession, limit: int = 500) -> list[OutboxRow]:
    query = (select(OutboxRow).where(col(OutboxRow.published_at).is_(None))
             .order_by(col(OutboxRow.id)).limit(limit))
    return list((await session.execute(query)).scalars())


class OutboxEntry(NamedTuple):
    """One event of the log as its followers read it."""

    id: int
    topic: str
    payload: dict[str, Any]


async def outbox_since(session: AsyncSession, after_id: int, limit: int = 500,
                       topics: Collection[str] = ()) -> list[OutboxEntry]:
    """Events after `after_id` in id order (of the given topics only, if any). (Columns, not
    ORM rows: every event of a fan-out is read back once per process.)"""
    query = select(col(OutboxRow.id), col(OutboxRow.topic), col(OutboxRow.payload)).where(
        col(OutboxRow.id) > after_id)
    if topics:
        query = query.where(col(OutboxRow.topic).in_(sorted(topics)))
    rows = await session.execute(query.order_by(col(OutboxRow.id)).limit(limit))
    return [OutboxEntry(int(i), str(t), p) for i, t, p in rows.all()]


async def outbox_min_id(session: AsyncSession) -> int | None:
    """The oldest row retention has kept (None: the outbox is empty)."""
    found = (await session.execute(select(func.min(col(OutboxRow.id))))).scalar_one()
    return int(found) if found is not None else None


async def mark_published_through(session: AsyncSession, after: int, through: int,
                                 at: datetime) -> None:
    """Mark rows in (after, through] published, if no one did yet."""
    await session.execute(update(OutboxRow).where(
        col(OutboxRow.id) > after, col(OutboxRow.id) <= through,
        col(OutboxRow.published_at).is_(None)).values(published_at=at))


# --- several processes (PostgreSQL): locks, notifications, positions, leases, generations ---

OUTBOX_CHANNEL = "dergw_outbox"


def is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def lock(session: AsyncSession, name: str) -> None:
    """A lock held until this transaction ends, across processes (PostgreSQL). SQLite has
    one writer at a time already: nothing to do."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})


async def notify(session: AsyncSession, channel: str) -> None:
    """Wake every process listening on `channel` when this transaction commits."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_notify(:c, '')"), {"c": channel})


async def outbox_max_id(session: AsyncSession) -> int:
    return int((await session.execute(select(func.max(col(OutboxRow.id))))).scalar_one() or 0)


async def log_position(session: AsyncSession, name: str) -> int | None:
    row = await session.get(LogPositionRow, name)
    return None if row is None else row.position


async def put_log_position(session: AsyncSession, name: str, position: int) -> None:
    now = utcnow()
    stmt = _insert(session, table_of(LogPositionRow)).values(
        name=name, position=position, updated_at=now)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["name"], set_={"position": position, "updated_at": now}))


async def take_lease(session: AsyncSession, name: str, holder: str, now: datetime,
                     until: datetime) -> bool:
    """Take or renew lease `name` for `holder` unless another holds it unexpired."""
    stmt = _insert(session, table_of(LeaseRow)).values(name=name, holder=holder,
                                                        expires_at=until)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"holder": holder, "expires_at": until},
        where=(col(LeaseRow.holder) == holder) | (col(LeaseRow.expires_at) < now))
    await session.execute(stmt)
    row = await session.get(LeaseRow, name, populate_existing=True)
    return row is not None and row.holder == holder


async def drop_lease(session: AsyncSession, name: str, holder: str) -> None:
    await session.execute(delete(LeaseRow).where(col(LeaseRow.name) == name,
                                                 col(LeaseRow.holder) == holder))


async def lease_holders(session: AsyncSession, prefix: str, now: datetime) -> dict[str, str]:
    rows = await session.execute(select(col(LeaseRow.name), col(LeaseRow.holder)).where(
        col(LeaseRow.name).startswith(prefix), col(LeaseRow.expires_at) >= now))
    return {str(n): str(h) for n, h in rows.all()}


async def generation(session: AsyncSession, name: str) -> int:
    row = await session.get(GenerationRow, name, populate_existing=True)
    return 0 if row is None else row.value


async def bump_generation(session: AsyncSession, name: str) -> int:
    """Count one more change of `name` in this transaction; the new count."""
    stmt = _insert(session, table_of(GenerationRow)).values(name=name, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                      set_={"value": table_of(GenerationRow).c.value + 1})
    await session.execute(stmt)
    return await generation(session, name)


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table (SQLModel's metaclass sets it; its stubs do not say so)."""
    found: Table = model.__table__  # type: ignore[attr-defined]
    return found


def _insert(session: AsyncSession, table: Any) -> Any:
    """The database's own INSERT (SQLite or PostgreSQL), for ON CONFLICT upserts: one
    statement where get-then-add costs two round trips and the ORM's bookkeeping."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


async def next_sequence(session: AsyncSession, name: str, count: int = 1) -> int:
    """Take `count` numbers of a sequence at once; returns the last (the first is
    last - count + 1)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    table = table_of(SequenceRow)
    stmt = _insert(session, table).values(name=name, value=count)
    stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                      set_={"value": table.c.value + count})
    return int((await session.execute(stmt.returning(table.c.value))).scalar_one())


async def get_record(session: AsyncSession, adapter: str, kind: str, key: str
                     ) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = (await session.execute(select(col(AdapterRecordRow.doc)).where(
        col(AdapterRecordRow.adapter) == adapter, col(AdapterRecordRow.kind) == kind,
        col(AdapterRecordRow.key) == key))).scalar_one_or_none()
    return doc


async def get_records(session: AsyncSession, adapter: str, kind: str, keys: list[str]
                      ) -> dict[str, dict[str, Any]]:
    """Several documents of a kind by key (those that exist), in one query per 500 keys."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 500):
        rows = await session.execute(
            select(col(AdapterRecordRow.key), col(AdapterRecordRow.doc)).where(
                col(AdapterRecordRow.adapter) == adapter, col(AdapterRecordRow.kind) == kind,
                col(AdapterRecordRow.key).in_(keys[start:start + 500])))
        found.update({str(key): doc for key, doc in rows.all()})
    return found


async def list_records(session: AsyncSession, adapter: str, kind: str, prefix: str | None
                       ) -> list[tuple[str, dict[str, Any]]]:
    """A kind's documents by key. (Columns, not ORM rows: listing 5,000 documents took
    ~450 ms through the ORM, ~150 ms like this.)"""
    query = select(col(AdapterRecordRow.key), col(AdapterRecordRow.doc)).where(
        col(AdapterRecordRow.adapter) == adapter, col(AdapterRecordRow.kind) == kind)
    if prefix:
        query = query.where(col(AdapterRecordRow.key).startswith(prefix))
    rows = (await session.execute(query.order_by(col(AdapterRecordRow.key)))).all()
    return [(str(key), doc) for key, doc in rows]


async def delete_records(session: AsyncSession, adapter: str, kind: str,
                         keys: Sequence[str]) -> int:
    result = await session.execute(delete(AdapterRecordRow).where(
        col(AdapterRecordRow.adapter) == adapter, col(AdapterRecordRow.kind) == kind,
        col(AdapterRecordRow.key).in_(list(keys))))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def put_records(session: AsyncSession, adapter: str, kind: str,
                      docs: dict[str, dict[str, Any]], at: datetime) -> None:
    """Insert or replace adapters' documents, one statement for all of them."""
    if not docs:
        return
    stmt = _insert(session, table_of(AdapterRecordRow))
    stmt = stmt.on_conflict_do_update(index_elements=["adapter", "kind", "key"], set_={
        "doc": stmt.excluded.doc, "updated_at": stmt.excluded.updated_at})
    await session.execute(stmt, [{"adapter": adapter, "kind": kind, "key": key, "doc": doc,
                                  "updated_at": at} for key, doc in docs.items()])
