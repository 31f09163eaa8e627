"""Registering a scenario's topology and fleet through the platform API, as its parties would:
the admin registers participants, connection points and DERs; aggregators provision their VEN
credentials; the admin grants 2030.5 aggregator certificates and sets poll and post rates; an
LDC provisions its SCADA operator's OPC UA account."""

from __future__ import annotations

import secrets
from typing import Any

from simulators.scenario.fleet import SimDer, cert_lfdi
from simulators.scenario.platform import Platform
from simulators.scenario.spec import Scenario

CHUNK = 2_000  # DERs per bulk registration request


async def register_parties(platform: Platform, scenario: Scenario) -> None:
    parties: list[dict[str, Any]] = [{"id": "iso", "role": "iso", "name": "ISO"}]
    hosts_first = sorted(scenario.ldcs, key=lambda x: x.host is not None)
    parties += [{"id": x.id, "role": "ldc", "dso_model": x.dso_model,
                 **({"host_ldc_id": x.host} if x.host else {})} for x in hosts_first]
    parties += [{"id": a, "role": "aggregator"} for a in scenario.aggregators]
    parties += [{"id": s.id, "role": "scada", "ldc_id": s.ldc} for s in scenario.scada]
    for p in parties:
        p["cert_sha256"] = platform.fingerprint(p["id"])
    await platform.ok("admin", "POST", "/v1/participants", parties)
    await platform.ok("admin", "POST", "/v1/connection-points", [
        {"id": c.id, "ldc_id": c.ldc, "td_node": c.td_node, "feeder": c.feeder,
         **({"bus": c.bus} if c.bus else {})} for c in scenario.connection_points])


async def register_ders(platform: Platform, ders: list[SimDer]) -> None:
    """Out-of-band registration (in-band 2030.5 DERs register themselves)."""
    bodies = [d.resource() for d in ders if d.fleet.registration != "in_band"]
    for n in range(0, len(bodies), CHUNK):
        await platform.ok("admin", "POST", "/v1/resources", bodies[n:n + CHUNK])


async def grant_aggregator_clients(platform: Platform, clients: dict[str, list[SimDer]]) -> None:
    for name, ders in clients.items():
        fleet = ders[0].fleet
        if fleet.client != "aggregator":
            continue
        lfdi = cert_lfdi(platform.pki, name)
        await platform.ok("admin", "PUT", f"/v1/adapters/ieee2030_5/clients/{lfdi}",
                          {"aggregator_id": fleet.aggregator})


async def set_ieee2030_5_rates(platform: Platform, poll_s: int, post_s: int) -> None:
    for resource in ("DERProgramList", "FunctionSetAssignmentsList", "EndDeviceList"):
        await platform.ok("admin", "PUT", "/v1/adapters/ieee2030_5/rates/poll",
                          {"resource": resource, "seconds": poll_s})
    await platform.ok("admin", "PUT", "/v1/adapters/ieee2030_5/rates/post",
                      {"resource": "MirrorUsagePoint", "seconds": post_s})


async def provision_ven(platform: Platform, ven: str, aggregator: str) -> dict[str, Any]:
    made: dict[str, Any] = await platform.ok(
        aggregator, "POST", "/v1/adapters/openadr3/credentials", {"role": "ven", "ven_name": ven})
    return made


async def provision_operator(platform: Platform, scada_id: str, ldc: str) -> tuple[str, str]:
    """An OPC UA controller account for the SCADA participant, made by its LDC."""
    password = secrets.token_urlsafe(18)
    await platform.ok(ldc, "PUT", f"/v1/adapters/opcua/users/{scada_id}",
                      {"password": password, "role": "controller", "ldc_id": scada_id})
    return scada_id, password
