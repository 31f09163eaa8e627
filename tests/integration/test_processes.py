"""Several gateway processes on one PostgreSQL database form one gateway (issue 14): what is
changed through one is seen through the other, a delivery is sent once, leased work has
one holder and moves to a survivor, and SQLite refuses more than one worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from gateway.delivery import DeliveryQueue, Outgoing
from gateway.leases import Leases
from gateway.outbound import OutboundGuard
from gateway.store.engine import Database
from tests.support.gateway import GatewayProcess, free_port
from tests.support.gateway import test_settings as gateway_env
from tests.support.postgres import postgres_cluster
from tests.support.seed import seed_platform

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def pg(tmp_path):
    with postgres_cluster(tmp_path) as url:
        yield url


async def test_two_processes_are_one_gateway(tmp_path, pg):
    """A change through one process is seen through the other at once."""
    (tmp_path / "a").mkdir()
    env_a = gateway_env(tmp_path / "a") | {"DERGW_DATABASE_URL": pg,
                                             "DERGW_PROCESS_NAME": "a"}
    env_b = env_a | {"DERGW_PLATFORM_LISTEN": f"https://127.0.0.1:{free_port()}",
                     "DERGW_PROCESS_NAME": "b"}
    a, b = GatewayProcess(tmp_path / "a", env_a), GatewayProcess(tmp_path / "a", env_b)
    ga = await a.start()
    gb = await b.start()
    try:
        clients = await seed_platform(ga)  # through process a
        on_b = gb.client("ldc-a")
        status, der = await on_b.get("/v1/resources/d1")  # b's topology follows a's writes
        assert status == 200 and der["id"] == "d1"
        events = asyncio.create_task(read_events(gb.client("admin"),
                                                 "effective_control.changed,instruction.changed"))
        await asyncio.sleep(0.5)
        status, ins = await clients["ldc-a"].post("/v1/instructions", {  # through a
            "kind": "limit", "target": {"kind": "resource", "id": "d1"},
            "start": iso(NOW), "end": iso(NOW + timedelta(hours=1)),
            "limits": {"export_max_w": 1234}})
        assert status == 201
        seen = await events
        assert {"instruction_id": ins["id"]}.items() <= next(
            e for e in seen if "instruction_id" in e).items()
        assert any(e.get("resource_id") == "d1" for e in seen)
        status, control = await on_b.get("/v1/resources/d1/effective-control")
        assert status == 200 and control["intervals"][0]["export_max_w"] == 1234
        # And the other way round: the ISO's limit through b is coordinated with a's in view.
        status, iso_ins = await gb.client("iso").post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "d1"},
            "start": iso(NOW), "end": iso(NOW + timedelta(hours=1)),
            "limits": {"export_max_w": 2000}})
        assert status == 201
        status, control = await clients["ldc-a"].get("/v1/resources/d1/effective-control")
        now_interval = control["intervals"][0]
        assert now_interval["export_max_w"] == 1234  # the most restrictive wins
        assert {s["instruction_id"] for s in now_interval["sources"]} == {ins["id"],
                                                                          iso_ins["id"]}
    finally:
        await b.stop()
        await a.stop()


async def read_events(client, topics: str, quiet_s: float = 2.0) -> list[dict]:
    found: list[dict] = []
    async with aiohttp.ClientSession(headers=client.headers) as http, http.get(
            f"{client.base}/v1/events?topics={topics}", ssl=client.ssl) as resp:
        assert resp.status == 200
        try:
            while True:
                line = await asyncio.wait_for(resp.content.readline(), quiet_s)
                if line.startswith(b"data: "):
                    found.append(json.loads(line[6:]))
        except TimeoutError:
            return found


async def test_each_delivery_is_sent_once_by_two_workers(pg):
    received: list[bytes] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        await asyncio.sleep(0.01)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db1, db2 = Database(pg), Database(pg)
    await db1.upgrade()
    guard = OutboundGuard(dev_mode=True)
    one, two = DeliveryQueue(db1, guard=guard), DeliveryQueue(db2, guard=guard)
    one.worker_id, two.worker_id = "one", "two"
    alive_one, alive_two = Leases(db1, "one"), Leases(db2, "two")  # as each process does
    await one.for_adapter("t").enqueue_many([
        Outgoing(f"http://127.0.0.1:{port}/hook", str(i).encode(), "text/plain")
        for i in range(300)])
    async with alive_one.holding("process:one"), alive_two.holding("process:two"), \
            one.running(), two.running():
        two.wake()
        for _ in range(300):
            if (await one.stats())["delivered"] == 300:
                break
            await asyncio.sleep(0.1)
    assert sorted(received, key=int) == [str(i).encode() for i in range(300)]
    await runner.cleanup()
    await db1.close()
    await db2.close()


async def test_a_lease_has_one_holder_and_moves_when_it_lapses(pg):
    db = Database(pg)
    await db.upgrade()
    a, b = Leases(db, "a", ttl_s=1.5), Leases(db, "b", ttl_s=1.5)
    assert await a.try_take("modbus:0") and not await b.try_take("modbus:0")
    # a dies without releasing: b holds it once it lapses, within the lease's time.
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(5):
        async with b.holding("modbus:0") as held:
            assert not held.lost.is_set()
    assert asyncio.get_running_loop().time() - started < 3.5
    # Sharing 16 between two: eight each; when one goes, the other takes all 16.
    async with a.sharing("bucket", 16) as sa, b.sharing("bucket", 16) as sb:
        for _ in range(40):
            if len(sa.held) == 8 and len(sb.held) == 8:
                break
            await asyncio.sleep(0.25)
        assert len(sa.held) == len(sb.held) == 8 and not sa.held & sb.held
    async with a.sharing("bucket", 16) as sa:
        for _ in range(40):
            if len(sa.held) == 16:
                break
            await asyncio.sleep(0.25)
        assert len(sa.held) == 16
    await db.close()


def test_several_workers_on_sqlite_are_refused(tmp_path):
    env = gateway_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--workers", "2"],
                          env={**__import__("os").environ, **env}, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert done.returncode != 0 and "PostgreSQL" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


async def test_a_dead_process_s_claimed_deliveries_are_taken_over_at_once(pg):
    received: list[bytes] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.read())
        arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db = Database(pg)
    await db.upgrade()
    guard = OutboundGuard(dev_mode=True)
    dead, alive = DeliveryQueue(db, guard=guard), DeliveryQueue(db, guard=guard)
    dead.worker_id, alive.worker_id = "dead#1", "alive#2"
    await dead.for_adapter("t").enqueue_many([
        Outgoing(f"http://127.0.0.1:{port}/hook", b"x", "text/plain")])
    assert len(await dead._claim(10)) == 1  # claimed for a minute, then the process "died"
    started = asyncio.get_running_loop().time()
    async with Leases(db, "alive#2").holding("process:alive#2"), alive.running():
        await asyncio.wait_for(arrived.wait(), 10)
    assert received == [b"x"]
    assert asyncio.get_running_loop().time() - started < 5
    await runner.cleanup()
    await db.close()


async def test_workers_on_a_fresh_machine_make_one_dev_pki_and_migrate_once(tmp_path, pg):
    """`serve --workers 2` with nothing made yet: the dev PKI is made once (by the
    supervisor: two workers each making their own gave clients server certificates from a
    CA they were not given) and the database migrated once (concurrent migrations killed a
    worker). Every new connection, whichever worker the kernel gives it to, verifies."""
    from pki.tls import client_context
    from simulators.scenario.gateway_proc import GatewayChild

    child = GatewayChild(tmp_path / "gw", extra_env={"DERGW_DATABASE_URL": pg}, workers=2)
    try:
        ends = await child.start(wait_s=120)
        ca = client_context(ends.pki / "platform/ca.pem")
        for _ in range(24):  # a new connection each: SO_REUSEPORT spreads them
            async with aiohttp.ClientSession() as http, \
                    http.get(ends.platform + "/v1/health", ssl=ca) as resp:
                # (the TLS handshake verified; a worker may still be starting its OPC UA)
                assert resp.status in (200, 503), await resp.text()
        assert "exited with" not in child.log_path.read_text()
    finally:
        await child.stop()
