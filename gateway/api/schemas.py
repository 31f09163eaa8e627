"""Request bodies of the platform API (pydantic), converted to domain types at the edge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from cryptography import x509
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gateway.domain import (
    Binding,
    ConnectionPoint,
    DerKind,
    DsoModel,
    InstructionDraft,
    InstructionKind,
    LimitEnvelope,
    Nameplate,
    Participant,
    Resource,
    Role,
    SetpointStep,
    Target,
    TargetKind,
    require_utc,
)
from pki.identity import sha256_hex

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")]
Watts = Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)]
SignedWatts = Annotated[float, Field(ge=-1e10, le=1e10, allow_inf_nan=False)]
MAX_BULK = 10_000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ParticipantIn(Strict):
    id: Id
    role: Role
    name: str = Field(default="", max_length=256)
    dso_model: DsoModel | None = None
    host_ldc_id: Id | None = None
    ldc_id: Id | None = None
    cert_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    certificate_pem: str | None = Field(default=None, max_length=16_384)

    def to_domain(self) -> Participant:
        fingerprint = self.cert_sha256.lower() if self.cert_sha256 else None
        if self.certificate_pem:
            try:
                cert = x509.load_pem_x509_certificate(self.certificate_pem.encode())
            except ValueError as exc:
                raise ValueError("certificate_pem is not a PEM certificate") from exc
            fingerprint = sha256_hex(cert)
        return Participant(self.id, self.role, self.name, self.dso_model, self.host_ldc_id,
                           self.ldc_id, fingerprint)


class ConnectionPointIn(Strict):
    id: Id
    ldc_id: Id
    td_node: Id
    feeder: str = Field(default="", max_length=128)
    bus: str | None = Field(default=None, max_length=128)

    def to_domain(self) -> ConnectionPoint:
        return ConnectionPoint(self.id, self.ldc_id, self.td_node, self.feeder, self.bus)


class NameplateIn(Strict):
    export_max_w: Watts
    import_max_w: Watts = 0.0
    var_max: Watts = 0.0
    energy_wh: Watts | None = None


class BindingIn(Strict):
    model_config = ConfigDict(extra="forbid")
    # The name of the adapter that speaks it (the installed ones: gateway.bindings checks).
    protocol: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    address: dict[str, Any] = Field(default_factory=dict)


class ResourceIn(Strict):
    id: Id
    connection_point_id: Id
    kind: DerKind
    nameplate: NameplateIn
    binding: BindingIn
    aggregator_id: Id | None = None

    def to_domain(self) -> Resource:
        n = self.nameplate
        return Resource(self.id, self.connection_point_id, self.kind,
                        Nameplate(n.export_max_w, n.import_max_w, n.var_max, n.energy_wh),
                        Binding(self.binding.protocol, dict(self.binding.address)),
                        self.aggregator_id)


class TargetIn(Strict):
    kind: TargetKind
    id: Id


class StepIn(Strict):
    start: AwareDatetime
    end: AwareDatetime | None = None
    setpoint_w: SignedWatts | None = None
    setpoint_pct: Annotated[float, Field(ge=-100, le=100)] | None = None

    @model_validator(mode="after")
    def _one_value(self) -> StepIn:
        if (self.setpoint_w is None) == (self.setpoint_pct is None):
            raise ValueError("give exactly one of setpoint_w and setpoint_pct")
        return self


class LimitsIn(Strict):
    export_max_w: Watts | None = None
    import_max_w: Watts | None = None
    generation_max_w: Watts | None = None
    load_max_w: Watts | None = None


class InstructionIn(Strict):
    kind: InstructionKind
    target: TargetIn
    start: AwareDatetime
    end: AwareDatetime | None = None
    reason: str = Field(default="", max_length=1024)
    schedule: list[StepIn] = Field(default_factory=list, max_length=1000)
    setpoint_w: SignedWatts | None = None  # shorthand: one step over the whole window
    limits: LimitsIn | None = None
    connect: bool | None = None
    energize: bool | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    def to_domain(self, rating_w: float | None) -> InstructionDraft:
        """`rating_w`: the target's export rating, to turn percentages into watts."""
        start, end = require_utc(self.start), require_utc(self.end) if self.end else None
        steps = list(self.schedule)
        if self.setpoint_w is not None:
            steps.append(StepIn(start=start, end=end, setpoint_w=self.setpoint_w))
        schedule = []
        for step in steps:
            watts = step.setpoint_w
            if watts is None:
                if rating_w is None:
                    raise ValueError("setpoint_pct needs a target with a known rating")
                watts = rating_w * (step.setpoint_pct or 0.0) / 100.0
            schedule.append(SetpointStep(require_utc(step.start),
                                         require_utc(step.end) if step.end else end, watts))
        limits = LimitEnvelope(**self.limits.model_dump()) if self.limits else None
        return InstructionDraft(self.kind, Target(self.target.kind, self.target.id), start, end,
                                self.reason, tuple(schedule), limits, self.connect,
                                self.energize, dict(self.settings))


class TokenIn(Strict):
    ttl_days: Annotated[int, Field(ge=1, le=366)] = 90  # bounded: no token lives forever


Bulk = Literal["single", "list"]
