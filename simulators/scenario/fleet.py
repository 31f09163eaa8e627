"""The simulated DERs of a scenario and the protocol front ends in front of them.

One shared DER model per DER (simulators.der); in front of it a 2030.5 client (device or
aggregator), an OpenADR 3 VEN, or a SunSpec Modbus inverter (simulators.sunspec). Every model
sits at a feeder bus when the scenario has a feeder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from pki.devpki import DevPki
from pki.identity import lfdi as lfdi_of
from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.feeder.voltwatt import VoltWatt
from simulators.scenario.spec import FleetSpec, Scenario

BATTERY_HOURS = 2.0


@dataclass
class SimDer:
    """One simulated DER: its scenario id, the id the platform knows, its model."""

    id: str
    fleet: FleetSpec
    connection_point: str
    model: DerModel
    controlled: ControlledDer | None = None  # None: a SunSpec inverter steps its own model
    platform_id: str = ""
    binding: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.platform_id = self.platform_id or self.id

    def resource(self) -> dict[str, Any]:
        rating = self.model.rating
        return {"id": self.platform_id, "connection_point_id": self.connection_point,
                "kind": self.fleet.kind,
                "nameplate": {"export_max_w": rating.w_max,
                              "import_max_w": rating.w_cha_max if rating.battery else 0.0},
                "aggregator_id": self.fleet.aggregator,
                "binding": {"protocol": self.fleet.protocol, "address": self.binding}}


def rating(fleet: FleetSpec) -> Rating:
    if fleet.kind == "battery":
        return Rating(w_max=fleet.w_max, pv=False, w_cha_max=fleet.w_max,
                      wh_max=fleet.w_max * BATTERY_HOURS)
    return Rating(w_max=fleet.w_max)


def controlled(fleet: FleetSpec) -> ControlledDer:
    # Fast ramps so a run of a minute shows settled outputs; volt-watt at IEEE 1547 defaults.
    model = DerModel(rating(fleet), profile=Constant(fleet.available), ramp_pct_s=100.0)
    return ControlledDer(model, VoltWatt())


def fake_lfdi(der_id: str) -> str:
    """The LFDI of a DER behind an aggregator client (it has no certificate of its own)."""
    return hashlib.sha256(f"sim-der|{der_id}".encode()).hexdigest()[:40].upper()


def cert_lfdi(pki: Path, name: str) -> str:
    path = DevPki(pki).issue_2030_5_client(name)
    return lfdi_of(x509.load_pem_x509_certificate(path.read_bytes()))


def place(fleet: FleetSpec, n: int) -> str:
    return fleet.connection_points[n % len(fleet.connection_points)]


def ieee2030_5_ders(fleet: FleetSpec, pki: Path) -> tuple[list[SimDer], dict[str, list[SimDer]]]:
    """DERs of a 2030.5 fleet and, per client certificate name, the DERs it runs."""
    ders: list[SimDer] = []
    by_client: dict[str, list[SimDer]] = {}
    for n, der_id in enumerate(fleet.ids()):
        c = controlled(fleet)
        if fleet.client == "device":
            client = der_id
            lfdi = cert_lfdi(pki, client)
        else:
            client = f"{fleet.name}-aggregator"
            lfdi = fake_lfdi(der_id)
        platform_id = f"2030.5-{lfdi.lower()}" if fleet.registration == "in_band" else der_id
        der = SimDer(der_id, fleet, place(fleet, n), c.model, c, platform_id, {"lfdi": lfdi})
        ders.append(der)
        by_client.setdefault(client, []).append(der)
    return ders, by_client


def openadr3_ders(fleet: FleetSpec) -> list[SimDer]:
    ven = f"{fleet.name}-ven"
    out = []
    for n, der_id in enumerate(fleet.ids()):
        c = controlled(fleet)
        out.append(SimDer(der_id, fleet, place(fleet, n), c.model, c,
                          binding={"ven": ven, "resource": der_id}))
    return out


def build_controlled(scenario: Scenario, pki: Path
                     ) -> tuple[list[SimDer], dict[str, list[SimDer]], dict[str, list[SimDer]]]:
    """2030.5 and OpenADR DERs; (all, by 2030.5 client name, by VEN name)."""
    ders: list[SimDer] = []
    clients: dict[str, list[SimDer]] = {}
    vens: dict[str, list[SimDer]] = {}
    for fleet in scenario.fleets:
        if fleet.protocol == "ieee2030_5":
            made, by_client = ieee2030_5_ders(fleet, pki)
            clients.update(by_client)
        elif fleet.protocol == "openadr3":
            made = openadr3_ders(fleet)
            vens[f"{fleet.name}-ven"] = made
        else:
            continue
        ders += made
    return ders, clients, vens
