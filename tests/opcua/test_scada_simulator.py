"""The simulated SCADA operator, over the network only, steers a DER through the gateway."""

from __future__ import annotations

import asyncio

import pytest

from simulators.scada.operator import Console, connect
from tests.opcua.support import CONTROLLER, CORE_WARNINGS

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]


async def test_operator_limit_reaches_the_platform_and_clears(served):
    gw, clients = served
    console = Console(url=gw.adapter_listen("opcua"),
                      certificate=gw.pki / "opcua/clients/scada-operator.pem",
                      server_certificate=gw.pki / "opcua/server.der",
                      user=CONTROLLER["name"], password=CONTROLLER["password"],
                      policy="Aes256Sha256RsaPss")
    async with connect(console) as op:
        ders = set(await op.ders())
        assert "d1" in ders and not ders & {"d2", "d3", "d5", "d6", "d7"}  # ldc-a's area only
        instruction_id = await op.set_limit("d1", export_w=1800, duration_s=900,
                                            reason="SCADA: F-A1 overvoltage")
        status, instruction = await clients["ldc-a"].get(f"/v1/instructions/{instruction_id}")
        assert status == 200 and instruction["issuer_id"] == "ldc-a"
        assert instruction["reason"] == "SCADA: F-A1 overvoltage"
        for _ in range(100):
            snapshot = await op.snapshot("d1")
            if snapshot["Control.ExportLimitW"] == 1800.0:
                break
            await asyncio.sleep(0.05)
        assert snapshot["Control.ExportLimitW"] == 1800.0
        assert snapshot["Control.Reason"] == "SCADA: F-A1 overvoltage"
        assert await op.clear_limit("d1") == 1
        status, instruction = await clients["ldc-a"].get(f"/v1/instructions/{instruction_id}")
        assert instruction.get("cancelled_at"), instruction
