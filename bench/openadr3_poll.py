"""OpenADR 3 VTN benchmark, on loopback with real TLS, against `der-gateway serve`.

1. Polling: V concurrent VENs (default 100), each with its own token and keep-alive TLS
   connection, GET /events with target filters (its two resources) repeatedly; polls/s and
   p50/p99, every answer checked (two events). Then the same load against a bare aiohttp
   server answering the same bytes with the same TLS certificate, in the same run.
2. Fan-out: S webhook subscriptions (default 1,000) of business logic to EVENT creation, each
   with its own callback URL on a local receiver; one event created; time until every
   notification has arrived, and how many were lost. Beside it, a bare aiohttp client POSTing
   the same notification to the same receiver S times with the same concurrency.
3. MQTT fan-out (when Debian's `mosquitto` is installed): M VENs (default 1,000) each get
   their broker login from GET /notifiers, connect to a real Mosquitto broker and subscribe to
   their own VEN-scoped event topics; business logic creates one untargeted event; time until
   every VEN has received it over MQTT, next to the webhook fan-out of the same run.

    python bench/openadr3_poll.py [--vens 100] [--requests 50] [--subscribers 1000]
                                  [--mqtt-vens 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pki.tls import client_context, server_context
from tests.support.gateway import GatewayProcess, free_port
from tests.support.mosquitto import Broker, mosquitto_broker
from tests.support.seed import seed_platform

V31 = "/openadr3/3.1.0"


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def der(n: int, side: str) -> dict:
    return {"id": f"o{n}{side}", "connection_point_id": "cp-a1", "kind": "battery",
            "nameplate": {"export_max_w": 10_000, "import_max_w": 5_000},
            "binding": {"protocol": "openadr3",
                        "address": {"ven": f"ven-{n}", "resource": f"r-{side}"}},
            "aggregator_id": "agg-x"}


async def token(http: aiohttp.ClientSession, base: str, cred: dict) -> str:
    async with http.post(f"{base}{V31}/auth/token", data={
        "grant_type": "client_credentials", "client_id": cred["client_id"],
        "client_secret": cred["client_secret"]}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


async def load(url: str, jobs: list[tuple[str, str]], ssl_ctx, requests: int,
               expect: int | None) -> dict:
    """Each job (path, token) is one client on its own keep-alive connection."""
    latencies: list[float] = []
    errors = 0

    async def one_client(path: str, bearer: str) -> None:
        nonlocal errors
        connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=1)
        headers = {"Authorization": f"Bearer {bearer}"}
        async with aiohttp.ClientSession(url, connector=connector, headers=headers) as http:
            for _ in range(requests):
                t0 = time.perf_counter()
                async with http.get(path) as resp:
                    body = await resp.read()
                latencies.append(time.perf_counter() - t0)
                if resp.status != 200 or (expect is not None and len(json.loads(body)) != expect):
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(p, b) for p, b in jobs))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"clients": len(jobs), "requests": len(latencies), "errors": errors,
            "polls_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2)}


def bare_server(port: int, pki: str, body_file: str) -> None:
    """The ceiling: aiohttp answering the same bytes with the same TLS certificate."""
    body = Path(body_file).read_bytes()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    root = Path(pki) / "platform"
    tls = server_context(root / "server.pem", root / "server.key", None)
    web.run_app(app, host="127.0.0.1", port=port, ssl_context=tls, print=None,
                access_log=None)


async def wait_port(port: int) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(port)


async def setup(gw, base: str, vens: int) -> tuple[list[tuple[str, str]], aiohttp.ClientSession]:
    clients = await seed_platform(gw, resources=[der(n, s) for n in range(vens) for s in "ab"])
    creds = []
    for n in range(vens):
        status, cred = await clients["agg-x"].post(
            "/v1/adapters/openadr3/credentials", {"role": "ven", "ven_name": f"ven-{n}"})
        assert status == 201, cred
        creds.append(cred)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context(gw.pki / "platform/ca.pem")))
    tokens = await asyncio.gather(*(token(http, base, c) for c in creds))
    now = datetime.now(UTC)
    await clients["ldc-a"].ok("POST", "/v1/instructions", {
        "kind": "limit", "target": {"kind": "connection_point", "id": "cp-a1"},
        "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=2)),
        "limits": {"export_max_w": 6_000}, "reason": "bench"})
    jobs = [(f"{V31}/events?targets=ven-{n}/r-a&targets=ven-{n}/r-b", t)
            for n, t in enumerate(tokens)]
    return jobs, http


async def bench_poll(gw, base: str, vens: int, requests: int, tmp: Path) -> dict:
    jobs, http = await setup(gw, base, vens)
    try:
        async with asyncio.timeout(60):  # the limit becomes two events per VEN
            while True:
                async with http.get(base + jobs[-1][0],
                                    headers={"Authorization": f"Bearer {jobs[-1][1]}"}) as r:
                    body = await r.read()
                if len(json.loads(body)) == 2:
                    break
                await asyncio.sleep(0.2)
    finally:
        await http.close()
    ssl_ctx = client_context(gw.pki / "platform/ca.pem")
    gateway = await load(base, jobs, ssl_ctx, requests, expect=2)
    body_file = tmp / "events.json"
    body_file.write_bytes(body)
    port = free_port()
    bare = subprocess.Popen([sys.executable, __file__, "--bare", str(port),  # noqa: ASYNC220
                             str(gw.pki), str(body_file)])
    try:
        await wait_port(port)
        ceiling = await load(f"https://127.0.0.1:{port}", jobs, ssl_ctx, requests, expect=2)
    finally:
        bare.terminate()
        bare.wait(10)
    return {"body_bytes": len(body), "gateway": gateway, "bare_aiohttp": ceiling}


async def receiver(expected: int) -> tuple[web.AppRunner, int, dict, asyncio.Event]:
    seen: dict[str, float] = {}
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        seen.setdefault(request.match_info["n"], time.perf_counter())
        if len(seen) >= expected:
            done.set()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook/{n}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port, seen, done


async def bench_fanout(gw, base: str, subscribers: int) -> dict:
    admin = gw.client("admin")
    status, cred = await admin.post("/v1/adapters/openadr3/credentials",
                                    {"role": "bl", "participant_id": "ldc-a"})
    assert status == 201, cred
    runner, port, seen, done = await receiver(subscribers)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context(gw.pki / "platform/ca.pem")))
    try:
        bearer = await token(http, base, cred)
        auth = {"Authorization": f"Bearer {bearer}"}
        async with http.post(f"{base}{V31}/programs", json={"programName": "fan-out"},
                             headers=auth) as resp:
            program = await resp.json()
        limiter = asyncio.Semaphore(20)

        async def subscribe(n: int) -> None:
            async with limiter, http.post(f"{base}{V31}/subscriptions", headers=auth, json={
                "clientName": f"sub-{n}", "programID": program["id"], "objectOperations": [{
                    "objects": ["EVENT"], "operations": ["CREATE"],
                    "callbackUrl": f"http://127.0.0.1:{port}/hook/{n}"}]}) as resp:
                assert resp.status == 201, await resp.text()

        await asyncio.gather(*(subscribe(n) for n in range(subscribers)))
        t0 = time.perf_counter()
        async with http.post(f"{base}{V31}/events", headers=auth, json={
            "programID": program["id"], "eventName": "fan-out",
            "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [0.3]}]}]},
        ) as resp:
            note = {"objectType": "EVENT", "operation": "CREATE", "object": await resp.json()}
        accepted = time.perf_counter() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 120)
        last = max(seen.values()) - t0 if seen else float("nan")
        gateway = {"subscribers": subscribers, "delivered": len(seen),
                   "lost": subscribers - len(seen), "create_answered_ms": round(1000 * accepted, 1),
                   "all_delivered_s": round(last, 3)}
    finally:
        await http.close()
        await runner.cleanup()
    return {"gateway": gateway, "bare_aiohttp": await bare_fanout(subscribers, note)}


async def bare_fanout(subscribers: int, note: dict) -> dict:
    runner, port, seen, done = await receiver(subscribers)
    body = json.dumps(note).encode()
    limiter = asyncio.Semaphore(100)  # the core's delivery concurrency
    try:
        async with aiohttp.ClientSession() as http:
            async def post(n: int) -> None:
                async with limiter, http.post(f"http://127.0.0.1:{port}/hook/{n}", data=body,
                                              headers={"Content-Type": "application/json"}):
                    pass

            t0 = time.perf_counter()
            await asyncio.gather(*(post(n) for n in range(subscribers)))
            await asyncio.wait_for(done.wait(), 60)
            return {"subscribers": subscribers, "delivered": len(seen),
                    "all_delivered_s": round(max(seen.values()) - t0, 3)}
    finally:
        await runner.cleanup()


async def bench_mqtt(gw, base: str, vens: int, broker: Broker) -> dict:
    """One untargeted event to `vens` VENs over MQTT (each on its own broker login)."""
    import aiomqtt

    agg = gw.client("agg-x")
    limiter = asyncio.Semaphore(8)

    async def provision(n: int) -> dict:
        async with limiter:
            status, cred = await agg.post("/v1/adapters/openadr3/credentials",
                                          {"role": "ven", "ven_name": f"mq-ven-{n}"})
            assert status == 201, cred
            return cred

    t0 = time.perf_counter()
    creds = await asyncio.gather(*(provision(n) for n in range(vens)))
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=client_context(gw.pki / "platform/ca.pem")))
    received: dict[int, float] = {}
    everyone = asyncio.Event()
    try:
        async def login(cred: dict) -> tuple[dict, str, str]:
            async with limiter:
                bearer = await token(http, base, cred)
                auth = {"Authorization": f"Bearer {bearer}"}
                async with http.get(f"{base}{V31}/notifiers", headers=auth) as resp:
                    assert "MQTT" in await resp.json()
                async with http.get(f"{base}{V31}/notifiers/mqtt/topics/vens/{cred['ven_id']}"
                                    "/events", headers=auth) as resp:
                    topics = (await resp.json())["topics"]
                return cred, bearer, topics["ALL"]

        logins = await asyncio.gather(*(login(c) for c in creds))
        setup_s = time.perf_counter() - t0
        started = 0.0
        ready = asyncio.Semaphore(0)

        async def listen(n: int, cred: dict, bearer: str, topic: str) -> None:
            async with aiomqtt.Client(broker.host, broker.port, username=cred["client_id"],
                                      password=bearer, protocol=aiomqtt.ProtocolVersion.V5,
                                      timeout=60) as client:
                await client.subscribe(topic, qos=1)
                ready.release()
                async for _message in client.messages:
                    received.setdefault(n, time.perf_counter())
                    if len(received) >= vens:
                        everyone.set()
                    return

        listeners = [asyncio.create_task(listen(n, *login_)) for n, login_ in enumerate(logins)]
        for _ in range(vens):
            await ready.acquire()
        _status, bl = await gw.client("admin").post(
            "/v1/adapters/openadr3/credentials", {"role": "bl", "participant_id": "ldc-a"})
        auth = {"Authorization": f"Bearer {await token(http, base, bl)}"}
        async with http.post(f"{base}{V31}/programs", json={"programName": "mqtt-fan-out"},
                             headers=auth) as resp:
            program = await resp.json()
        started = time.perf_counter()
        async with http.post(f"{base}{V31}/events", headers=auth, json={
            "programID": program["id"], "eventName": "mqtt-fan-out",
            "intervals": [{"id": 0, "payloads": [{"type": "PRICE", "values": [0.3]}]}]},
        ) as resp:
            assert resp.status == 201, await resp.text()
        answered = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 120)
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        last = max(received.values()) - started if received else float("nan")
        return {"vens": vens, "received": len(received), "lost": vens - len(received),
                "setup_s": round(setup_s, 1), "create_answered_ms": round(1000 * answered, 1),
                "all_received_s": round(last, 3)}
    finally:
        await http.close()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir, contextlib.ExitStack() as stack:
        tmp = Path(tmp_dir)
        listen = f"https://127.0.0.1:{free_port()}"
        # Many clients from one address: the token endpoint's rate limit is for the field.
        config: dict = {"listen": listen, "token_rate_per_s": 100_000, "token_burst": 100_000}
        broker = None
        if args.mqtt_vens:
            try:
                broker = stack.enter_context(mosquitto_broker())
            except BaseException as exc:  # pytest.skip: mosquitto not installed
                print(f"MQTT fan-out skipped: {exc}", file=sys.stderr)
        if broker is not None:
            config.update(mqtt_url=broker.url, mqtt_username=broker.username,
                          mqtt_password=broker.password)
        proc = GatewayProcess(tmp, openadr3=config)
        gw = await proc.start()
        try:
            result = {
                "poll": await bench_poll(gw, listen, args.vens, args.requests, tmp),
                "fanout": await bench_fanout(gw, listen, args.subscribers),
            }
            if broker is not None:
                result["mqtt_fanout"] = await bench_mqtt(gw, listen, args.mqtt_vens, broker)
        finally:
            await proc.stop()
    print(json.dumps(result, indent=2))
    out = Path(__file__).with_name("results") / "openadr3_poll.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--bare":
        bare_server(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--mqtt-vens", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
