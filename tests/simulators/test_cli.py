"""`python -m simulators inverters` as a field engineer runs it: a process, a port, a summary."""

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_cli_serves_unit_ids_on_one_port_with_a_live_summary(tmp_path):
    port = free_port()
    out = tmp_path / "out.txt"
    with out.open("wb") as fh:
        proc = subprocess.Popen(  # noqa: ASYNC220 - a child we supervise
            [sys.executable, "-m", "simulators", "inverters", "--count", "3", "--port",
             str(port), "--tick", "0.2"], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0,
                                  reconnect_delay=0)
    try:
        for _ in range(100):
            if await client.connect():
                break
            await asyncio.sleep(0.1)
        for unit in (1, 2, 3):
            reply = await client.read_holding_registers(40000, count=4, device_id=unit)
            assert reply.registers == [0x5375, 0x6E53, 1, 66]
        missing = await client.read_holding_registers(40000, count=2, device_id=4)
        assert missing.isError() and missing.exception_code == 0x0B
        await asyncio.sleep(1.5)
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
    text = out.read_text()
    assert f"serving 3 inverters on 127.0.0.1 ports {port}..{port}" in text
    assert "inverters=3 connected=3" in text and "clients=1" in text


def test_cli_refuses_bad_arguments():
    result = subprocess.run([sys.executable, "-m", "simulators", "inverters", "--count", "x"],
                            cwd=ROOT, capture_output=True, check=False)
    assert result.returncode == 2 and b"invalid int value" in result.stderr
    result = subprocess.run([sys.executable, "-m", "simulators"], cwd=ROOT, capture_output=True,
                            check=False)
    assert result.returncode == 2


@pytest.mark.parametrize("units", [0, 248])
def test_fleet_refuses_impossible_unit_counts(units):
    from simulators.sunspec.fleet import FleetConfig

    with pytest.raises(ValueError):
        FleetConfig(count=1, units_per_port=units)
