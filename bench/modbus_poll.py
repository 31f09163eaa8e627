"""Modbus poll-cycle benchmark: the adapter's client pool against 1,000 simulated inverters.

    python bench/modbus_poll.py [--count 1000] [--concurrency 200] [--cycles 3]

The inverters run in a separate process (`python -m simulators inverters`, 100 unit ids per
port), as in the field. Measured, each as wall time and CPU seconds of both processes:
  1. first contact: connect + SunSpec discovery + first control write (export limit) with
     read-back + 701 telemetry;
  2. telemetry cycle: 701 read of every inverter;
  3. full cycle: 701 read + 704 control refresh (read 704, write the limit and WSet runs,
     read 704 back and verify) on every inverter.
Aim: a full cycle over 1,000 inverters in under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters.modbus.settings import Settings  # noqa: E402
from adapters.modbus.sunspec.pool import DevicePool  # noqa: E402
from tests.modbus.support import RecordingSink, export_limit  # noqa: E402

UNITS_PER_PORT = 100


def free_port_block(n: int) -> int:
    """A first port such that n consecutive ports look free (best effort)."""
    for first in range(20_000, 60_000, 137):
        ok = True
        for port in range(first, first + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return first
    raise RuntimeError("no free port block")


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ports(first: int, ports: int, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    for port in range(first, first + ports):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def measure(label: str, pool: DevicePool, sim_pid: int) -> None:
    cpu0, sim0, t0 = time.process_time(), cpu_of(sim_pid), time.perf_counter()
    results = await pool.poll_cycle()
    wall = time.perf_counter() - t0
    cpu, sim = time.process_time() - cpu0, cpu_of(sim_pid) - sim0
    ok = sum(r.ok for r in results)
    print(f"{label:<34} {wall:6.2f} s wall  client CPU {cpu:5.2f} s  "
          f"simulator CPU {sim:5.2f} s  ok {ok}/{len(results)}", flush=True)


async def main(args: argparse.Namespace) -> None:
    ports = -(-args.count // UNITS_PER_PORT)
    first = free_port_block(ports)
    sim = subprocess.Popen(  # noqa: ASYNC220 - the benchmark supervises its simulator
        [sys.executable, "-m", "simulators", "inverters", "--count", str(args.count),
         "--port", str(first), "--units-per-port", str(UNITS_PER_PORT), "--tick", "1.0",
         "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        await wait_ports(first, ports)
        sink = RecordingSink()
        pool = DevicePool(sink, Settings(max_concurrency=args.concurrency, timeout_s=5.0,
                                           reversion_s=600))
        for i in range(args.count):
            rid = f"inv-{i + 1}"
            pool.upsert(rid, {"host": "127.0.0.1", "port": first + i // UNITS_PER_PORT,
                              "unit_id": 1 + i % UNITS_PER_PORT}, 10_000.0,
                        export_limit(rid, 6_000.0, f"ins-{i + 1}"))
        print(f"{args.count} inverters on ports {first}..{first + ports - 1}, "
              f"concurrency {args.concurrency}", flush=True)
        await measure("first contact (discover + control)", pool, sim.pid)
        for n in range(args.cycles):
            await measure(f"telemetry cycle (701) #{n + 1}", pool, sim.pid)
        for n in range(args.cycles):
            for dev in pool.devices.values():
                dev.written_at = -1e18  # force the 704 refresh on this pass
            await measure(f"full cycle (701 + 704) #{n + 1}", pool, sim.pid)
        acks = sum(a.status == "completed" for a in sink.acks)
        print(f"acknowledged completed: {acks}/{args.count}; readings: {len(sink.received)}")
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
