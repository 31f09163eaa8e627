"""The scenario file (TOML) as typed, checked data. Pure: no I/O beyond reading the file.

    name, description, duration_s
    [feeder]            network, source_pu, load_scale, band, step_s, der_scale
    [rates]             ieee2030_5_poll_s, ieee2030_5_post_s, ven_poll_s, ven_report_s
    [[ldc]]             id, dso_model, host (embedded under a host LDC)
    [[aggregator]]      id
    [[connection_point]] id, ldc, td_node, feeder, bus
    [[fleet]]           name, protocol, count, kind, w_max, available, aggregator,
                        connection_points, client ("device" | "aggregator"), registration
                        ("out_of_band" | "in_band"), subscribe
    [[scada]]           id, ldc (an OPC UA operator acting for its LDC)
    [[timeline]]        at_s, by, kind, target, duration_s, limits, setpoint_w, connect,
                        energize, settings, reason, check (expect the fleet to follow)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROTOCOLS = ("ieee2030_5", "openadr3", "modbus")
KINDS = ("pv", "battery")
INSTRUCTION_KINDS = ("dispatch", "limit", "connection", "default_control", "function_settings")
STEP_KINDS = (*INSTRUCTION_KINDS, "scada_limit", "cancel", "frequency")


class ScenarioError(ValueError):
    """The scenario file is not usable; the message says where."""


@dataclass(frozen=True)
class FeederSpec:
    network: str = "cigre_lv"
    source_pu: float = 1.0
    load_scale: float = 1.0
    band: tuple[float, float] = (0.94, 1.10)
    step_s: float = 1.0
    der_scale: float = 1.0


@dataclass(frozen=True)
class Rates:
    ieee2030_5_poll_s: int = 2
    ieee2030_5_post_s: int = 10
    ven_poll_s: float = 2.0
    ven_report_s: float = 10.0
    modbus_poll_s: float = 1.0


@dataclass(frozen=True)
class Ldc:
    id: str
    dso_model: str
    host: str | None = None


@dataclass(frozen=True)
class ConnectionPointSpec:
    id: str
    ldc: str
    td_node: str
    feeder: str = ""
    bus: str | None = None


@dataclass(frozen=True)
class FleetSpec:
    name: str
    protocol: str
    count: int
    aggregator: str
    connection_points: tuple[str, ...]
    kind: str = "pv"
    w_max: float = 10_000.0
    available: float = 0.8
    client: str = "aggregator"  # ieee2030_5: "device" (a certificate each) or "aggregator"
    registration: str = "out_of_band"
    subscribe: bool = False

    def ids(self) -> list[str]:
        return [f"{self.name}-{n + 1}" for n in range(self.count)]


@dataclass(frozen=True)
class ScadaSpec:
    id: str
    ldc: str


@dataclass(frozen=True)
class Step:
    at_s: float
    by: str  # the participant issuing it
    kind: str
    target: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = 3600.0
    body: dict[str, Any] = field(default_factory=dict)  # limits, setpoint_w, connect, ...
    reason: str = ""
    check: bool = True
    label: str = ""

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        if self.kind == "cancel":  # its target is the instruction it names
            return f"{self.by} cancel {self.body.get('instruction', '?')}"
        if self.kind == "frequency":
            return f"frequency {self.body.get('hz', '?')} Hz"
        return f"{self.by} {self.kind} {self.target.get('kind', '?')}:{self.target.get('id', '?')}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    feeder: FeederSpec | None
    rates: Rates
    ldcs: tuple[Ldc, ...]
    aggregators: tuple[str, ...]
    connection_points: tuple[ConnectionPointSpec, ...]
    fleets: tuple[FleetSpec, ...]
    scada: tuple[ScadaSpec, ...]
    timeline: tuple[Step, ...]

    @property
    def der_count(self) -> int:
        return sum(f.count for f in self.fleets)

    def protocols(self) -> set[str]:
        return {f.protocol for f in self.fleets}


def _take(table: dict[str, Any], cls: type, where: str, **extra: Any) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        return cls(**{**table, **extra})
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


STEP_KEYS = {"at_s", "by", "kind", "target", "duration_s", "reason", "check", "label"}


def _step(raw: dict[str, Any], n: int) -> Step:
    where = f"timeline[{n}]"
    if raw.get("kind") not in STEP_KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(STEP_KINDS)}")
    if "at_s" not in raw or "by" not in raw:
        raise ScenarioError(f"{where}: at_s and by are required")
    body = {k: v for k, v in raw.items() if k not in STEP_KEYS}
    plain = {k: v for k, v in raw.items() if k in STEP_KEYS}
    return Step(**plain, body=body)


def _fleet(raw: dict[str, Any], n: int) -> FleetSpec:
    where = f"fleet[{n}]"
    raw = {**raw, "connection_points": tuple(raw.get("connection_points", ()))}
    fleet = _take(raw, FleetSpec, where)
    checks = [
        (fleet.protocol in PROTOCOLS, f"protocol must be one of {', '.join(PROTOCOLS)}"),
        (fleet.kind in KINDS, f"kind must be one of {', '.join(KINDS)}"),
        (fleet.count >= 1, "count must be >= 1"),
        (fleet.w_max > 0, "w_max must be > 0"),
        (bool(fleet.connection_points), "connection_points must name at least one"),
        (fleet.client in ("device", "aggregator"), "client must be device or aggregator"),
        (fleet.registration in ("out_of_band", "in_band"),
         "registration must be out_of_band or in_band"),
    ]
    for ok, message in checks:
        if not ok:
            raise ScenarioError(f"{where}: {message}")
    assert isinstance(fleet, FleetSpec)
    return fleet


def parse(doc: dict[str, Any]) -> Scenario:
    feeder = None
    if "feeder" in doc:
        raw = dict(doc["feeder"])
        if "band" in raw:
            raw["band"] = tuple(raw["band"])
        feeder = _take(raw, FeederSpec, "feeder")
    scenario = Scenario(
        name=str(doc.get("name", "scenario")),
        description=str(doc.get("description", "")),
        duration_s=float(doc.get("duration_s", 60.0)),
        feeder=feeder,
        rates=_take(doc.get("rates", {}), Rates, "rates"),
        ldcs=tuple(_take(x, Ldc, f"ldc[{n}]") for n, x in enumerate(doc.get("ldc", []))),
        aggregators=tuple(str(x["id"]) for x in doc.get("aggregator", [])),
        connection_points=tuple(_take(x, ConnectionPointSpec, f"connection_point[{n}]")
                                for n, x in enumerate(doc.get("connection_point", []))),
        fleets=tuple(_fleet(x, n) for n, x in enumerate(doc.get("fleet", []))),
        scada=tuple(_take(x, ScadaSpec, f"scada[{n}]") for n, x in enumerate(doc.get("scada", []))),
        timeline=tuple(sorted((_step(x, n) for n, x in enumerate(doc.get("timeline", []))),
                              key=lambda s: s.at_s)),
    )
    _cross_check(scenario)
    return scenario


def _cross_check(s: Scenario) -> None:
    ldcs = {x.id for x in s.ldcs}
    cps = {x.id for x in s.connection_points}
    parties = ldcs | set(s.aggregators) | {x.id for x in s.scada} | {"iso", "admin"}
    problems = [f"ldc {x.id}: host {x.host!r} is not an LDC" for x in s.ldcs
                if x.host and x.host not in ldcs]
    problems += [f"connection_point {x.id}: ldc {x.ldc!r} unknown" for x in s.connection_points
                 if x.ldc not in ldcs]
    for f in s.fleets:
        problems += [f"fleet {f.name}: connection point {c!r} unknown"
                     for c in f.connection_points if c not in cps]
        if f.aggregator not in s.aggregators:
            problems.append(f"fleet {f.name}: aggregator {f.aggregator!r} unknown")
    problems += [f"timeline at {x.at_s}s: {x.by!r} is not a participant" for x in s.timeline
                 if x.by not in parties]
    names = [f.name for f in s.fleets]
    if len(set(names)) != len(names):
        problems.append("fleet names must be unique")
    if problems:
        raise ScenarioError("; ".join(problems))


def load(path: Path) -> Scenario:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    return parse(doc)
