"""Tables (sqlmodel). Only the store package touches these; everything else sees domain types.

Every change to a table here needs a migration in `migrations/versions/`; a test compares the
migrated schema with these definitions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores text) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the store")
        if value.tzinfo is not UTC:  # (most are UTC already: every row has a few)
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def js() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ParticipantRow(SQLModel, table=True):
    __tablename__ = "participant"
    id: str = Field(primary_key=True, max_length=128)
    role: str = Field(max_length=16)
    name: str = Field(default="", max_length=256)
    dso_model: str | None = Field(default=None, max_length=32)
    host_ldc_id: str | None = Field(default=None, max_length=128)
    ldc_id: str | None = Field(default=None, max_length=128)
    cert_sha256: str | None = Field(default=None, max_length=64, unique=True)
    created_at: datetime = ts()


class ApiTokenRow(SQLModel, table=True):
    __tablename__ = "api_token"
    id: str = Field(primary_key=True, max_length=32)
    participant_id: str = Field(index=True, max_length=128)
    secret_hash: str = Field(max_length=128)
    created_at: datetime = ts()
    expires_at: datetime | None = ts(nullable=True)
    revoked_at: datetime | None = ts(nullable=True)


class ConnectionPointRow(SQLModel, table=True):
    __tablename__ = "connection_point"
    id: str = Field(primary_key=True, max_length=128)
    ldc_id: str = Field(index=True, max_length=128)
    td_node: str = Field(index=True, max_length=128)
    feeder: str = Field(default="", max_length=128)
    bus: str | None = Field(default=None, max_length=128)
    created_at: datetime = ts()


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    id: str = Field(primary_key=True, max_length=128)
    connection_point_id: str = Field(index=True, max_length=128)
    kind: str = Field(max_length=16)
    export_max_w: float
    import_max_w: float = 0.0
    var_max: float = 0.0
    energy_wh: float | None = None
    protocol: str = Field(index=True, max_length=16)
    binding_key: str = Field(unique=True, max_length=512)  # protocol + canonical address
    binding: dict[str, Any] = js()
    aggregator_id: str | None = Field(default=None, index=True, max_length=128)
    online: bool | None = None  # None: nothing has connected for it yet
    created_at: datetime = ts()


class InstructionRow(SQLModel, table=True):
    __tablename__ = "instruction"
    __table_args__ = (
        UniqueConstraint("issuer_id", "idempotency_key", name="uq_instruction_idempotency"),
        Index("ix_instruction_active", "cancelled_at", "end"),
    )
    id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=24)
    issuer_id: str = Field(index=True, max_length=128)
    target_kind: str = Field(max_length=24)
    target_id: str = Field(max_length=128)
    start: datetime = ts()
    end: datetime | None = ts(nullable=True)
    created_at: datetime = ts()
    seq: int = Field(default=0)  # order of record, for "newer supersedes older"
    reason: str = Field(default="", max_length=1024)
    body: dict[str, Any] = js()
    cancelled_at: datetime | None = ts(nullable=True)
    idempotency_key: str | None = Field(default=None, max_length=128)
    request_hash: str | None = Field(default=None, max_length=64)


class EffectiveControlRow(SQLModel, table=True):
    __tablename__ = "effective_control"
    resource_id: str = Field(primary_key=True, max_length=128)
    version: str = Field(max_length=64)
    body: dict[str, Any] = js()
    computed_at: datetime = ts()


class NoticeRow(SQLModel, table=True):
    __tablename__ = "notice"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=512)
    kind: str = Field(max_length=16)
    subject_kind: str = Field(max_length=24)
    subject_id: str = Field(index=True, max_length=128)
    dispatch_id: str = Field(index=True, max_length=36)
    start: datetime = ts()
    end: datetime | None = ts(nullable=True)
    requested_w: float
    effective_w: float
    body: dict[str, Any] = js()
    created_at: datetime = ts(index=True)  # (retention)


class AcknowledgementRow(SQLModel, table=True):
    __tablename__ = "acknowledgement"
    id: int | None = Field(default=None, primary_key=True)
    resource_id: str = Field(index=True, max_length=128)
    instruction_id: str | None = Field(default=None, index=True, max_length=36)
    control_ref: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=24)
    protocol: str = Field(max_length=16)
    protocol_status: str = Field(max_length=64)
    detail: str = Field(default="", max_length=1024)
    at: datetime = ts(index=True)  # (retention)
    # (DER, instruction, control, status): a retried or repeated acknowledgement is one row.
    dedup_key: str | None = Field(default=None, max_length=512, unique=True)


class ReadingRow(SQLModel, table=True):
    __tablename__ = "reading"
    __table_args__ = (Index("ix_reading_resource_at", "resource_id", "at"),
                      Index("ix_reading_at", "at"))  # retention
    id: int | None = Field(default=None, primary_key=True)
    resource_id: str = Field(max_length=128)
    quantity: str = Field(max_length=16)
    value: float
    at: datetime = ts()
    protocol: str = Field(max_length=16)


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    topic: str = Field(max_length=64)
    payload: dict[str, Any] = js()
    created_at: datetime = ts()
    published_at: datetime | None = ts(nullable=True, index=True)


class AdapterRecordRow(SQLModel, table=True):
    __tablename__ = "adapter_record"
    adapter: str = Field(primary_key=True, max_length=32)
    kind: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=256)
    doc: dict[str, Any] = js()
    updated_at: datetime = ts()


class SequenceRow(SQLModel, table=True):
    __tablename__ = "sequence"
    name: str = Field(primary_key=True, max_length=96)
    value: int = 0


class DeliveryRow(SQLModel, table=True):
    """An outbound notification. Pending while delivered_at and failed_at are both empty;
    a cancelled one (its subscription was deleted) is failed with the reason."""

    __tablename__ = "delivery"
    __table_args__ = (Index("ix_delivery_due", "delivered_at", "failed_at", "next_attempt_at"),)
    id: int | None = Field(default=None, primary_key=True)
    adapter: str = Field(max_length=32)
    url: str = Field(max_length=2048)
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    content_type: str = Field(max_length=128)
    headers: dict[str, Any] = js()
    ssl_name: str | None = Field(default=None, max_length=64)
    attempts: int = 0
    max_attempts: int = 8
    next_attempt_at: datetime = ts()
    delivered_at: datetime | None = ts(nullable=True)
    failed_at: datetime | None = ts(nullable=True)
    last_error: str = Field(default="", max_length=512)
    created_at: datetime = ts(index=True)  # (retention)
    subject: str | None = Field(default=None, max_length=256, index=True)  # e.g. "sub:12"
    claimed_by: str | None = Field(default=None, max_length=64)  # the process sending it
    claim_until: datetime | None = ts(nullable=True)  # another process may take it after


class ResourceDeliveryRow(SQLModel, table=True):
    """What the gateway knows of getting each DER's control to it (latest per DER)."""

    __tablename__ = "resource_delivery"
    resource_id: str = Field(primary_key=True, max_length=128)
    state: str = Field(max_length=16)  # fetched | delivered | pending | undeliverable
    reason: str = Field(default="", max_length=512)
    since: datetime = ts()  # when this state began
    fetched_at: datetime | None = ts(nullable=True)
    delivered_at: datetime | None = ts(nullable=True)
    updated_at: datetime = ts()


class LogPositionRow(SQLModel, table=True):
    """How far each process has followed the event log (the outbox), to resume there."""

    __tablename__ = "log_position"
    name: str = Field(primary_key=True, max_length=128)
    position: int = 0
    updated_at: datetime = ts()


class LeaseRow(SQLModel, table=True):
    """Work only one process may do (a device's polling, a single server), held until
    `expires_at` and renewed by its holder; a survivor takes it over when it lapses."""

    __tablename__ = "lease"
    name: str = Field(primary_key=True, max_length=128)
    holder: str = Field(max_length=128)
    expires_at: datetime = ts()


class GenerationRow(SQLModel, table=True):
    """Counters bumped in the transaction that changes what a process may cache (the
    topology, the effective controls), so a cache is checked with one small read."""

    __tablename__ = "generation"
    name: str = Field(primary_key=True, max_length=64)
    value: int = 0
