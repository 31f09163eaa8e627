"""IEEE 2030.5 server benchmark, on loopback with real mutual TLS.

1. Polling: N concurrent clients (default 100), each on its own keep-alive mTLS connection,
   GET a DER's DERControlList, ActiveDERControlList and DefaultDERControl round-robin from
   `der-gateway serve`; requests/s and p50/p99 per document. Then the same load against a
   bare aiohttp server answering the same bytes with the same TLS settings, in the same run,
   as the ceiling: the served/bare ratio of requests/s and of p99 per document.
2. Fan-out: D EndDevices (default 10,000) of one aggregator, each with a subscription to its
   DERControlList whose notificationURI is a local receiver; one platform limit on their
   connection point; time until every notification has arrived, and how many were lost.

    python bench/ieee2030_5_poll.py [--clients 100] [--requests 50] [--devices 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from pki.tls import client_context, ieee2030_5_server_context
from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import seed_platform

CT = {"Content-Type": "application/sep+xml"}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def client_ssl(pki: Path, name: str):
    base = pki / "ieee2030_5"
    return client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                          base / f"clients/{name}.key", ieee2030_5=True)


def fake_lfdi(n: int) -> str:
    return hashlib.sha256(f"bench-der-{n}".encode()).hexdigest()[:40].upper()


def der(rid: str, lfdi: str, sfdi: int) -> dict:
    return {"id": rid, "connection_point_id": "cp-a1", "kind": "pv",
            "nameplate": {"export_max_w": 10_000},
            "binding": {"protocol": "ieee2030_5", "address": {"lfdi": lfdi, "sfdi": sfdi}},
            "aggregator_id": "agg-x"}


async def limit(clients, target: dict, watts: float) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    status, body = await clients["ldc-a"].post("/v1/instructions", {
        "kind": "limit", "target": target, "start": iso(now - timedelta(minutes=1)),
        "end": iso(now + timedelta(hours=1)), "limits": {"export_max_w": watts},
        "reason": "bench"})
    assert status == 201, body


# --- 1. polling -------------------------------------------------------------------------------

DOCS = ("derc", "actderc", "dderc")  # DERControlList, ActiveDERControlList, DefaultDERControl


async def load(url: str, paths: list[str], ssl_ctx, clients: int, requests: int) -> dict:
    """Each client on its own keep-alive connection GETs the paths round-robin."""
    latencies: dict[str, list[float]] = {p: [] for p in paths}
    errors = 0

    async def one_client(offset: int) -> None:
        nonlocal errors
        connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=1)
        async with aiohttp.ClientSession(url, connector=connector) as http:
            for n in range(requests):
                path = paths[(n + offset) % len(paths)]
                t0 = time.perf_counter()
                async with http.get(path) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                latencies[path].append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(one_client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    total = sum(len(v) for v in latencies.values())

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return round(values[min(len(values) - 1, int(len(values) * q))] * 1000, 2)

    return {"requests": total, "errors": errors, "seconds": round(elapsed, 2),
            "rps": round(total / elapsed, 1),
            "per_document": {p.rsplit("/", 1)[1]: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99)}
                             for p, v in latencies.items()}}


def bare_server(port: int, pki: str, bodies_file: str) -> None:
    """The ceiling: aiohttp answering fixed bytes per path with the same TLS settings."""
    bodies = {path: Path(file).read_bytes()
              for path, file in json.loads(Path(bodies_file).read_text()).items()}

    def answer(body: bytes):
        async def handler(_request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/sep+xml")
        return handler

    base = Path(pki) / "ieee2030_5"
    tls = ieee2030_5_server_context(base / "server-chain.pem", base / "server.key",
                                    base / "ca-chain.pem")
    app = web.Application()
    for path, body in bodies.items():
        app.router.add_get(path, answer(body))
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=tls, print=None,
                access_log=None)


async def wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise TimeoutError(port)


def write_bodies(tmp: Path, bodies: dict[str, bytes]) -> None:
    files = {}
    for n, (path, body) in enumerate(bodies.items()):
        files[path] = str(tmp / f"body-{n}.xml")
        Path(files[path]).write_bytes(body)
    (tmp / "bodies.json").write_text(json.dumps(files))


async def bench_poll(tmp: Path, n_clients: int, n_requests: int) -> dict:
    listen_port = free_port()
    (tmp / "poll").mkdir()
    # (all the clients present one certificate: lift the per-client connection cap)
    proc = GatewayProcess(tmp / "poll", ieee2030_5={
        "listen": f"https://127.0.0.1:{listen_port}", "max_connections_per_client": 1000})
    gw = await proc.start()
    paths = [f"/edev/1/derp/1/{doc}" for doc in DOCS]
    bodies: dict[str, bytes] = {}
    try:
        ids = json.loads((gw.pki / "identities.json").read_text())
        device = ids["ieee2030_5/device-1"]
        clients = await seed_platform(gw, [der("der-1", device["lfdi"], device["sfdi"])])
        await limit(clients, {"kind": "resource", "id": "der-1"}, 4000)
        now = datetime.now(UTC).replace(microsecond=0)
        status, answer = await clients["ldc-a"].post("/v1/instructions", {
            "kind": "default_control", "target": {"kind": "resource", "id": "der-1"},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
            "settings": {"export_max_w": 1500}, "reason": "bench"})
        assert status == 201, answer
        url = f"https://127.0.0.1:{listen_port}"
        ssl_ctx = client_ssl(gw.pki, "device-1")
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as c:
            for _ in range(100):
                for path in paths:
                    async with c.get(path) as resp:
                        bodies[path] = await resp.read()
                if b"<DERControl>" in bodies[paths[1]] and b"opModExpLimW" in bodies[paths[2]]:
                    break
                await asyncio.sleep(0.1)
        gateway = await load(url, paths, ssl_ctx, n_clients, n_requests)
    finally:
        await proc.stop()
    write_bodies(tmp, bodies)
    port = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare", str(port),  # noqa: ASYNC220
                             str(gw.pki), str(tmp / "bodies.json")])
    try:
        await wait_port(port)
        ceiling = await load(f"https://127.0.0.1:{port}", paths, ssl_ctx, n_clients, n_requests)
    finally:
        bare.terminate()
        bare.wait(10)
    return {"body_bytes": {p.rsplit("/", 1)[1]: len(b) for p, b in bodies.items()},
            "gateway": gateway, "bare_aiohttp": ceiling,
            "served_over_bare_rps": round(gateway["rps"] / ceiling["rps"], 2),
            "p99_over_bare": {d: round(gateway["per_document"][d]["p99_ms"]
                                       / ceiling["per_document"][d]["p99_ms"], 2)
                              for d in DOCS}}


# --- 2. fan-out -------------------------------------------------------------------------------


async def bench_fanout(tmp: Path, devices: int, timeout_s: float,
                       args_verbose: bool = True) -> dict:
    listen_port = free_port()
    (tmp / "fanout").mkdir()
    proc = GatewayProcess(tmp / "fanout", ieee2030_5={"listen": f"https://127.0.0.1:{listen_port}"})
    gw = await proc.start()
    received: dict[str, int] = {}
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if b"<DERControl " in body:  # the list carries a control
            start = body.find(b"<subscribedResource>") + len(b"<subscribedResource>")
            href = body[start:body.find(b"</subscribedResource>")].decode()
            received[href] = received.get(href, 0) + 1
            if len(received) >= devices:
                done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    recv_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", recv_port, backlog=1024).start()
    try:
        ids = json.loads((gw.pki / "identities.json").read_text())
        t0 = time.perf_counter()
        clients = await seed_platform(gw, [])
        for chunk in range(0, devices, 1000):
            batch = [der(f"der-{n}", fake_lfdi(n), 10 + n)
                     for n in range(chunk, min(devices, chunk + 1000))]
            await clients["admin"].ok("POST", "/v1/resources", batch)
        agg_lfdi = ids["ieee2030_5/aggregator-1"]["lfdi"]
        await clients["admin"].ok("PUT", f"/v1/adapters/ieee2030_5/clients/{agg_lfdi}",
                                  {"aggregator_id": "agg-x"})
        registered_s = time.perf_counter() - t0
        url = f"https://127.0.0.1:{listen_port}"
        connector = aiohttp.TCPConnector(ssl=client_ssl(gw.pki, "aggregator-1"), limit=50)
        async with aiohttp.ClientSession(url, connector=connector) as c:
            edevs: list[tuple[str, str]] = []
            for _ in range(600):
                async with c.get(f"/edev?l={devices + 10}") as resp:
                    text = await resp.text()
                edevs = _edevs(text)
                if len(edevs) >= devices + 1:  # the DERs and the aggregator's own EndDevice
                    break
                await asyncio.sleep(0.5)
            own = next(h for h, lfdi in edevs if lfdi == agg_lfdi)
            der_hrefs = [h for h, lfdi in edevs if lfdi != agg_lfdi]
            assert len(der_hrefs) == devices, f"{len(der_hrefs)} EndDevices for {devices} DERs"
            t1 = time.perf_counter()
            sem = asyncio.Semaphore(50)

            async def subscribe(href: str) -> None:
                sub = m.Subscription(subscribedResource=f"{href}/derp/1/derc", encoding=0,
                                     level="+S1", limit=10,
                                     notificationURI=f"http://127.0.0.1:{recv_port}/notify")
                async with sem, c.post(f"{own}/sub", data=serialize(sub), headers=CT) as resp:
                    assert resp.status == 201, await resp.text()

            await asyncio.gather(*(subscribe(h) for h in der_hrefs))
            subscribe_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        await limit(clients, {"kind": "connection_point", "id": "cp-a1"}, 2000 * devices)
        deadline = time.perf_counter() + timeout_s
        while not done.is_set() and time.perf_counter() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=5)
            if args_verbose:
                _, status = await clients["admin"].get("/v1/status")
                print(f"{time.perf_counter() - t2:6.1f}s received {len(received)} "
                      f"outbox {status.get('outbox_pending')} {status.get('deliveries')}",
                      file=sys.stderr, flush=True)
        if not done.is_set():
            print(await clients["admin"].get("/v1/resources/der-0/effective-control"),
                  await clients["admin"].get("/v1/status"), file=sys.stderr)
            errors = [ln for ln in proc.log().splitlines() if "ERROR" in ln or "Error" in ln]
            print("\n".join(errors[-20:]) or proc.log()[-3000:], file=sys.stderr)
        fanout_s = time.perf_counter() - t2
        return {"devices": devices, "registration_s": round(registered_s, 1),
                "subscriptions_s": round(subscribe_s, 1), "fanout_s": round(fanout_s, 2),
                "delivered": len(received), "lost": devices - len(received),
                "duplicates": sum(v - 1 for v in received.values())}
    finally:
        await runner.cleanup()
        await proc.stop()


def _edevs(text: str) -> list[tuple[str, str]]:
    """(href, lFDI) of each EndDevice in an EndDeviceList."""
    from lxml import etree

    root = etree.fromstring(text.encode())
    ns = "{urn:ieee:std:2030.5:ns}"
    return [(e.get("href"), e.findtext(f"{ns}lFDI")) for e in root.findall(f"{ns}EndDevice")]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        if args.clients:
            results["poll"] = await bench_poll(Path(tmp), args.clients, args.requests)
            print(json.dumps(results["poll"], indent=2), flush=True)
        if args.devices:
            results["fanout"] = await bench_fanout(Path(tmp), args.devices, args.timeout)
            print(json.dumps(results["fanout"], indent=2), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        bare_server(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=600, help="fan-out wait, seconds")
    asyncio.run(main(parser.parse_args()))
