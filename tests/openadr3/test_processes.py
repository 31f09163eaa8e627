"""Two `der-gateway serve` processes on one PostgreSQL database are one VTN (issue 14): a
token issued by one works at the other, what is written through one is listed by the other
(and gone there when deleted), object ids never collide, an instruction taken by one reaches
a VEN polling the other and a webhook subscriber registered at the other exactly once, and
when the process that renders is killed the other takes over within the lease's time.

Each process has its own VTN port here (so that a test can say which one it asks); the fleet
test (tests/integration/test_processes_fleet.py) shares one port between them."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from sqlalchemy import text

from gateway.store.engine import Database
from tests.openadr3.conftest import CORE_WARNINGS, V31, Vtn, oadr_der, until
from tests.support.gateway import GatewayProcess, free_port
from tests.support.gateway import test_settings as gateway_env
from tests.support.mosquitto import mosquitto_broker
from tests.support.postgres import postgres_cluster
from tests.support.seed import seed_platform
from tests.support.webhooks import WebhookReceiver

pytestmark = [*CORE_WARNINGS, pytest.mark.timeout(300)]
RENDER_LEASE = "openadr3:render"
MQTT_LEASE = "openadr3:mqtt"


@dataclass
class Pair:
    url: str  # the database
    a: Vtn
    b: Vtn
    procs: dict[str, GatewayProcess]

    def vtn(self, name: str) -> Vtn:
        return self.a if name == "a" else self.b


@asynccontextmanager
async def two_processes(tmp_path: Path, url: str, **config: Any) -> AsyncIterator[Pair]:
    """Processes a and b on database `url`, each with its own VTN port (and `config`)."""
    env_a = gateway_env(tmp_path, openadr3=config) | {"DERGW_DATABASE_URL": url,
                                                      "DERGW_PROCESS_NAME": "a"}
    env_b = env_a | {"DERGW_PLATFORM_LISTEN": f"https://127.0.0.1:{free_port()}",
                     "DERGW_ADAPTERS__OPENADR3__LISTEN": f"https://127.0.0.1:{free_port()}",
                     "DERGW_PROCESS_NAME": "b"}
    procs = {"a": GatewayProcess(tmp_path, env_a), "b": GatewayProcess(tmp_path, env_b)}
    try:
        ga = await procs["a"].start()  # (a makes the dev PKI; b shares it)
        gb = await procs["b"].start()
        clients = await seed_platform(ga, resources=[
            oadr_der("o1", "ven-x", "bat-1"), oadr_der("o2", "ven-x", "bat-2"),
            oadr_der("o3", "ven-y", "bat-1", cp="cp-c1", agg="agg-y")])
        on_b = {name: gb.client(name) for name in clients}
        yield Pair(url, Vtn(ga, ga.adapter_listen("openadr3"), clients),
                   Vtn(gb, gb.adapter_listen("openadr3"), on_b), procs)
    finally:
        for proc in procs.values():
            await proc.stop()


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    with postgres_cluster(tmp_path) as url:
        async with two_processes(tmp_path, url) as running:
            yield running


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


async def limit(vtn: Vtn, export_w: float, rid: str = "o1") -> dict[str, Any]:
    now = datetime.now(UTC)
    return await vtn.clients["ldc-a"].ok("POST", "/v1/instructions", {
        "kind": "limit", "target": {"kind": "resource", "id": rid},
        "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
        "limits": {"export_max_w": export_w}, "reason": "two processes"})


def carries(event: dict[str, Any], kw: float) -> bool:
    return any({"type": "EXPORT_CAPACITY_LIMIT", "values": [kw]} in iv["payloads"]
               for iv in event["intervals"])


async def polled_event(vtn: Vtn, token: str, kw: float, within: float = 10.0
                       ) -> dict[str, Any]:
    """The VEN's event for o1 carrying `kw`, as a VEN polling `vtn` sees it."""
    async def probe() -> dict[str, Any] | None:
        status, events = await vtn.call("GET", "/events", token,
                                        params=[("targets", "ven-x/bat-1")])
        assert status == 200, events
        return next((e for e in events if carries(e, kw)), None)

    found: dict[str, Any] = await until(probe, within=within)
    return found


async def lease_holder(url: str, name: str) -> str | None:
    db = Database(url)
    try:
        async with db.read() as session:
            row = (await session.execute(text(
                "SELECT holder FROM lease WHERE name = :n AND expires_at > now()"),
                {"n": name})).first()
            return None if row is None else str(row[0])
    finally:
        await db.close()


async def test_tokens_and_objects_made_at_one_process_serve_at_the_other(pair: Pair):
    a, b = pair.a, pair.b
    ven = await a.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await a.token(ven)
    # At once (no waiting for the event log): b reads a token it has never seen from the store.
    status, vens = await b.call("GET", "/vens", token)
    assert status == 200, vens
    bl = await a.provision("ldc-a", {"role": "bl"})
    bl_token = await a.token(bl)
    status, program = await a.call("POST", "/programs", bl_token, {"programName": "p-a"})
    assert status == 201, program
    # At once too: b reads an object it has not heard of yet, by id or as a reference.
    status, found = await b.call("GET", f"/programs/{program['id']}", bl_token)
    assert status == 200 and found == program, found
    status, program_2 = await a.call("POST", "/programs", bl_token, {"programName": "p-a2"})
    assert status == 201, program_2
    status, event = await b.call("POST", "/events", bl_token, {
        "programID": program_2["id"], "intervals": [{"id": 0, "payloads": [
            {"type": "PRICE", "values": [0.1]}]}]})
    assert status == 201, event

    async def listed_at_b(path: str, who: str, wanted: str) -> bool:
        status, found = await b.call("GET", path, who)
        assert status == 200, found
        return wanted in {o["id"] for o in found}

    await until(lambda: listed_at_b("/programs", token, program["id"]))  # the VEN, at b
    await until(lambda: listed_at_b("/vens", token, ven["ven_id"]))
    # The VEN's resource objects (the render lease holder made them) are b's to serve too.
    status, resources = await b.call("GET", "/resources", token)
    assert status == 200 and sorted(r["resourceName"] for r in resources) == ["bat-1", "bat-2"]

    # Ids come from the store: programs made at both processes at once never share one.
    made = await asyncio.gather(*(
        side.call("POST", "/programs", bl_token, {"programName": f"p-{n}"})
        for n in range(12) for side in ([a] if n % 2 else [b])))
    assert all(status == 201 for status, _ in made), made
    ids = [p["id"] for _, p in made]
    assert len(set(ids)) == len(ids)

    seen: dict[str, list[str]] = {}

    async def same_order() -> bool:
        for name, side in (("a", a), ("b", b)):
            _, found = await side.call("GET", "/programs", bl_token)
            seen[name] = [p["id"] for p in found]
        return {program["id"], *ids} <= set(seen["a"]) and seen["a"] == seen["b"]

    try:
        await until(same_order)
    except TimeoutError:
        raise AssertionError(seen) from None

    # Deleted at a: gone at b.
    status, _ = await a.call("DELETE", f"/programs/{program['id']}", bl_token)
    assert status == 200

    async def gone_at_b() -> bool:
        return not await listed_at_b("/programs", bl_token, program["id"])

    await until(gone_at_b)

    # Tokens revoked through a's platform API no longer work at b (b had them in memory).
    status, _ = await a.clients["agg-x"].post(
        f"/v1/adapters/openadr3/credentials/{ven['client_id']}/revoke-tokens")
    assert status == 200

    async def refused_at_b() -> bool:
        status, _ = await b.call("GET", "/vens", token)
        return status == 401

    await until(refused_at_b)


async def test_an_instruction_at_a_reaches_a_ven_at_b_and_b_s_webhook_once(pair: Pair):
    a, b = pair.a, pair.b
    # Provisioned through b: whichever process renders, b answers once the VEN's resource
    # objects are there.
    ven = await b.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    token = await b.token(ven)
    status, resources = await b.call("GET", "/resources", token)
    assert status == 200 and sorted(r["resourceName"] for r in resources) == ["bat-1", "bat-2"]
    async with WebhookReceiver() as hooks:
        status, sub = await b.call("POST", "/subscriptions", token, {
            "clientName": "ven-x",
            "objectOperations": [{"objects": ["EVENT"], "operations": ["CREATE", "UPDATE"],
                                  "callbackUrl": hooks.url}]})
        assert status == 201, sub
        bl = await a.provision("ldc-a", {"role": "bl"})
        bl_token = await a.token(bl)

        async def subscribed_at_a() -> bool:  # (the renderer may be a: it must know of it)
            _, subs = await a.call("GET", "/subscriptions", bl_token)
            return sub["id"] in {s["id"] for s in subs}

        await until(subscribed_at_a)
        await limit(a, 3_300)  # through a's platform API

        async def notified() -> list[dict[str, Any]]:
            return [n for n in hooks.bodies if carries(n["object"], 3.3)]

        first = (await until(notified))[0]

        async def delivered() -> bool:  # the webhook's outcome is o1's delivery state
            _, der = await b.clients["admin"].get("/v1/resources/o1")
            return (der.get("delivery") or {}).get("state") == "delivered"

        await until(delivered)
        event = await polled_event(b, token, 3.3)  # a VEN polling b has it too
        assert event["id"] == first["object"]["id"]
        await asyncio.sleep(3.0)  # time for a second delivery, were there one
    notes = [n for n in hooks.bodies if n["object"]["id"] == event["id"]]
    assert len(notes) == 1, notes
    assert notes[0]["operation"] in ("CREATE", "UPDATE")


async def test_the_render_lease_moves_to_the_survivor_of_a_kill(pair: Pair):
    ven = await pair.a.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    holder = await until(lambda: lease_holder(pair.url, RENDER_LEASE))
    alive = "b" if holder.startswith("a#") else "a"
    survivor = pair.vtn(alive)
    token = await survivor.token(ven)
    await limit(survivor, 4_100)
    await polled_event(survivor, token, 4.1)

    left, killed_at = await kill_holder(pair, RENDER_LEASE)
    assert left == alive
    loop = asyncio.get_running_loop()
    await limit(survivor, 4_200)  # coordinated at once; rendered once the lease moved

    async def moved() -> bool:
        return (await lease_holder(pair.url, RENDER_LEASE) or "").startswith(f"{alive}#")

    await until(moved, within=12)
    await polled_event(survivor, token, 4.2, within=12)
    took = loop.time() - killed_at
    assert took < 12, took  # a lease lapses 6 s after its holder stops renewing it
    _, events = await survivor.call("GET", "/events", token, version=V31,
                                    params=[("targets", "ven-x/bat-1")])
    assert len(events) == 1  # one event per DER: the survivor updated it, made no other


async def kill_holder(pair: Pair, lease: str) -> tuple[str, float]:
    """SIGKILL the process holding `lease`; the survivor's name and when it was killed."""
    holder = await until(lambda: lease_holder(pair.url, lease))
    dead, alive = ("a", "b") if holder.startswith("a#") else ("b", "a")
    process = pair.procs[dead].process
    assert process is not None
    process.send_signal(signal.SIGKILL)
    killed_at = asyncio.get_running_loop().time()
    await pair.procs[dead].stop()
    return alive, killed_at


async def test_mqtt_is_published_once_by_the_lease_holder_and_then_by_the_survivor(
        tmp_path: Path):
    """Both processes connect to the broker; each program created through either is
    published once (by the holder of openadr3:mqtt); once the holder is killed, the survivor
    publishes within the lease's time."""
    with mosquitto_broker() as broker, postgres_cluster(tmp_path) as url:
        config = {"mqtt_url": broker.url, "mqtt_username": broker.username,
                  "mqtt_password": broker.password}
        async with two_processes(tmp_path, url, **config) as pair:
            bl = await pair.a.provision("ldc-a", {"role": "bl"})
            token = await pair.b.token(bl)
            status, notifiers = await pair.b.call("GET", "/notifiers", token)  # login via b
            assert status == 200 and "MQTT" in notifiers, notifiers
            async with aiomqtt.Client(broker.host, broker.port, username=bl["client_id"],
                                      password=token, protocol=aiomqtt.ProtocolVersion.V5,
                                      timeout=10) as client:
                await client.subscribe("programs/create", qos=1)
                names = [f"p-{n}" for n in range(6)]
                for n, name in enumerate(names):
                    side = pair.a if n % 2 else pair.b
                    status, _ = await side.call("POST", "/programs", token,
                                                {"programName": name})
                    assert status == 201
                heard = await received(client, set(names), within=15)
                await asyncio.sleep(2.0)  # a second copy, were there one, arrives meanwhile
                heard += await received(client, set(), within=0.5)
                assert sorted(heard) == sorted(names), heard  # each once

                alive, killed_at = await kill_holder(pair, MQTT_LEASE)
                survivor = pair.vtn(alive)
                status, _ = await survivor.call("POST", "/programs", token,
                                                {"programName": "after"})
                assert status == 201
                assert await received(client, {"after"}, within=12) == ["after"]
                took = asyncio.get_running_loop().time() - killed_at
                assert took < 12, took


async def received(client: aiomqtt.Client, wanted: set[str], within: float) -> list[str]:
    """Program names published until all of `wanted` came (or `within` s passed)."""
    names: list[str] = []
    try:
        async with asyncio.timeout(within):
            async for message in client.messages:
                names.append(json.loads(bytes(message.payload))["object"]["programName"])
                if wanted <= set(names):
                    break
    except TimeoutError:
        if wanted - set(names):
            raise
    return names
