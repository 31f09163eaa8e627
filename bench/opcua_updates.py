"""OPC UA server under load: N DER variables updating at 1 Hz, one SCADA subscription to all.

Starts the real gateway in this process (platform API, store, bus, OPC UA adapter), registers
DERS resources through the platform API, then publishes one READING event per variable per
second on the gateway's bus (what the outbox relay does for readings that DER adapters
record). A SCADA client in a child process subscribes to every variable over
Basic256Sha256/SignAndEncrypt and measures notification latency (receive time minus the
reading's source timestamp, same host clock). This process measures its own CPU share.

    python bench/opcua_updates.py                    # 2,000 DERs x 5 variables = 10,000
    python bench/opcua_updates.py --ders 10000 --quantities W --seconds 20

Prints one JSON object; with --out also writes it there (bench/results/ is git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUANTITIES = {"W": "W", "var": "var", "V": "V", "Hz": "Hz", "soc_pct": "SoC"}
USER = {"name": "bench-scada", "password": "bench-password", "role": "viewer", "ldc_id": "ldc-a"}
NS_URI = "urn:der-gateway:opcua:der-model:1"


def rid(i: int) -> str:
    return f"b{i:05d}"


def value_of(quantity: str, i: int, tick: int) -> float:
    """Values that change every second by more than the client's deadband."""
    base = {"W": 1000.0, "var": 100.0, "V": 230.0, "Hz": 50.0, "soc_pct": 50.0}[quantity]
    return base + ((i + tick) % 7) * 1.5


# --- the SCADA side (child process) ----------------------------------------------------------


async def scada(args: argparse.Namespace) -> None:
    from asyncua import Client, ua
    from asyncua.crypto import uacrypto
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    pki = Path(args.pki)
    cert = pki / "opcua/clients/scada-operator.pem"
    client = Client(args.url, timeout=60)
    client.application_uri = "urn:der-gateway:opcua:client:scada-operator"
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(cert),
        uacrypto.CertProperties(str(cert.with_suffix(".key")), extension="pem"),
        server_certificate=str(pki / "opcua/server.der"),
        mode=ua.MessageSecurityMode.SignAndEncrypt)
    client.set_user(USER["name"])
    client.set_password(USER["password"])
    received: list[tuple[float, float]] = []  # (source time, latency), every notification

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            source = data.monitored_item.Value.SourceTimestamp.replace(tzinfo=UTC).timestamp()
            received.append((source, time.time() - source))

        def status_change_notification(self, status) -> None:
            print(json.dumps({"status_change": str(status)}), file=sys.stderr)

    async with client:
        ns = await client.get_namespace_index(NS_URI)
        nodes = [client.get_node(ua.NodeId(f"der/{rid(i)}.Measurements.{QUANTITIES[q]}", ns))
                 for i in range(args.ders) for q in args.quantities]
        sub = await client.create_subscription(args.publishing_ms, Handler())
        for start in range(0, len(nodes), 2000):
            await sub.subscribe_data_change(nodes[start:start + 2000], queuesize=1)
        print("subscribed", flush=True)
        cpu0 = time.process_time()
        # the gateway says which readings it published while measuring: "<first> <last>",
        # the source times of its first and last slice
        line = await asyncio.to_thread(sys.stdin.readline)
        first, last = (float(x) for x in line.split())
        await asyncio.sleep(args.grace)  # what is still on its way
        client_cpu = time.process_time() - cpu0
        await sub.delete()
    lat = sorted(latency for source, latency in received if first - 1e-3 <= source <= last + 1e-3)
    expected = len(nodes) * args.seconds

    def pct(p: float) -> float | None:
        return round(1000 * lat[int(p * (len(lat) - 1))], 1) if lat else None
    print(json.dumps({
        "published_while_measuring": expected,
        "notifications": len(lat),
        "delivered_pct": round(100 * len(lat) / expected, 2),
        "notifications_per_s": round(len(lat) / args.seconds, 1),
        "latency_ms_p50": pct(0.5), "latency_ms_p95": pct(0.95), "latency_ms_p99": pct(0.99),
        "latency_ms_max": round(1000 * lat[-1], 1) if lat else None,
        "scada_client_cpu_share_pct": round(
            100 * client_cpu / (args.seconds + args.warmup + args.grace), 1),
    }), flush=True)


# --- the gateway side --------------------------------------------------------------------------


async def register(gw, ders: int) -> None:
    from tests.support.gateway import PlatformClient

    admin = PlatformClient(gw.platform_url, gw.pki, "admin")
    await admin.ok("POST", "/v1/participants",
                   [{"id": "ldc-a", "role": "ldc", "dso_model": "dual_participation"}])
    cps = [{"id": f"cp-{c:03d}", "ldc_id": "ldc-a", "td_node": f"N-{c % 4}",
            "feeder": f"F-{c}"} for c in range(max(1, ders // 100))]
    await admin.ok("POST", "/v1/connection-points", cps)
    resources = [{"id": rid(i), "connection_point_id": cps[i % len(cps)]["id"], "kind": "pv",
                  "nameplate": {"export_max_w": 5000},
                  "binding": {"protocol": "modbus", "address": {
                      "host": "127.0.0.1", "port": 10_000 + i // 200, "unit_id": i % 200 + 1}}}
                 for i in range(ders)]
    for start in range(0, ders, 1000):
        await admin.ok("POST", "/v1/resources", resources[start:start + 1000])


async def publish_second(bus, args: argparse.Namespace, tick: int,
                         next_id: int) -> tuple[int, float, list[float]]:
    """One second of readings in ten even slices; returns the time spent publishing and
    each slice's source time."""
    from gateway.bus import Event, Topic

    total = args.ders * len(args.quantities)
    per_slice = -(-total // 10)
    start, busy, times = time.monotonic(), 0.0, []
    flat = [(i, q) for i in range(args.ders) for q in args.quantities]
    for s in range(10):
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        times.append(now.timestamp())
        at = now.isoformat().replace("+00:00", "Z")
        for i, q in flat[s * per_slice:(s + 1) * per_slice]:
            next_id += 1
            await bus.publish(Event(next_id, Topic.READING, {
                "resource_id": rid(i), "quantity": q, "value": value_of(q, i, tick), "at": at,
                "protocol": "modbus", "id": next_id}))
        busy += time.perf_counter() - t0  # bus.publish never awaits: this is our own work
        await asyncio.sleep(max(0.0, start + (s + 1) / 10 - time.monotonic()))
    return next_id, busy, times


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def gateway_side(args: argparse.Namespace) -> dict:
    from tests.support.gateway import free_port, gateway_in_process

    tmp = Path(tempfile.mkdtemp(prefix="opcua-bench-"))
    listen = f"opc.tcp://127.0.0.1:{free_port()}"
    config = {"listen": listen, "users": [USER], "flush_interval_ms": args.flush_ms}
    async with gateway_in_process(tmp, opcua=config) as gw:
        if args.gc == "serve":  # the collector as `der-gateway serve` sets it
            from gateway import heap
            heap.configure()
        t0 = time.perf_counter()
        await register(gw, args.ders)
        adapter = gw.gateway.adapters["opcua"]
        while len(adapter.fleet.ders) < args.ders:  # noqa: ASYNC110 - polling the adapter
            await asyncio.sleep(0.2)
        model_s = time.perf_counter() - t0
        # what the process costs with nothing to publish (the core's own loops included)
        idle_cpu0, idle_wall0 = cpu_seconds(), time.perf_counter()
        await asyncio.sleep(3)
        idle = (cpu_seconds() - idle_cpu0) / (time.perf_counter() - idle_wall0)
        child = subprocess.Popen(  # noqa: ASYNC220 - a child we supervise
            [sys.executable, __file__, "--client", "--url", listen, "--pki", str(gw.pki),
             "--ders", str(args.ders), "--quantities", *args.quantities,
             "--seconds", str(args.seconds), "--warmup", str(args.warmup),
             "--grace", str(args.grace),
             "--publishing-ms", str(args.publishing_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == "subscribed", line
        bus, tick, next_id = gw.gateway.bus, 0, 10**12
        end_warmup = time.monotonic() + args.warmup
        while time.monotonic() < end_warmup:
            next_id, _, _ = await publish_second(bus, args, tick, next_id)
            tick += 1
        profiler = cProfile.Profile() if args.profile else None
        cpu0, wall0, publishing = cpu_seconds(), time.perf_counter(), 0.0
        if profiler is not None:
            profiler.enable()
        window: list[float] = []
        for _ in range(args.seconds):
            next_id, busy, times = await publish_second(bus, args, tick, next_id)
            publishing += busy
            window += times
            tick += 1
        cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        assert child.stdin is not None
        child.stdin.write(f"{window[0]} {window[-1]}\n")
        child.stdin.flush()
        grace_end = time.monotonic() + args.grace + 1
        while time.monotonic() < grace_end:  # keep the values coming meanwhile
            next_id, _, _ = await publish_second(bus, args, tick, next_id)
            tick += 1
        result = json.loads(await asyncio.to_thread(child.stdout.readline))
        await asyncio.to_thread(child.wait)
        return {
            "ders": args.ders, "variables": args.ders * len(args.quantities),
            "update_hz": 1, "flush_interval_ms": args.flush_ms, "gc": args.gc,
            "publishing_interval_ms": args.publishing_ms, "seconds": args.seconds,
            "model_build_s": round(model_s, 1),
            "gateway_cpu_share_pct": round(100 * cpu / wall, 1),
            "of_which_bench_publisher_pct": round(100 * publishing / wall, 1),
            "opcua_cpu_share_pct": round(100 * (cpu - publishing) / wall, 1),
            "idle_cpu_share_pct": round(100 * idle, 1),
            "opcua_net_of_idle_pct": round(100 * ((cpu - publishing) / wall - idle), 1),
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "bus_resyncs": adapter.resync_count,
            **result, "cpu_count": os.cpu_count(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ders", type=int, default=2000)
    parser.add_argument("--quantities", nargs="+", default=list(QUANTITIES),
                        choices=list(QUANTITIES))
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--grace", type=int, default=3,
                        help="seconds after the window in which late notifications count")
    parser.add_argument("--flush-ms", type=int, default=100)
    parser.add_argument("--publishing-ms", type=int, default=100)
    parser.add_argument("--gc", choices=("serve", "default"), default="serve",
                        help="the garbage collector as `der-gateway serve` sets it, or "
                             "CPython's defaults")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--profile", type=Path,
                        help="cProfile the gateway side while measuring (slows it down)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(scada(args))
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(gateway_side(args))
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
