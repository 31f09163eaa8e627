"""The coordination engine (rules 1-8 of shared/design/coordination.md).

`coordinate()` takes the topology and the active instructions and returns one effective
control per DER plus the notices that the outcome calls for. It is pure and deterministic:
the same inputs give the same output, which is what lets the store diff and the tests check.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import NamedTuple

from gateway.coordination.rules import (
    DISAGGREGATION_RULES,
    GROUP_CAP_RULES,
    DisaggregationRule,
    GroupCapRule,
)
from gateway.coordination.topology import Topology
from gateway.domain import (
    DsoModel,
    EffectiveControl,
    EffectiveInterval,
    Instruction,
    InstructionKind,
    LimitationNotice,
    LimitingInstruction,
    LimitQuantity,
    NoticeKind,
    Role,
    Source,
    Target,
    TargetKind,
)

FOREVER = datetime.max.replace(tzinfo=UTC)
EPS_W = 1e-6
_IMPORT_SIDE = (LimitQuantity.IMPORT, LimitQuantity.LOAD)


@dataclass(slots=True)
class Contribution:
    """One instruction's effect on one DER over [start, end)."""

    instruction: Instruction
    quantity: str
    value: float
    start: datetime
    end: datetime
    key: tuple[str, str, str, str]  # (issuer, target kind, target id, quantity): rule 3
    connect: bool | None = None
    energize: bool | None = None
    source: Source | None = None

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.instruction.created_at, self.instruction.seq)

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


@dataclass(slots=True)
class CapState:
    export_max_w: float
    import_max_w: float
    generation_max_w: float | None
    load_max_w: float | None
    connect: bool
    energize: bool
    winners: list[Contribution]

    @property
    def upper(self) -> float:
        if not (self.connect and self.energize):
            return 0.0
        gen = self.generation_max_w
        return self.export_max_w if gen is None else min(self.export_max_w, gen)

    @property
    def lower(self) -> float:
        if not (self.connect and self.energize):
            return 0.0
        load = self.load_max_w
        return -(self.import_max_w if load is None else min(self.import_max_w, load))


class Ledger:
    """Everything that applies to one DER. A plain slotted class: 100,000s are built per run."""

    __slots__ = ("_states", "caps", "connections", "dispatches", "export_w", "import_w",
                 "resource_id")

    def __init__(self, resource_id: str, export_w: float, import_w: float) -> None:
        self.resource_id = resource_id
        self.export_w = export_w
        self.import_w = import_w
        self.caps: list[Contribution] = []
        self.connections: list[Contribution] = []
        self.dispatches: list[Contribution] = []
        self._states: dict[datetime, CapState] = {}

    def cap_breakpoints(self) -> set[datetime]:
        points: set[datetime] = set()
        for c in (*self.caps, *self.connections):
            points.add(c.start)
            points.add(c.end)
        return points

    def caps_at(self, at: datetime) -> CapState:
        """The range at `at` (memoised: disaggregation and evaluation ask the same times)."""
        state = self._states.get(at)
        if state is None:
            state = self._states[at] = self._caps_at(at)
        return state

    def _caps_at(self, at: datetime) -> CapState:
        if not self.caps and not self.connections:
            return _unconstrained(self.export_w, self.import_w)
        winners = _newest_per_key(c for c in self.caps if c.covers(at))
        state = CapState(self.export_w, self.import_w, None, None, True, True, winners)
        for c in winners:
            match c.quantity:
                case LimitQuantity.EXPORT:
                    state.export_max_w = min(state.export_max_w, c.value)
                case LimitQuantity.IMPORT:
                    state.import_max_w = min(state.import_max_w, c.value)
                case LimitQuantity.GENERATION:
                    g = state.generation_max_w
                    state.generation_max_w = c.value if g is None else min(g, c.value)
                case LimitQuantity.LOAD:
                    ld = state.load_max_w
                    state.load_max_w = c.value if ld is None else min(ld, c.value)
        for c in _newest_per_key(c for c in self.connections if c.covers(at)):
            state.winners.append(c)
            # The most restrictive wins: any party's disconnect disconnects (rule 7).
            state.connect = state.connect and c.connect is not False
            state.energize = state.energize and c.energize is not False
        return state

    def dispatch_at(self, at: datetime) -> Contribution | None:
        covering = [c for c in self.dispatches if c.covers(at)]
        return max(covering, key=lambda c: c.order) if covering else None


@lru_cache(maxsize=4096)
def _unconstrained(export_w: float, import_w: float) -> CapState:
    """The nameplate range: shared by every DER with these ratings and no caps (read-only)."""
    return CapState(export_w, import_w, None, None, True, True, [])


def _newest_per_key(contributions: Iterable[Contribution]) -> list[Contribution]:
    items = list(contributions)
    if len(items) < 2:
        return items
    best: dict[tuple[str, str, str, str], Contribution] = {}
    for c in items:
        held = best.get(c.key)
        if held is None or c.order > held.order:
            best[c.key] = c
    return list(best.values())


@dataclass(frozen=True)
class CoordinationResult:
    controls: dict[str, EffectiveControl]
    notices: list[LimitationNotice]


# What one instruction contributes to one DER, hashable: DERs with equal ratings, owner,
# LDC, online state and contributions form one *class*: everything below is computed once
# per class, then shared by its members. (Named tuples: they hash like the plain tuples they
# replaced - a recompute hashes every DER's parts. Parts of different kinds never compare
# equal in practice: each names its instruction, and an instruction has one kind.)


class CapPart(NamedTuple):
    """A limit: this DER's share of a cap on `quantity` (W)."""

    instruction_id: str
    quantity: str
    share_w: float


class ConnectionPart(NamedTuple):
    instruction_id: str


class StepPart(NamedTuple):
    """Step number `step` of a dispatch schedule addressed to this DER alone."""

    instruction_id: str
    step: int


class GroupPart(NamedTuple):
    """A dispatch on a group this DER belongs to; `refused`: this DER refused it."""

    instruction_id: str
    refused: bool


class StandingPart(NamedTuple):
    """A default control or function settings."""

    instruction_id: str


Part = CapPart | ConnectionPart | StepPart | GroupPart | StandingPart


@dataclass
class _Class:
    members: list[str]
    ledger: Ledger
    online: bool
    groups: dict[str, bool] = field(default_factory=dict)  # group dispatch id -> refused
    standing: list[Instruction] = field(default_factory=list)


@dataclass
class Coordinator:
    """Holds the pluggable rules; `coordinate()` does the work."""

    group_cap_rule: GroupCapRule = GROUP_CAP_RULES["nameplate"]
    disaggregation_rule: DisaggregationRule = DISAGGREGATION_RULES["headroom"]

    @classmethod
    def from_names(cls, group_cap: str, disaggregation: str) -> Coordinator:
        return cls(GROUP_CAP_RULES[group_cap], DISAGGREGATION_RULES[disaggregation])

    def coordinate(
        self,
        topology: Topology,
        instructions: Iterable[Instruction],
        *,
        now: datetime,
        scope: Collection[str] | None = None,
        refusals: Collection[tuple[str, str]] = (),
    ) -> CoordinationResult:
        """Effective controls for every DER in `scope` (default: all) from `instructions`."""
        in_scope = topology.resources.keys() if scope is None else set(scope)
        live = {i.id: i for i in instructions
                if i.cancelled_at is None and (i.end or FOREVER) > now}
        parts: dict[str, list[Part]] = {rid: [] for rid in topology.resources if rid in in_scope}
        groups: list[Instruction] = []
        refused = set(refusals)
        for ins in live.values():
            ders = [rid for rid in topology.resolve(ins.target) if rid in parts]
            if ders:
                self._apply(topology, ins, ders, parts, groups, refused)
        classes = _classes(topology, parts, live)
        notices: list[LimitationNotice] = []
        for ins in groups:
            members = [c for c in classes if ins.id in c.groups]
            notices.extend(self._disaggregate(topology, ins, members, now))
        controls: dict[str, EffectiveControl] = {}
        for cls in classes:
            intervals, class_notices = _evaluate(topology, cls.ledger, now)
            template = _with_standing(cls.ledger.resource_id, tuple(intervals), cls.standing, now)
            for rid in cls.members:
                controls[rid] = replace(template, resource_id=rid)
                subject = Target(TargetKind.RESOURCE, rid)
                notices.extend(replace(n, subject=subject) for n in class_notices)
        return CoordinationResult(controls, notices)

    def _apply(
        self, topology: Topology, ins: Instruction, ders: list[str],
        parts: dict[str, list[Part]], groups: list[Instruction], refused: set[tuple[str, str]],
    ) -> None:
        match ins.kind:
            case InstructionKind.LIMIT:
                for quantity, shares in self._cap_shares(topology, ins, ders):
                    for rid, share in shares.items():
                        parts[rid].append(CapPart(ins.id, quantity, share))
            case InstructionKind.CONNECTION:
                for rid in ders:
                    parts[rid].append(ConnectionPart(ins.id))
            case InstructionKind.DISPATCH if ins.target.kind is TargetKind.RESOURCE:
                for index in range(len(ins.schedule)):
                    parts[ders[0]].append(StepPart(ins.id, index))
            case InstructionKind.DISPATCH:
                groups.append(ins)
                for rid in ders:
                    parts[rid].append(GroupPart(ins.id, (ins.id, rid) in refused))
            case _:
                for rid in ders:
                    parts[rid].append(StandingPart(ins.id))

    def _cap_shares(
        self, topology: Topology, ins: Instruction, ders: list[str]
    ) -> Iterator[tuple[str, dict[str, float]]]:
        """Rule 5: a cap on a group is shared among its DERs (default: by nameplate)."""
        assert ins.limits is not None
        group = ins.target.kind is not TargetKind.RESOURCE and len(ders) > 1
        for quantity, cap in ins.limits.items():
            if not group:
                yield quantity.value, dict.fromkeys(ders, cap)
                continue
            import_side = quantity in _IMPORT_SIDE
            plates = (topology.resources[rid].nameplate for rid in ders)
            weights = {rid: (n.import_max_w if import_side else n.export_max_w)
                       for rid, n in zip(ders, plates, strict=True)}
            yield quantity.value, self.group_cap_rule(cap, weights)

    def _disaggregate(
        self, topology: Topology, ins: Instruction, members: list[_Class], now: datetime
    ) -> list[LimitationNotice]:
        """Rule 6: share an aggregate dispatch among the online DERs below, by headroom."""
        notices: list[LimitationNotice] = []
        for step in ins.schedule:
            end = step.end or ins.end or FOREVER
            points = {step.start, end}
            for cls in members:
                points.update(p for p in cls.ledger.cap_breakpoints() if step.start < p < end)
            edges = sorted(points)
            for start, stop in itertools.pairwise(edges):
                if stop > now:
                    notices.append(self._allocate(topology, ins, step.setpoint_w, members,
                                                  start, stop))
        return notices

    def _allocate(
        self, topology: Topology, ins: Instruction, amount: float, members: list[_Class],
        start: datetime, stop: datetime,
    ) -> LimitationNotice:
        sign = 1.0 if amount >= 0 else -1.0
        headroom: dict[int, tuple[float, int]] = {}
        limiting: dict[str, LimitingInstruction] = {}
        offline = refusing = 0
        for index, cls in enumerate(members):
            if not cls.online:
                offline += len(cls.members)
                continue
            if cls.groups[ins.id]:
                refusing += len(cls.members)
                continue
            ledger = cls.ledger
            state = ledger.caps_at(start)
            room = state.upper if sign > 0 else -state.lower
            plate = ledger.export_w if sign > 0 else ledger.import_w
            headroom[index] = (room if room > 0.0 else 0.0, len(cls.members))
            if room < plate - EPS_W:
                for c in state.winners:
                    limiting[c.instruction.id] = _limiting(c)
        allocation = self.disaggregation_rule(abs(amount), headroom)
        key = (ins.issuer_id, ins.target.kind.value, ins.target.id, "setpoint_w")
        placed = 0.0
        for index, value in allocation.items():
            members[index].ledger.dispatches.append(
                Contribution(ins, "setpoint_w", sign * value, start, stop, key))
            placed += sign * value * headroom[index][1]
        shortfall = abs(amount - placed) > 1e-3
        reasons = [f"{len(limiting)} limiting instruction(s)"] if limiting else []
        reasons += [f"{offline} DER(s) offline"] if offline else []
        reasons += [f"{refusing} DER(s) refusing"] if refusing else []
        ldcs = sorted(topology.target_ldcs(ins.target))
        recipients = [ins.issuer_id, *ldcs]
        for ldc in ldcs:
            recipients.extend(topology.hosts_of(ldc))
        return LimitationNotice(
            kind=NoticeKind.SHORTFALL if shortfall else NoticeKind.AGGREGATE,
            subject=ins.target,
            start=start,
            end=None if stop == FOREVER else stop,
            requested_w=amount,
            effective_w=placed,
            dispatch_id=ins.id,
            limiting=tuple(limiting.values()) if shortfall else (),
            recipients=tuple(dict.fromkeys(recipients)),
            reason="; ".join(reasons) if shortfall else "",
        )


def _classes(
    topology: Topology, parts: dict[str, list[Part]], live: dict[str, Instruction]
) -> list[_Class]:
    """Group DERs that must end up with the same control; build one ledger per group."""
    by_key: dict[tuple[object, ...], _Class] = {}
    resources = topology.resources
    for rid, applied in parts.items():
        r = resources[rid]
        ldc = topology.ldc_of(rid)
        # A DER nothing has connected for yet (online None) counts as available until an
        # adapter says it is offline: registration precedes the first contact.
        available = r.online is not False
        key = (r.nameplate.export_max_w, r.nameplate.import_max_w, r.aggregator_id,
               ldc.id if ldc else None, available, tuple(applied))
        cls = by_key.get(key)
        if cls is None:
            by_key[key] = _new_class(rid, r.nameplate.export_max_w, r.nameplate.import_max_w,
                                     available, applied, live)
        else:
            cls.members.append(rid)
    return list(by_key.values())


def _new_class(
    rid: str, export_w: float, import_w: float, online: bool, applied: list[Part],
    live: dict[str, Instruction],
) -> _Class:
    cls = _Class([rid], Ledger(rid, export_w, import_w), online)
    ledger = cls.ledger
    for part in applied:
        ins = live[part.instruction_id]
        match part:
            case CapPart(quantity=quantity, share_w=share):
                ledger.caps.append(_contribution(ins, quantity, share))
            case ConnectionPart():
                ledger.connections.append(_contribution(ins, "connection", 0.0))
            case StepPart(step=number):
                step = ins.schedule[number]
                ledger.dispatches.append(_contribution(ins, "setpoint_w", step.setpoint_w,
                                                       step.start, step.end))
            case GroupPart(refused=refused):
                cls.groups[ins.id] = refused
            case StandingPart():
                cls.standing.append(ins)
    return cls


def _contribution(
    ins: Instruction,
    quantity: str,
    value: float,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Contribution:
    return Contribution(
        instruction=ins,
        quantity=quantity,
        value=value,
        start=start or ins.start,
        end=end or ins.end or FOREVER,
        key=(ins.issuer_id, ins.target.kind.value, ins.target.id, quantity),
        connect=ins.connect,
        energize=ins.energize,
    )


def _limiting(c: Contribution) -> LimitingInstruction:
    return LimitingInstruction(c.instruction.id, c.instruction.issuer_id, c.quantity,
                               c.instruction.reason)


def _source(c: Contribution) -> Source:
    if c.source is None:
        value: float | bool | None = c.value
        if c.quantity == "connection":
            value = bool(c.connect is not False and c.energize is not False)
        c.source = Source(c.instruction.id, c.instruction.issuer_id, c.instruction.kind,
                          c.quantity, value)
    return c.source


def _evaluate(
    topology: Topology, ledger: Ledger, now: datetime
) -> tuple[list[EffectiveInterval], list[LimitationNotice]]:
    points = ledger.cap_breakpoints()
    for c in ledger.dispatches:
        points.add(c.start)
        points.add(c.end)
    edges = sorted(points)
    intervals: list[EffectiveInterval] = []
    notices: list[LimitationNotice] = []
    for start, stop in itertools.pairwise(edges):
        if stop <= now:
            continue
        state = ledger.caps_at(start)
        dispatch = ledger.dispatch_at(start)
        if not state.winners and dispatch is None:
            continue
        interval, notice = _interval(topology, ledger, state, dispatch, start, stop)
        if intervals and _same(intervals[-1], interval):
            intervals[-1] = _extend(intervals[-1], interval.end)
        else:
            intervals.append(interval)
        if notice is not None:
            if notices and _continues(notices[-1], notice):
                notices[-1] = _extend_notice(notices[-1], notice.end)
            else:
                notices.append(notice)
    return intervals, notices


def _interval(
    topology: Topology,
    ledger: Ledger,
    state: CapState,
    dispatch: Contribution | None,
    start: datetime,
    stop: datetime,
) -> tuple[EffectiveInterval, LimitationNotice | None]:
    upper, lower = state.upper, state.lower
    sources = [_source(c) for c in state.winners]
    setpoint = requested = None
    limited: list[Contribution] = []
    issuer = None
    if dispatch is not None:
        sources.append(_source(dispatch))
        requested = dispatch.value
        setpoint = min(max(requested, lower), upper)
        issuer = dispatch.instruction.issuer_id
        ldc = topology.ldc_of(ledger.resource_id)
        dispatcher = topology.participants.get(issuer)
        if ldc and ldc.dso_model is DsoModel.MARKET_FACILITATOR and dispatcher and (
            dispatcher.role is Role.ISO
        ):
            issuer = ldc.id  # the MF-DSO relays the ISO's dispatch as issuer of record
        if abs(setpoint - requested) > EPS_W:
            limited = _binding(state, setpoint, above=requested > setpoint)
    elif state.winners:
        issuer = state.winners[0].instruction.issuer_id
    end = None if stop == FOREVER else stop
    disconnected = not (state.connect and state.energize)
    interval = EffectiveInterval(
        start=start,
        end=end,
        export_max_w=0.0 if disconnected else state.export_max_w,
        import_max_w=0.0 if disconnected else state.import_max_w,
        generation_max_w=state.generation_max_w,
        load_max_w=state.load_max_w,
        setpoint_w=setpoint,
        requested_setpoint_w=requested,
        connect=state.connect,
        energize=state.energize,
        issuer_of_record=issuer,
        sources=tuple(sources),
        limited_by=tuple(dict.fromkeys(c.instruction.id for c in limited)),
    )
    notice = None
    if dispatch is not None and setpoint is not None and requested is not None and (
        abs(setpoint - requested) > EPS_W
    ):
        notice = _der_notice(topology, ledger.resource_id, dispatch, limited, start, end,
                             requested, setpoint)
    return interval, notice


def _binding(state: CapState, bound: float, *, above: bool) -> list[Contribution]:
    """The winning instructions whose cap equals the bound that clipped the setpoint."""
    out = []
    for c in state.winners:
        if c.quantity == "connection":
            if not (state.connect and state.energize) and (c.connect is False or
                                                           c.energize is False):
                out.append(c)
            continue
        import_side = c.quantity in _IMPORT_SIDE
        if above != import_side and abs(abs(bound) - c.value) <= EPS_W:
            out.append(c)
    return out


def _der_notice(
    topology: Topology,
    rid: str,
    dispatch: Contribution,
    limited: list[Contribution],
    start: datetime,
    end: datetime | None,
    requested: float,
    effective: float,
) -> LimitationNotice:
    """Rule 8: the DER's aggregator, the dispatcher, and (embedded) its LDC and hosts."""
    resource = topology.resources[rid]
    ldc = topology.ldc_of(rid)
    recipients = [resource.aggregator_id] if resource.aggregator_id else []
    recipients.append(dispatch.instruction.issuer_id)
    if ldc is not None and ldc.host_ldc_id:
        recipients.append(ldc.id)
        recipients.extend(topology.hosts_of(ldc.id))
    limiting = tuple(_limiting(c) for c in limited)
    reason = "; ".join(x.reason for x in limiting if x.reason) or (
        "nameplate rating" if not limiting else ""
    )
    return LimitationNotice(
        kind=NoticeKind.LIMITATION,
        subject=Target(TargetKind.RESOURCE, rid),
        start=start,
        end=end,
        requested_w=requested,
        effective_w=effective,
        dispatch_id=dispatch.instruction.id,
        limiting=limiting,
        recipients=tuple(dict.fromkeys(r for r in recipients if r)),
        reason=reason,
    )


def _same(a: EffectiveInterval, b: EffectiveInterval) -> bool:
    return a.end == b.start and (
        a.export_max_w, a.import_max_w, a.generation_max_w, a.load_max_w, a.setpoint_w,
        a.requested_setpoint_w, a.connect, a.energize, a.issuer_of_record, a.sources,
        a.limited_by,
    ) == (
        b.export_max_w, b.import_max_w, b.generation_max_w, b.load_max_w, b.setpoint_w,
        b.requested_setpoint_w, b.connect, b.energize, b.issuer_of_record, b.sources,
        b.limited_by,
    )


def _extend(a: EffectiveInterval, end: datetime | None) -> EffectiveInterval:
    return replace(a, end=end)


def _continues(a: LimitationNotice, b: LimitationNotice) -> bool:
    return a.end == b.start and (a.requested_w, a.effective_w, a.dispatch_id, a.limiting) == (
        b.requested_w, b.effective_w, b.dispatch_id, b.limiting)


def _extend_notice(a: LimitationNotice, end: datetime | None) -> LimitationNotice:
    return replace(a, end=end)


def _with_standing(
    rid: str, intervals: tuple[EffectiveInterval, ...], standing: Iterable[Instruction],
    now: datetime,
) -> EffectiveControl:
    """Default (failsafe) control and 1547 settings: the newest standing instruction of each."""
    newest: dict[InstructionKind, Instruction] = {}
    for ins in standing:
        if ins.start > now and ins.kind in newest:
            continue
        held = newest.get(ins.kind)
        if held is None or (ins.created_at, ins.seq) > (held.created_at, held.seq):
            newest[ins.kind] = ins
    default = newest.get(InstructionKind.DEFAULT_CONTROL)
    function = newest.get(InstructionKind.FUNCTION_SETTINGS)

    def source(ins: Instruction | None, quantity: str) -> Source | None:
        return Source(ins.id, ins.issuer_id, ins.kind, quantity) if ins else None

    return EffectiveControl(
        resource_id=rid,
        intervals=intervals,
        default_control=dict(default.settings) if default else None,
        default_source=source(default, "default_control"),
        function_settings=dict(function.settings) if function else None,
        function_source=source(function, "function_settings"),
    )
