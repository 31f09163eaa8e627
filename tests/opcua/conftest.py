"""One real gateway (platform API + OPC UA server) per test module, seeded through the API."""

from __future__ import annotations

import asyncio

import pytest_asyncio

from tests.opcua.support import ADMIN_VIEWER, CONFIG_USERS, NAMESPACE_URI, make_client
from tests.support.gateway import GatewayHandle, free_port, gateway_in_process
from tests.support.seed import seed_platform

SEEDED = {"d1": ("ldc-a", "cp-a1"), "d2": ("ldc-b", "cp-b1"), "d3": ("ldc-b", "cp-b1"),
          "d5": ("ldc-c", "cp-c1"), "d6": ("ldc-e", "cp-e1"), "d7": ("ldc-e", "cp-e1")}


async def wait_model_ready(gw: GatewayHandle, within: float = 15.0) -> None:
    """Until every seeded DER is browsable over OPC UA with its effective control."""
    async with await make_client(gw.adapter_listen("opcua"), gw.pki,
                                 user=ADMIN_VIEWER) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        deadline = asyncio.get_running_loop().time() + within
        missing = set(SEEDED)
        while missing and asyncio.get_running_loop().time() < deadline:
            for rid in sorted(missing):
                ldc, cp = SEEDED[rid]
                try:
                    node = await client.nodes.objects.get_child(
                        [f"{ns}:DerFleet", f"{ns}:{ldc}", f"{ns}:{cp}", f"{ns}:{rid}",
                         f"{ns}:Control", f"{ns}:ExportLimitW"])
                    value = await node.read_data_value(raise_on_bad_status=False)
                except Exception:  # not there yet
                    continue
                if value.StatusCode.is_good():
                    missing.discard(rid)
            await asyncio.sleep(0.05)
        assert not missing, f"DERs never appeared in the OPC UA model: {sorted(missing)}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opcua")
    listen = f"opc.tcp://127.0.0.1:{free_port()}"
    config = {"listen": listen, "users": CONFIG_USERS, "flush_interval_ms": 50}
    async with gateway_in_process(tmp, opcua=config) as gw:
        clients = await seed_platform(gw)
        await wait_model_ready(gw)
        yield gw, clients
