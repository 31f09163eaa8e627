"""The simulated SCADA operator, over the network only, steers a DER through the gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gateway.domain import Quantity, Reading
from simulators.scada.operator import Console, connect
from tests.opcua.conftest import wait_model_ready
from tests.opcua.support import ADMIN_VIEWER, CONTROLLER, CORE_WARNINGS
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

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



async def test_the_operator_rides_through_a_gateway_restart(tmp_path):
    """The console keeps watching across a restart of the gateway (same store, same
    endpoint): asyncua reconnects and recreates its subscriptions, the console asks for the
    alarms again, and an alarm raised by the second gateway is received and acknowledged."""
    listen = f"opc.tcp://127.0.0.1:{free_port()}"
    config = {"listen": listen, "users": [CONTROLLER, ADMIN_VIEWER], "flush_interval_ms": 50}
    values: asyncio.Queue = asyncio.Queue()
    alarms: asyncio.Queue = asyncio.Queue()
    first = gateway_in_process(tmp_path, opcua=config)
    gw = await first.__aenter__()
    try:
        await seed_platform(gw)
        await wait_model_ready(gw)
        console = Console(url=listen, certificate=gw.pki / "opcua/clients/scada-operator.pem",
                          server_certificate=gw.pki / "opcua/server.der",
                          user=CONTROLLER["name"], password=CONTROLLER["password"],
                          reconnect_max_delay_s=1.0)
        async with connect(console) as op:
            tasks = [asyncio.create_task(op.watch(
                         "d1", lambda name, value: values.put_nowait((name, value)), 120)),
                     asyncio.create_task(op.alarms(alarms.put_nowait, 120, acknowledge=True))]
            try:
                await record_power(gw, 111.0)
                await until(values, ("Measurements.W", 111.0))
                await first.__aexit__(None, None, None)
                first = None
                async with gateway_in_process(tmp_path, opcua=config) as again:
                    await record_power(again, 222.0)
                    await until(values, ("Measurements.W", 222.0), within=30)
                    await again.gateway.services.set_online_many({"d1": False})
                    alarm = await until_alarm(alarms, active=True, acked=False)
                    assert (alarm.der, alarm.name) == ("d1", "CommunicationLost")
                    await until_alarm(alarms, active=True, acked=True)  # the console did
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if first is not None:
            await first.__aexit__(None, None, None)


async def record_power(gw, watts: float) -> None:
    await gw.gateway.services.record_readings([Reading(
        "d1", Quantity.ACTIVE_POWER, watts, datetime.now(UTC), "modbus")])


async def until(queue: asyncio.Queue, wanted, within: float = 10.0) -> None:
    async def find():
        while (await queue.get()) != wanted:
            pass
    await asyncio.wait_for(find(), within)


async def until_alarm(queue: asyncio.Queue, *, active: bool, acked: bool, within: float = 30):
    async def find():
        while True:
            alarm = await queue.get()
            if alarm.active == active and alarm.acked == acked:
                return alarm
    return await asyncio.wait_for(find(), within)
