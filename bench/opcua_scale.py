"""The OPC UA model at fleet scale: memory per DER, start-up, and SCADA on the aggregates.

Starts the real gateway in this process, registers N DERs (through the core's services, in
batches: the platform API would only make this slower), and reports:

- the process's resident memory once the OPC UA model shows them, per DER, and what the OPC
  UA side itself holds for them (its fleet and made nodes, object by object);
- a restart on the same store: how long until every listener is up, and until the OPC UA
  model is ready (it fills in behind its listener);
- with `--aggregates-seconds S`: an asyncua client (SignAndEncrypt, another process)
  subscribed to every connection point's and T-D node's Aggregates.ActivePowerW while each
  DER reports W at `--rate-hz`; the notifications it gets and their latency, and the OPC UA
  side's CPU share. At 100,000 DERs this - not 30 variables per DER - is what one process
  serves to SCADA continuously; single DERs are read or subscribed on demand.

    python bench/opcua_scale.py --ders 100000 --aggregates-seconds 20 --rate-hz 0.1

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

USER = {"name": "bench-scada", "password": "bench-password", "role": "viewer", "ldc_id": "ldc-a"}
NS_URI = "urn:der-gateway:opcua:der-model:1"
PER_CP = 100
TD_NODES = 4


def rid(i: int) -> str:
    return f"s{i:06d}"


def rss_mb() -> float:
    """The resident set now (not the peak)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def deep_size(root: object) -> int:
    """Bytes held by `root` and everything it reaches (each object once)."""
    seen: set[int] = set()
    todo = [root]
    total = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, list | tuple | set | frozenset):
            todo += list(obj)
        elif hasattr(obj, "__dict__"):
            todo.append(vars(obj))
        if hasattr(obj, "__slots__"):
            todo += [getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name)]
    return total


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    latencies: list[float] = []

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            source = data.monitored_item.Value.SourceTimestamp.replace(tzinfo=UTC).timestamp()
            latencies.append(time.time() - source)

    async with client:
        ns = await client.get_namespace_index(NS_URI)
        groups = [f"cp/cp-{c:04d}" for c in range(max(1, args.ders // PER_CP))]
        groups += [f"ldc/ldc-a/TdNodes/N-{n}" for n in range(TD_NODES)]
        nodes = [client.get_node(ua.NodeId(f"{g}.Aggregates.ActivePowerW", ns)) for g in groups]
        sub = await client.create_subscription(100, Handler())
        await sub.subscribe_data_change(nodes, queuesize=1)
        print("subscribed", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # measuring
        latencies.clear()
        await asyncio.to_thread(sys.stdin.readline)  # done
        await sub.delete()
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(1000 * lat[int(p * (len(lat) - 1))], 1) if lat else None
    print(json.dumps({"aggregate_variables": len(nodes), "notifications": len(lat),
                      "latency_ms_p50": pct(0.5), "latency_ms_p99": pct(0.99)}), flush=True)


# --- the gateway side --------------------------------------------------------------------------


async def register(gw, ders: int) -> None:
    from gateway.domain import Binding, DerKind, Nameplate, Resource
    from tests.support.gateway import PlatformClient

    admin = PlatformClient(gw.platform_url, gw.pki, "admin")
    await admin.ok("POST", "/v1/participants",
                   [{"id": "ldc-a", "role": "ldc", "dso_model": "dual_participation"}])
    cps = [{"id": f"cp-{c:04d}", "ldc_id": "ldc-a", "td_node": f"N-{c % TD_NODES}",
            "feeder": f"F-{c}"} for c in range(max(1, ders // PER_CP))]
    for start in range(0, len(cps), 1000):
        await admin.ok("POST", "/v1/connection-points", cps[start:start + 1000])
    services = gw.gateway.services
    actor = await services.participant("admin")
    for start in range(0, ders, 5000):
        await services.register_resources(actor, [
            Resource(rid(i), cps[i % len(cps)]["id"], DerKind.PV, Nameplate(5000.0),
                     Binding("modbus", {"host": "127.0.0.1", "port": 10_000 + i // 200,
                                        "unit_id": i % 200 + 1}), online=True)
            for i in range(start, min(ders, start + 5000))])


async def wait_model(gw, ders: int) -> None:
    adapter = gw.gateway.adapters["opcua"]
    while not adapter.ready or len(adapter.fleet.ders) < ders:  # noqa: ASYNC110 - polling
        await asyncio.sleep(0.1)


async def publish_readings(gw, args: argparse.Namespace, seconds: float) -> None:
    """W of every DER at `rate_hz`, in ten slices a second, on the gateway's event log."""
    from gateway.bus import Event, Topic

    period = max(1, round(1 / args.rate_hz))
    next_id, tick, end = 10**12, 0, time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        due = [i for i in range(args.ders) if (i + tick) % period == 0]
        per_slice = -(-len(due) // 10)
        for s in range(10):
            at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            for i in due[s * per_slice:(s + 1) * per_slice]:
                next_id += 1
                await gw.gateway.bus.publish(Event(next_id, Topic.READING, {
                    "resource_id": rid(i), "quantity": "W", "value": 1000.0 + (i + tick) % 7,
                    "at": at, "protocol": "modbus", "id": next_id}))
            await asyncio.sleep(max(0.0, start + (s + 1) / 10 - time.monotonic()))
        tick += 1


async def aggregates(gw, args: argparse.Namespace, listen: str) -> dict:
    child = subprocess.Popen(  # noqa: ASYNC220 - a child we supervise
        [sys.executable, __file__, "--client", "--url", listen, "--pki", str(gw.pki),
         "--ders", str(args.ders)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    assert (await asyncio.to_thread(child.stdout.readline)).strip() == "subscribed"
    await publish_readings(gw, args, 3)  # warm-up
    child.stdin.write("measure\n")
    child.stdin.flush()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await publish_readings(gw, args, args.aggregates_seconds)
    share = (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    child.stdin.write("done\n")
    child.stdin.flush()
    result = json.loads(await asyncio.to_thread(child.stdout.readline))
    await asyncio.to_thread(child.wait)
    return {**result, "readings_per_s": round(args.ders * args.rate_hz),
            "process_cpu_share_pct_incl_publisher": round(100 * share, 1)}


async def gateway_side(args: argparse.Namespace) -> dict:
    from gateway import heap
    from tests.support.gateway import free_port, gateway_in_process

    tmp = Path(tempfile.mkdtemp(prefix="opcua-scale-"))
    listen = f"opc.tcp://127.0.0.1:{free_port()}"
    base = rss_mb()
    opcua = {"listen": listen, "users": [USER]}
    out: dict = {"ders": args.ders}
    async with gateway_in_process(tmp, opcua=opcua) as gw:
        heap.configure()
        t0 = time.perf_counter()
        await register(gw, args.ders)
        out["register_s"] = round(time.perf_counter() - t0, 1)
        await wait_model(gw, args.ders)
        out["registered_to_model_s"] = round(time.perf_counter() - t0 - out["register_s"], 1)
        gc.collect()
        rss = rss_mb()
        adapter = gw.gateway.adapters["opcua"]
        held = deep_size(adapter.fleet) + deep_size(adapter.space.nodes.cache) \
            + deep_size(adapter.space.nodes.pinned)  # what the OPC UA side holds for the fleet
        out["opcua_fleet_kb_per_der"] = round(held / 1024 / args.ders, 2)
        out |= {"rss_mb": round(rss), "rss_kb_per_der": round(1024 * rss / args.ders, 1),
                "rss_over_empty_kb_per_der": round(1024 * (rss - base) / args.ders, 1)}
        if args.aggregates_seconds:
            out["aggregates"] = await aggregates(gw, args, listen)
    t0 = time.perf_counter()
    async with gateway_in_process(tmp, opcua=opcua) as gw:  # a restart
        out["restart_listeners_s"] = round(time.perf_counter() - t0, 1)
        await wait_model(gw, args.ders)
        out["restart_model_ready_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ders", type=int, default=20_000)
    parser.add_argument("--aggregates-seconds", type=int, default=0)
    parser.add_argument("--rate-hz", type=float, default=0.1)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(scada(args))
        return
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(asyncio.run(gateway_side(args)), indent=2))


if __name__ == "__main__":
    main()
