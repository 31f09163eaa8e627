"""The SCADA operator's console logic, as an OPC UA client and nothing else.

It knows the gateway only as a remote OPC UA server with the documented DER model
(docs/opcua.md): namespace URI, browse names and method signatures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import (
    SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

MODEL_URI = "urn:der-gateway:opcua:der-model:1"
POLICIES = {"Basic256Sha256": SecurityPolicyBasic256Sha256,
            "Aes128Sha256RsaOaep": SecurityPolicyAes128Sha256RsaOaep,
            "Aes256Sha256RsaPss": SecurityPolicyAes256Sha256RsaPss}


@dataclass(frozen=True)
class Console:
    """Where the gateway is and who the operator is."""

    url: str
    certificate: Path  # PEM, with the key beside it (.key)
    server_certificate: Path  # the gateway's certificate (DER), pinned by the console
    user: str
    password: str
    policy: str = "Basic256Sha256"
    sign_only: bool = False

    @property
    def application_uri(self) -> str:
        return f"urn:der-gateway:opcua:client:{self.certificate.stem}"


class Operator:
    def __init__(self, client: Client, ns: int) -> None:
        self.client = client
        self.ns = ns

    def _q(self, name: str) -> str:
        return f"{self.ns}:{name}"

    async def ders(self) -> dict[str, Node]:
        """Every DER object in the fleet, by its platform id (browsing the tree)."""
        fleet = await self.client.nodes.objects.get_child(self._q("DerFleet"))
        found: dict[str, Node] = {}
        for ldc in await fleet.get_children(refs=ua.ObjectIds.Organizes):
            for cp in await ldc.get_children(refs=ua.ObjectIds.Organizes):
                if (await cp.read_browse_name()).Name == "TdNodes":
                    continue
                for der in await cp.get_children(refs=ua.ObjectIds.Organizes):
                    found[(await der.read_browse_name()).Name] = der
        return found

    async def der(self, resource_id: str) -> Node:
        ders = await self.ders()
        if resource_id not in ders:
            raise KeyError(f"no DER {resource_id!r} in the fleet")
        return ders[resource_id]

    async def snapshot(self, resource_id: str) -> dict[str, Any]:
        der = await self.der(resource_id)
        out: dict[str, Any] = {}
        for group in ("Measurements", "Control", "Acknowledgement"):
            for var in await (await der.get_child(self._q(group))).get_children():
                value = await var.read_data_value(raise_on_bad_status=False)
                name = (await var.read_browse_name()).Name
                out[f"{group}.{name}"] = (value.Value.Value if value.StatusCode.is_good()
                                          else value.StatusCode.name)
        return out

    async def set_limit(self, resource_id: str, *, export_w: float = -1.0,
                        import_w: float = -1.0, duration_s: int = 0,
                        reason: str = "SCADA operator") -> str:
        der = await self.der(resource_id)
        return await der.call_method(
            self._q("SetOperatingLimit"), ua.Variant(float(export_w), ua.VariantType.Double),
            ua.Variant(float(import_w), ua.VariantType.Double),
            ua.Variant(-1.0, ua.VariantType.Double), ua.Variant(-1.0, ua.VariantType.Double),
            ua.Variant(duration_s, ua.VariantType.UInt32), reason)

    async def clear_limit(self, resource_id: str, instruction_id: str = "") -> int:
        der = await self.der(resource_id)
        return await der.call_method(self._q("ClearOperatingLimit"), instruction_id)

    async def watch(self, resource_id: str, on_change: Callable[[str, Any], None],
                    seconds: float, deadband_w: float = 1.0) -> None:
        """Follow the DER's W and export cap, with an absolute deadband, for a while."""
        der = await self.der(resource_id)
        names = {}
        nodes = []
        for path in (("Measurements", "W"), ("Control", "ExportLimitW")):
            node = await der.get_child([self._q(p) for p in path])
            names[node.nodeid] = ".".join(path)
            nodes.append(node)

        class Handler:
            def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
                on_change(names[node.nodeid], val)

        sub = await self.client.create_subscription(200, Handler())
        for node in nodes:
            await sub.deadband_monitor(node, deadband_w, ua.DeadbandType.Absolute)
        await asyncio.sleep(seconds)
        await sub.delete()


@asynccontextmanager
async def connect(console: Console) -> AsyncIterator[Operator]:
    client = Client(console.url, timeout=10)
    client.application_uri = console.application_uri
    mode = (ua.MessageSecurityMode.Sign if console.sign_only
            else ua.MessageSecurityMode.SignAndEncrypt)
    await client.set_security(
        POLICIES[console.policy], str(console.certificate),
        uacrypto.CertProperties(str(console.certificate.with_suffix(".key")), extension="pem"),
        server_certificate=str(console.server_certificate), mode=mode)
    client.set_user(console.user)
    client.set_password(console.password)
    async with client:
        yield Operator(client, await client.get_namespace_index(MODEL_URI))
