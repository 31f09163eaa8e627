"""A small platform topology for tests, registered through the platform API."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import GatewayHandle, PlatformClient

PARTICIPANTS = [
    {"id": "iso", "role": "iso", "name": "IESO"},
    {"id": "ldc-a", "role": "ldc", "dso_model": "dual_participation"},
    {"id": "ldc-b", "role": "ldc", "dso_model": "total"},
    {"id": "ldc-c", "role": "ldc", "dso_model": "market_facilitator"},
    {"id": "ldc-h", "role": "ldc", "dso_model": "dual_participation"},
    {"id": "ldc-e", "role": "ldc", "dso_model": "dual_participation", "host_ldc_id": "ldc-h"},
    {"id": "agg-x", "role": "aggregator"},
    {"id": "agg-y", "role": "aggregator"},
]
CONNECTION_POINTS = [
    {"id": "cp-a1", "ldc_id": "ldc-a", "td_node": "N-A", "feeder": "F-A1"},
    {"id": "cp-b1", "ldc_id": "ldc-b", "td_node": "N-B", "feeder": "F-B1"},
    {"id": "cp-c1", "ldc_id": "ldc-c", "td_node": "N-C", "feeder": "F-C1"},
    {"id": "cp-e1", "ldc_id": "ldc-e", "td_node": "N-H", "feeder": "F-E1"},
]


def modbus_der(rid: str, cp: str, export_w: float, agg: str = "agg-x", unit: int = 1,
               import_w: float = 0.0) -> dict[str, Any]:
    return {"id": rid, "connection_point_id": cp, "kind": "battery" if import_w else "pv",
            "nameplate": {"export_max_w": export_w, "import_max_w": import_w},
            "binding": {"protocol": "modbus",
                        "address": {"host": "127.0.0.1", "port": 1502, "unit_id": unit}},
            "aggregator_id": agg}


async def seed_platform(gw: GatewayHandle, resources: list[dict[str, Any]] | None = None
                        ) -> dict[str, PlatformClient]:
    """Register the participants (each with its own platform certificate) and topology."""
    admin = gw.client("admin")
    clients = {p["id"]: gw.client(p["id"]) for p in PARTICIPANTS}
    body = [{**p, "cert_sha256": _sha(clients[p["id"]])} for p in PARTICIPANTS]
    await admin.ok("POST", "/v1/participants", body)
    await admin.ok("POST", "/v1/connection-points", CONNECTION_POINTS)
    if resources is None:
        resources = [modbus_der("d1", "cp-a1", 10_000, unit=1),
                     modbus_der("d2", "cp-b1", 10_000, unit=2),
                     modbus_der("d3", "cp-b1", 5_000, unit=3),
                     modbus_der("d5", "cp-c1", 8_000, unit=5, agg="agg-y"),
                     modbus_der("d6", "cp-e1", 10_000, unit=6),
                     modbus_der("d7", "cp-e1", 5_000, unit=7)]
    if resources:
        await admin.ok("POST", "/v1/resources", resources)
    clients["admin"] = admin
    return clients


def _sha(client: PlatformClient) -> str:
    from cryptography import x509

    from pki.identity import sha256_hex

    assert client.cert is not None
    return sha256_hex(x509.load_pem_x509_certificate(client.cert.read_bytes()))
