"""What an operator looks at: deliveries, the outbox, acknowledgements and connections.

One read of the store per call, shared by `/metrics` (gateway.metrics) and the status page
(gateway.ui). Only counts and ages leave here: no participant, DER or URL is named, so the
figures may be shown to anyone allowed to see the gateway's health.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import col

from gateway.domain import utcnow
from gateway.settings import split_listen
from gateway.store.engine import Database
from gateway.store.tables import AcknowledgementRow, DeliveryRow, OutboxRow


@dataclass(frozen=True)
class DeliveryFigures:
    pending: int = 0
    failed: int = 0
    delivered: int = 0
    oldest_pending_s: float = 0.0  # age of the oldest delivery still waiting; 0 if none


@dataclass(frozen=True)
class HealthSnapshot:
    deliveries: dict[str, DeliveryFigures] = field(default_factory=dict)  # by adapter
    acknowledgements: dict[tuple[str, str], int] = field(default_factory=dict)  # (protocol, status)
    outbox_pending: int = 0
    outbox_lag_s: float = 0.0  # age of the oldest unpublished outbox row; 0 if none


def _age(since: datetime | None, now: datetime) -> float:
    if since is None:
        return 0.0
    if since.tzinfo is None:  # SQLite hands back naive UTC
        since = since.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - since).total_seconds())


async def snapshot(db: Database) -> HealthSnapshot:
    """Delivery, outbox and acknowledgement figures, read in one session."""
    now = utcnow()
    adapter, created = col(DeliveryRow.adapter), col(DeliveryRow.created_at)
    waiting = col(DeliveryRow.delivered_at).is_(None) & col(DeliveryRow.failed_at).is_(None)
    failed = col(DeliveryRow.delivered_at).is_(None) & col(DeliveryRow.failed_at).is_not(None)
    ack_protocol, ack_status = col(AcknowledgementRow.protocol), col(AcknowledgementRow.status)
    async with db.read() as session:
        pending_rows = (await session.execute(
            select(adapter, func.count(), func.min(created)).where(waiting)
            .group_by(adapter))).all()
        failed_rows = (await session.execute(
            select(adapter, func.count()).where(failed).group_by(adapter))).all()
        delivered_rows = (await session.execute(
            select(adapter, func.count()).where(col(DeliveryRow.delivered_at).is_not(None))
            .group_by(adapter))).all()
        ack_rows = (await session.execute(
            select(ack_protocol, ack_status, func.count())
            .group_by(ack_protocol, ack_status))).all()
        outbox = (await session.execute(
            select(func.count(), func.min(col(OutboxRow.created_at)))
            .where(col(OutboxRow.published_at).is_(None)))).one()
    adapters = {a for a, *_ in pending_rows} | {a for a, _ in failed_rows} | {
        a for a, _ in delivered_rows}
    pending = {a: (n, oldest) for a, n, oldest in pending_rows}
    failures = dict(failed_rows)
    delivered = dict(delivered_rows)
    deliveries = {
        a: DeliveryFigures(pending=pending.get(a, (0, None))[0], failed=failures.get(a, 0),
                           delivered=delivered.get(a, 0),
                           oldest_pending_s=_age(pending.get(a, (0, None))[1], now))
        for a in sorted(adapters)}
    return HealthSnapshot(deliveries=deliveries,
                          acknowledgements={(p, s): n for p, s, n in ack_rows},
                          outbox_pending=int(outbox[0]), outbox_lag_s=_age(outbox[1], now))


# --- connected clients ------------------------------------------------------------------------

_TCP_ESTABLISHED = "01"


def _local_ports_established(paths: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")
                             ) -> dict[int, int]:
    """Established TCP connections by local port, from the kernel's table (Linux)."""
    counts: dict[int, int] = {}
    for path in paths:
        try:
            with Path(path).open() as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == _TCP_ESTABLISHED:
                        port = int(parts[1].rsplit(":", 1)[1], 16)
                        counts[port] = counts.get(port, 0) + 1
        except OSError:
            continue
    return counts


def connected_clients(listeners: Mapping[str, list[str]]) -> dict[str, int]:
    """Connected clients per protocol: established connections to each adapter's listening
    port. Counts what the kernel sees, so it needs nothing from the adapters; with several
    gateway processes sharing a port, each reports the port's total. Protocols whose
    gateway side is a client (Modbus) have no listener and are left out."""
    if not Path("/proc/net/tcp").exists():
        return {}
    by_port = _local_ports_established()
    found: dict[str, int] = {}
    for name, urls in listeners.items():
        ports = set()
        for url in urls:
            try:
                ports.add(split_listen(url)[1])
            except ValueError:
                continue
        if ports:
            found[name] = sum(by_port.get(p, 0) for p in ports)
    return found
