"""Helpers for the OPC UA tests: asyncua clients with dev-PKI certificates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.common.subscription import DataChangeNotif
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import (
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

# Deprecation warnings raised inside the core (gateway/), reported to the lead; ignored here
# so that these tests check the OPC UA server rather than the core's library upgrades.
CORE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:shutdown_timeout should be set:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]
NAMESPACE_URI = "urn:der-gateway:opcua:der-model:1"
CONTROLLER = {"name": "op-ctl", "password": "controller-pass-1", "role": "controller",
              "ldc_id": "ldc-a"}
VIEWER = {"name": "op-view", "password": "viewer-pass-1", "role": "viewer", "ldc_id": "ldc-a"}
# Users seeing other areas: ldc-b's own, the host ldc-h (sees embedded ldc-e), the whole fleet
# (acting for the admin participant), and nothing (acting for an aggregator).
VIEWER_B = {"name": "op-view-b", "password": "viewer-b-pass-1", "role": "viewer",
            "ldc_id": "ldc-b"}
HOST_VIEWER = {"name": "op-host", "password": "host-pass-1", "role": "viewer", "ldc_id": "ldc-h"}
ADMIN_VIEWER = {"name": "op-admin", "password": "admin-pass-1", "role": "viewer",
                "ldc_id": "admin"}
AGGREGATOR_VIEWER = {"name": "op-agg", "password": "agg-pass-1", "role": "viewer",
                     "ldc_id": "agg-x"}
# Configured for a SCADA participant that the platform registers only later (in a test).
LATE_VIEWER = {"name": "op-late", "password": "late-pass-1", "role": "viewer",
               "ldc_id": "scada-late"}
CONFIG_USERS = [CONTROLLER, VIEWER, VIEWER_B, HOST_VIEWER, ADMIN_VIEWER, AGGREGATOR_VIEWER,
                LATE_VIEWER]
POLICIES = {
    "Basic256Sha256": SecurityPolicyBasic256Sha256,
    "Aes128Sha256RsaOaep": SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": SecurityPolicyAes256Sha256RsaPss,
}


async def make_client(url: str, pki: Path, *, cert: Path | None = None,
                      user: dict | None = CONTROLLER, policy: str = "Basic256Sha256",
                      mode: ua.MessageSecurityMode = ua.MessageSecurityMode.SignAndEncrypt,
                      app_uri: str | None = None) -> Client:
    """A client with certificate `cert` (default: the dev PKI's scada-operator)."""
    cert = cert or pki / "opcua/clients/scada-operator.pem"
    client = Client(url, timeout=10)
    client.application_uri = app_uri or f"urn:der-gateway:opcua:client:{cert.stem}"
    key = uacrypto.CertProperties(str(cert.with_suffix(".key")), extension="pem")
    await client.set_security(POLICIES[policy], str(cert), key,
                              server_certificate=str(pki / "opcua/server.der"), mode=mode)
    if user is not None:
        client.set_user(user["name"])
        client.set_password(user["password"])
    return client


def connect_encrypted(gw, user):
    """A client of the gateway's OPC UA server as `user`, SignAndEncrypt."""
    return make_client(gw.adapter_listen("opcua"), gw.pki, user=user,
                       mode=ua.MessageSecurityMode.SignAndEncrypt)


async def wait_for(predicate, within: float = 10.0):
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


class Collector:
    def __init__(self) -> None:
        self.values: asyncio.Queue = asyncio.Queue()

    def datachange_notification(self, node, val, data: DataChangeNotif) -> None:
        self.values.put_nowait(val)


async def opcua_ready(gw, within: float = 30.0) -> None:
    """Until the OPC UA model shows the store (its listener opens before that)."""
    adapter = gw.gateway.adapters["opcua"]

    async def ready():
        return adapter.ready
    await wait_for(ready, within)


def _window() -> dict[str, str]:
    """A window in force now and for the test's life (instructions far in the past or
    future are refused)."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    return {"start": (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
            "end": (now + timedelta(days=1)).isoformat().replace("+00:00", "Z")}


WINDOW = _window()
