"""The delivery table: outbound notifications' rows (gateway.delivery is their worker)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.store.repo import is_postgres, table_of
from gateway.store.tables import DeliveryRow, LeaseRow

PROCESS_LEASES = "process:"  # the liveness lease of each process (gateway.runtime)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    url: str
    body: bytes
    content_type: str
    headers: dict[str, str] | None
    tls: str | None
    subject: str | None


async def add(session: AsyncSession, adapter: str, items: Sequence[NewDelivery],
              max_attempts: int, now: datetime) -> list[int]:
    """Store deliveries, in one statement; their ids, in order. (A multi-row INSERT numbers
    its rows in the order given, so the ids sorted are that order - asking the driver to keep
    RETURNING in parameter order falls back to a row at a time.)"""
    if not items:
        return []
    result = await session.execute(insert(DeliveryRow).returning(col(DeliveryRow.id)), [
        {"adapter": adapter, "url": i.url, "body": i.body, "content_type": i.content_type,
         "headers": i.headers or {}, "ssl_name": i.tls, "subject": i.subject,
         "attempts": 0, "max_attempts": max_attempts, "next_attempt_at": now,
         "created_at": now, "last_error": ""} for i in items])
    return sorted(int(i) for i in result.scalars() if i is not None)


async def cancel_pending(session: AsyncSession, adapter: str, subjects: Iterable[str],
                         now: datetime) -> int:
    """Mark what is still pending for these subjects failed ("cancelled")."""
    wanted = list(dict.fromkeys(subjects))
    if not wanted:
        return 0
    result = await session.execute(
        update(DeliveryRow)
        .where(col(DeliveryRow.adapter) == adapter, col(DeliveryRow.subject).in_(wanted),
               col(DeliveryRow.delivered_at).is_(None), col(DeliveryRow.failed_at).is_(None))
        .values(failed_at=now, last_error="cancelled: its subscription was deleted"))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _alive(now: datetime) -> Any:
    """Holders of an unexpired process lease: a claim by anyone else is a dead process's."""
    return select(col(LeaseRow.holder)).where(
        col(LeaseRow.name).startswith(PROCESS_LEASES), col(LeaseRow.expires_at) >= now)


class Claimed(NamedTuple):
    """A delivery claimed for sending: what the worker needs of its row."""

    id: int
    adapter: str
    url: str
    body: bytes
    content_type: str
    headers: dict[str, Any]
    ssl_name: str | None
    subject: str | None
    attempts: int
    max_attempts: int


async def claim_due(session: AsyncSession, worker: str, limit: int, now: datetime,
                    claim_s: float) -> list[Claimed]:
    """Due rows nobody alive holds, claimed for `worker` (FOR UPDATE SKIP LOCKED on
    PostgreSQL: two processes never claim the same row). Read as columns, not ORM rows:
    every notification of a fan-out passes through here."""
    table = table_of(DeliveryRow)
    query = (select(*(table.c[name] for name in Claimed._fields))
             .where(col(DeliveryRow.delivered_at).is_(None),
                    col(DeliveryRow.failed_at).is_(None),
                    col(DeliveryRow.next_attempt_at) <= now,
                    or_(col(DeliveryRow.claim_until).is_(None),
                        col(DeliveryRow.claim_until) < now,
                        col(DeliveryRow.claimed_by).not_in(_alive(now))))
             .order_by(col(DeliveryRow.id)).limit(limit))
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    rows = [Claimed(*r) for r in (await session.execute(query)).all()]
    if rows:
        await session.execute(
            update(DeliveryRow).where(col(DeliveryRow.id).in_([r.id for r in rows]))
            .values(claimed_by=worker, claim_until=now + timedelta(seconds=claim_s)))
    return rows


async def delivered(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    """(not if cancelled meanwhile: a cancellation is the later word)"""
    if ids:
        await session.execute(update(DeliveryRow).where(
            col(DeliveryRow.id).in_(list(ids)), col(DeliveryRow.failed_at).is_(None))
            .values(delivered_at=now, attempts=col(DeliveryRow.attempts) + 1, claim_until=None))


async def attempt_failed(session: AsyncSession, delivery_id: int, attempts: int, error: str,
                         failed_at: datetime | None, next_attempt_at: datetime | None) -> None:
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:500],
                              "claim_until": None}
    if failed_at is not None:
        values["failed_at"] = failed_at
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    await session.execute(update(DeliveryRow).where(
        col(DeliveryRow.id) == delivery_id, col(DeliveryRow.failed_at).is_(None))
        .values(**values))


async def counts(session: AsyncSession, now: datetime) -> dict[str, Any]:
    """Deliveries by state, and the age of the oldest pending one (seconds)."""
    delivered_n = (await session.execute(select(func.count()).select_from(DeliveryRow).where(
        col(DeliveryRow.delivered_at).is_not(None)))).scalar_one()
    failed_n = (await session.execute(select(func.count()).select_from(DeliveryRow).where(
        col(DeliveryRow.delivered_at).is_(None),
        col(DeliveryRow.failed_at).is_not(None)))).scalar_one()
    pending, oldest = (await session.execute(
        select(func.count(), func.min(col(DeliveryRow.created_at))).where(
            col(DeliveryRow.delivered_at).is_(None),
            col(DeliveryRow.failed_at).is_(None)))).one()
    if oldest is not None and oldest.tzinfo is None:  # (SQLite hands aggregates back naive)
        oldest = oldest.replace(tzinfo=UTC)
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return {"delivered": delivered_n, "failed": failed_n, "pending": pending,
            "oldest_pending_s": round(age, 3)}
