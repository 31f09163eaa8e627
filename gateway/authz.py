"""Who may do what, where: roles and areas (least privilege per participant)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.coordination.topology import Topology
from gateway.domain import (
    DsoModel,
    Instruction,
    InstructionDraft,
    InstructionKind,
    Participant,
    Role,
    Target,
    TargetKind,
)
from gateway.errors import Forbidden, NotFound, Unprocessable

ISSUABLE: dict[Role, frozenset[InstructionKind]] = {
    Role.ISO: frozenset({InstructionKind.DISPATCH, InstructionKind.LIMIT}),
    Role.LDC: frozenset(InstructionKind),
}
AGGREGATE_TARGETS = frozenset({TargetKind.NODE, TargetKind.AREA, TargetKind.FEEDER})


def acting_as(actor: Participant, topology: Topology) -> Participant:
    """A SCADA client issues on its LDC's authority; everyone else as themselves."""
    if actor.role is Role.SCADA:
        ldc = topology.participants.get(actor.ldc_id or "")
        if ldc is None or ldc.role is not Role.LDC:
            raise Forbidden("this SCADA client is not attached to an LDC")
        return ldc
    return actor


def check_instruction(issuer: Participant, draft: InstructionDraft, topology: Topology) -> None:
    allowed = ISSUABLE.get(issuer.role, frozenset())
    if draft.kind not in allowed:
        raise Forbidden(f"a participant with role {issuer.role.value} may not issue "
                        f"{draft.kind.value} instructions")
    if not topology.target_exists(draft.target):
        raise NotFound(f"no {draft.target.kind.value} {draft.target.id!r}")
    ldcs = topology.target_ldcs(draft.target)
    if issuer.role is Role.LDC:
        area = set(topology.area_ldcs(issuer.id))
        outside = ldcs - area
        if outside or not ldcs:
            raise Forbidden(f"LDC {issuer.id} may act only in its own area and below it")
    if issuer.role is Role.ISO and draft.kind is InstructionKind.DISPATCH:
        for ldc_id in ldcs:
            ldc = topology.participants[ldc_id]
            if ldc.dso_model is DsoModel.TOTAL and draft.target.kind not in AGGREGATE_TARGETS:
                raise Unprocessable(
                    f"LDC {ldc_id} is a total DSO: the ISO dispatches its aggregate at a T-D "
                    "interface node (target kind 'node' or 'area'), not individual DERs")


def area_of(actor: Participant, topology: Topology) -> set[str] | None:
    """DER ids a participant may see, or None for everything (admin, ISO)."""
    if actor.role in {Role.ADMIN, Role.ISO}:
        return None
    if actor.role is Role.AGGREGATOR:
        return {rid for rid, r in topology.resources.items() if r.aggregator_id == actor.id}
    ldc_id = actor.ldc_id if actor.role is Role.SCADA else actor.id
    if not ldc_id:
        return set()
    return set(topology.resolve(Target(TargetKind.AREA, ldc_id)))


def instruction_visible(who: Participant, ins: Instruction, area: set[str] | None,
                        resolved: list[str]) -> bool:
    """Whether `who` may see an instruction: its issuer (a SCADA client: its LDC's), and
    whoever sees a DER it targets (`area`: area_of(who); `resolved`: the DERs it targets)."""
    if area is None or ins.issuer_id == who.id or ins.issuer_id == who.ldc_id:
        return True
    return any(rid in area for rid in resolved)


def sees_participant(viewer: Participant, participant_id: str, topology: Topology) -> bool:
    """Whether `viewer` is told that participant `participant_id` was registered.

    The admin: everyone. Everyone: itself. The ISO: LDCs and aggregators, its counterparties
    (not the LDCs' SCADA clients). An LDC, and a SCADA client as its LDC: the LDCs of its area
    (itself and those embedded below it) and their SCADA clients. An aggregator: itself only.
    """
    if viewer.role is Role.ADMIN or viewer.id == participant_id:
        return True
    subject = topology.participants.get(participant_id)
    if subject is None:
        return False
    if viewer.role is Role.ISO:
        return subject.role in {Role.LDC, Role.AGGREGATOR}
    if viewer.role not in {Role.LDC, Role.SCADA} or subject.role not in {Role.LDC, Role.SCADA}:
        return False
    ldc_id = viewer.ldc_id if viewer.role is Role.SCADA else viewer.id
    owner = subject.ldc_id if subject.role is Role.SCADA else subject.id
    if not ldc_id or not owner:
        return False
    return owner in topology.area_ldcs(ldc_id)


@dataclass(frozen=True, slots=True)
class Concern:
    """What one call reads or changes, for the area check: DER ids and participant ids."""

    resources: frozenset[str] = frozenset()
    participants: frozenset[str] = frozenset()


def governs(actor: Participant, participant_id: str, topology: Topology) -> bool:
    """Whether `actor` may act on or for participant `participant_id`: the admin for
    everyone; everyone for itself; an LDC (a SCADA client as its LDC) for the LDCs of its
    area and their SCADA clients."""
    if actor.role is Role.ADMIN or actor.id == participant_id:
        return True
    if actor.role not in {Role.LDC, Role.SCADA}:
        return False
    subject = topology.participants.get(participant_id)
    ldc_id = actor.ldc_id if actor.role is Role.SCADA else actor.id
    if subject is None or not ldc_id:
        return False
    owner = subject.ldc_id if subject.role is Role.SCADA else (
        subject.id if subject.role is Role.LDC else None)
    return owner is not None and owner in topology.area_ldcs(ldc_id)


def check_concern(actor: Participant, concern: Concern, topology: Topology) -> None:
    """Every DER named must be in the actor's area (else it does not exist for them) and
    every participant one the actor governs."""
    area = area_of(actor, topology)
    for rid in sorted(concern.resources):
        if rid not in topology.resources or (area is not None and rid not in area):
            raise NotFound(f"no resource {rid!r} in your view")
    for pid in sorted(concern.participants):
        if not governs(actor, pid, topology):
            raise Forbidden(f"{actor.id} may not act on or for participant {pid!r}")
