"""The canonical vocabulary: participants, topology, resources, instructions, feedback.

Pure data, no I/O. SI units (W, var, V, Hz, Wh, s) and aware UTC datetimes only; protocol
encodings (multipliers, percentages, local enums) exist only inside adapters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


def require_utc(value: datetime, name: str = "datetime") -> datetime:
    """Refuse naive datetimes; normalise aware ones to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return value.astimezone(UTC)


class Role(StrEnum):
    ADMIN = "admin"  # the platform operator: registers participants and topology
    ISO = "iso"
    LDC = "ldc"
    AGGREGATOR = "aggregator"
    SCADA = "scada"  # an LDC's control-room client, acting for its LDC


class ParticipantChange(StrEnum):
    """What a `participant.changed` event announces (never the credential itself)."""

    REGISTERED = "registered"
    UPDATED = "updated"
    DELETED = "deleted"
    TOKEN_ISSUED = "token_issued"  # noqa: S105 - an event name: a bearer token was issued
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - an event name


class DsoModel(StrEnum):
    DUAL_PARTICIPATION = "dual_participation"
    TOTAL = "total"
    MARKET_FACILITATOR = "market_facilitator"


class DerKind(StrEnum):
    PV = "pv"
    BATTERY = "battery"
    EV = "ev"
    LOAD = "load"
    OTHER = "other"


class InstructionKind(StrEnum):
    DISPATCH = "dispatch"
    LIMIT = "limit"
    CONNECTION = "connection"
    DEFAULT_CONTROL = "default_control"
    FUNCTION_SETTINGS = "function_settings"


class TargetKind(StrEnum):
    RESOURCE = "resource"
    CONNECTION_POINT = "connection_point"
    NODE = "node"  # a T-D interface node
    FEEDER = "feeder"
    AREA = "area"  # an LDC's whole area, including embedded LDCs below it


class AckStatus(StrEnum):
    RECEIVED = "received"
    SCHEDULED = "scheduled"
    STARTED = "started"
    COMPLETED = "completed"
    PARTIAL = "partial"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    OPTED_OUT = "opted_out"
    REJECTED = "rejected"
    CANNOT_COMPLY = "cannot_comply"


REFUSALS = frozenset({AckStatus.REJECTED, AckStatus.CANNOT_COMPLY, AckStatus.OPTED_OUT})


class Quantity(StrEnum):
    ACTIVE_POWER = "W"
    REACTIVE_POWER = "var"
    VOLTAGE = "V"
    FREQUENCY = "Hz"
    STATE_OF_CHARGE = "soc_pct"
    ENERGY = "Wh"
    CONNECTED = "connected"  # 1 connected, 0 disconnected


class LimitQuantity(StrEnum):
    EXPORT = "export_max_w"
    IMPORT = "import_max_w"
    GENERATION = "generation_max_w"
    LOAD = "load_max_w"


# --- participants and topology -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    role: Role
    name: str = ""
    dso_model: DsoModel | None = None  # LDCs only
    host_ldc_id: str | None = None  # an embedded LDC's host
    ldc_id: str | None = None  # SCADA clients: the LDC they act for
    cert_sha256: str | None = None  # platform client certificate fingerprint (lowercase hex)


@dataclass(frozen=True, slots=True)
class ConnectionPoint:
    id: str
    ldc_id: str
    td_node: str  # T-D interface node
    feeder: str = ""
    bus: str | None = None  # electrical bus in a feeder model, for simulation


@dataclass(frozen=True, slots=True)
class Nameplate:
    export_max_w: float
    import_max_w: float = 0.0
    var_max: float = 0.0
    energy_wh: float | None = None

    def __post_init__(self) -> None:
        if self.export_max_w < 0 or self.import_max_w < 0 or self.var_max < 0:
            raise ValueError("nameplate ratings are magnitudes and must be >= 0")


@dataclass(frozen=True, slots=True)
class Binding:
    """How the gateway reaches one DER: exactly one protocol (the name of the adapter that
    speaks it) and its address there."""

    protocol: str
    address: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    connection_point_id: str
    kind: DerKind
    nameplate: Nameplate
    binding: Binding
    aggregator_id: str | None = None
    online: bool | None = None  # None: nothing has connected for it yet


# --- instructions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    id: str


@dataclass(frozen=True, slots=True)
class SetpointStep:
    start: datetime
    end: datetime | None
    setpoint_w: float


@dataclass(frozen=True, slots=True)
class LimitEnvelope:
    export_max_w: float | None = None
    import_max_w: float | None = None
    generation_max_w: float | None = None
    load_max_w: float | None = None

    def items(self) -> list[tuple[LimitQuantity, float]]:
        return [(q, v) for q in LimitQuantity if (v := getattr(self, q.value)) is not None]


@dataclass(frozen=True, slots=True)
class Instruction:
    id: str
    kind: InstructionKind
    issuer_id: str
    target: Target
    start: datetime
    end: datetime | None  # None: until cancelled
    created_at: datetime
    reason: str = ""
    schedule: tuple[SetpointStep, ...] = ()  # dispatch
    limits: LimitEnvelope | None = None  # limit
    connect: bool | None = None  # connection
    energize: bool | None = None  # connection
    settings: dict[str, Any] = field(default_factory=dict)  # default control / 1547 settings
    cancelled_at: datetime | None = None
    idempotency_key: str | None = None
    seq: int = 0  # order of record: among equal created_at, the higher is newer

    def covers(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One instruction that contributed to an effective control."""

    instruction_id: str
    issuer_id: str
    kind: InstructionKind
    quantity: str  # e.g. "export_max_w", "setpoint_w", "connect"
    value: float | bool | None = None


@dataclass(slots=True)  # not frozen: built 100,000s of times per recompute; treat as immutable
class EffectiveInterval:
    start: datetime
    end: datetime | None
    export_max_w: float
    import_max_w: float
    generation_max_w: float | None = None
    load_max_w: float | None = None
    setpoint_w: float | None = None
    requested_setpoint_w: float | None = None
    connect: bool = True
    energize: bool = True
    issuer_of_record: str | None = None
    sources: tuple[Source, ...] = ()
    limited_by: tuple[str, ...] = ()  # instruction ids whose caps clipped the setpoint

    @property
    def instruction_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.instruction_id for s in self.sources))


@dataclass(frozen=True, slots=True)
class EffectiveControl:
    resource_id: str
    intervals: tuple[EffectiveInterval, ...]
    default_control: dict[str, Any] | None = None
    default_source: Source | None = None
    function_settings: dict[str, Any] | None = None
    function_source: Source | None = None

    def at(self, when: datetime) -> EffectiveInterval | None:
        for interval in self.intervals:
            if interval.start <= when and (interval.end is None or when < interval.end):
                return interval
        return None

    def next_change(self, after: datetime) -> datetime | None:
        """The first interval start or end later than `after` (None: what is in force at
        `after` stays so)."""
        edges = [t for i in self.intervals for t in (i.start, i.end)
                 if t is not None and t > after]
        return min(edges, default=None)


class NoticeKind(StrEnum):
    LIMITATION = "limitation"
    SHORTFALL = "shortfall"
    AGGREGATE = "aggregate"  # a total-DSO aggregate result without shortfall
    UNDELIVERABLE = "undeliverable"  # a DER's control in force cannot reach it


@dataclass(frozen=True, slots=True)
class LimitingInstruction:
    instruction_id: str
    issuer_id: str
    quantity: str
    reason: str


@dataclass(frozen=True, slots=True)
class LimitationNotice:
    kind: NoticeKind
    subject: Target  # the DER, or the aggregate (node/area) for total-DSO results
    start: datetime
    end: datetime | None
    requested_w: float
    effective_w: float
    dispatch_id: str
    limiting: tuple[LimitingInstruction, ...]
    recipients: tuple[str, ...]
    reason: str = ""

    @property
    def key(self) -> str:
        """Stable identity, so that recomputing the same outcome does not repeat a notice."""
        end = self.end.isoformat() if self.end else "-"
        lim = ",".join(sorted(x.instruction_id for x in self.limiting))
        return (
            f"{self.kind}|{self.subject.kind}:{self.subject.id}|{self.start.isoformat()}|{end}|"
            f"{self.dispatch_id}|{self.requested_w:.3f}|{self.effective_w:.3f}|{lim}"
        )


# --- feedback -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    resource_id: str
    status: AckStatus
    protocol: str
    protocol_status: str  # the protocol's own code or word, kept beside the canonical one
    at: datetime
    instruction_id: str | None = None
    control_ref: str | None = None  # the protocol's id of what was acknowledged (mRID, event id)
    detail: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class Reading:
    resource_id: str
    quantity: Quantity
    value: float
    at: datetime
    protocol: str
    id: int | None = None


class DeliveryState(StrEnum):
    """What the gateway knows of getting a DER's effective control to it."""

    FETCHED = "fetched"  # the DER (or its aggregator's client) read it
    DELIVERED = "delivered"  # a push or a device write succeeded
    PENDING = "pending"  # sent, no answer yet
    UNDELIVERABLE = "undeliverable"  # cannot reach it; `reason` says why


@dataclass(frozen=True, slots=True)
class DeliveryMark:
    resource_id: str
    state: DeliveryState
    reason: str = ""
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class ResourceDelivery:
    """The latest delivery state of a DER, as `GET /v1/resources/{id}` shows it."""

    state: DeliveryState
    since: datetime
    reason: str = ""
    last_fetched_at: datetime | None = None
    last_delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InstructionDraft:
    """What a party asks for, before the store gives it an id and a time of record."""

    kind: InstructionKind
    target: Target
    start: datetime
    end: datetime | None = None
    reason: str = ""
    schedule: tuple[SetpointStep, ...] = ()
    limits: LimitEnvelope | None = None
    connect: bool | None = None
    energize: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
