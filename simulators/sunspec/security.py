"""Modbus/TCP Security for the simulated inverters: TLS with client certificates and roles.

The files are the dev PKI's `modbus/` family (server.pem/.key, ca.pem); made with plain
`ssl` so that the simulator, an outside party, needs nothing from the gateway core.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from simulators.sunspec.server import DEFAULT_WRITE_ROLES, Security


def security_from_pki(
    pki_dir: Path, write_roles: frozenset[str] = DEFAULT_WRITE_ROLES
) -> Security:
    modbus = pki_dir / "modbus"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(modbus / "server.pem", modbus / "server.key")
    ctx.load_verify_locations(cafile=modbus / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # Modbus/TCP Security: mutual authentication
    return Security(ctx, write_roles)
