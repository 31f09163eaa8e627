"""The core's promises at the 2030.5 edge (issues 12, 13 and 17), against the real gateway
(in process, real TLS, real SQLite) and real notification receivers on loopback:

- deleting a Subscription, or its DER, cancels its pending notifications in the same
  transaction: nothing arrives after the 204;
- a notificationURI stored while the deployment allowed it is never connected to once the
  deployment forbids its address (IP literals checked at connect time), and the delivery
  row says why;
- the platform routes: another LDC gets 404/403 and nothing changes;
- a retried Response (same DERControl, same status) is stored once;
- no silent loss of control: a DER's delivery state shows what its client fetched, and a
  control nobody fetched becomes undeliverable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from lxml import etree
from sqlalchemy import select

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from gateway.runtime import running_gateway
from gateway.settings import load_settings
from gateway.store.tables import DeliveryRow
from pki.tls import client_context
from tests.ieee2030_5.test_notification_tls import receiver_certificate, strict_context
from tests.support.gateway import GatewayHandle, free_port, gateway_in_process
from tests.support.gateway import test_settings as settings_env
from tests.support.seed import seed_platform

NS = {"s": "urn:ieee:std:2030.5:ns", "c": "https://csipaus.org/ns"}
CT = {"Content-Type": "application/sep+xml"}
NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def limit(watts: float, rid: str = "der-1") -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {"kind": "limit", "target": {"kind": "resource", "id": rid},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": watts}, "reason": "feeder F-A1"}


class Receiver:
    """A 2030.5 notification listener (TLS 1.2, CCM8, client certificate required) that
    answers `status` and keeps what it was sent, by path."""

    def __init__(self) -> None:
        self.status = 201
        self.received: list[tuple[str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.read()))
        return web.Response(status=self.status)

    def bodies(self, path: str) -> list[bytes]:
        return [b for p, b in self.received if p == path]


@asynccontextmanager
async def receiving(pki: Path) -> AsyncIterator[tuple[str, Receiver]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    cert = receiver_certificate(pki, f"listener-{port}", trusted=True)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=strict_context(pki, cert)).start()
    try:
        yield f"https://127.0.0.1:{port}", receiver
    finally:
        await runner.cleanup()


def device(gw: GatewayHandle, name: str = "device-1") -> aiohttp.ClientSession:
    base = gw.pki / "ieee2030_5"
    tls = client_context(base / "ca-chain.pem", base / f"clients/{name}-chain.pem",
                         base / f"clients/{name}.key", ieee2030_5=True)
    return aiohttp.ClientSession(gw.adapter_listen("ieee2030_5"),
                                 connector=aiohttp.TCPConnector(ssl=tls))


async def seed_der(gw: GatewayHandle) -> dict[str, Any]:
    ids = json.loads((gw.pki / "identities.json").read_text())
    entry = ids["ieee2030_5/device-1"]
    return await seed_platform(gw, [{
        "id": "der-1", "connection_point_id": "cp-a1", "kind": "pv",
        "nameplate": {"export_max_w": 10_000}, "aggregator_id": "agg-x",
        "binding": {"protocol": "ieee2030_5",
                    "address": {"lfdi": entry["lfdi"], "sfdi": entry["sfdi"]}}}])


async def own_edev(c: aiohttp.ClientSession) -> str:
    async with c.get("/edev") as resp:
        return etree.fromstring(await resp.read()).find("s:EndDevice", NS).get("href")


async def subscribe(c: aiohttp.ClientSession, edev: str, uri: str, tail: str = "derp/1/derc"
                    ) -> str:
    sub = m.Subscription(subscribedResource=f"{edev}/{tail}", encoding=0, level="+S1",
                         limit=10, notificationURI=uri)
    async with c.post(f"{edev}/sub", data=serialize(sub), headers=CT) as resp:
        assert resp.status == 201, await resp.text()
        return resp.headers["Location"]


async def deliveries(gw: GatewayHandle) -> list[DeliveryRow]:
    async with gw.gateway.db.read() as session:
        return list((await session.execute(select(DeliveryRow))).scalars())


async def until(probe: Any, within: float = 20.0) -> Any:
    async with asyncio.timeout(within):
        while True:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.1)


def listen() -> dict[str, str]:
    return {"listen": f"https://127.0.0.1:{free_port()}"}


# --- issue 12, finding 3: deletion cancels what is pending ----------------------------------


async def test_deleting_a_subscription_stops_its_pending_retries(tmp_path):
    async with gateway_in_process(tmp_path, ieee2030_5=listen()) as gw:
        clients = await seed_der(gw)
        async with receiving(gw.pki) as (base, receiver), device(gw) as c:
            receiver.status = 503  # down for maintenance: every notification is retried
            edev = await own_edev(c)
            sub = await subscribe(c, edev, f"{base}/gone")
            await subscribe(c, edev, f"{base}/kept")
            assert (await clients["ldc-a"].post("/v1/instructions", limit(4000)))[0] == 201
            await until(lambda: len(receiver.bodies("/gone")) >= 2)  # retrying
            async with c.delete(sub) as resp:
                assert resp.status == 204
            after_204 = len(receiver.bodies("/gone"))
            receiver.status = 201
            await until(lambda: receiver.bodies("/kept") and len(receiver.bodies("/kept")) >= 3)
            await asyncio.sleep(2.0)  # past the next retry
            assert len(receiver.bodies("/gone")) == after_204
            sub_id = sub.rsplit("/", 1)[1]
            gone = [r for r in await deliveries(gw) if r.subject == f"sub:{sub_id}"]
            assert gone and all(r.delivered_at is None and r.failed_at is not None
                                and "cancelled" in r.last_error for r in gone)
            # the one that went through counts as the DER's control delivered
            await until(lambda: _state(delivery(clients["admin"]), "delivered"))


async def test_removing_a_der_cancels_its_subscriptions_pending_notifications(tmp_path):
    async with gateway_in_process(tmp_path, ieee2030_5=listen()) as gw:
        clients = await seed_der(gw)
        async with receiving(gw.pki) as (base, receiver), device(gw) as c:
            receiver.status = 503
            edev = await own_edev(c)
            await subscribe(c, edev, f"{base}/der")
            assert (await clients["ldc-a"].post("/v1/instructions", limit(4000)))[0] == 201
            await until(lambda: len(receiver.bodies("/der")) >= 2)
            _, ins = await clients["ldc-a"].get("/v1/instructions")
            for instruction in ins:
                await clients["ldc-a"].request("DELETE", f"/v1/instructions/{instruction['id']}")
            assert (await clients["admin"].request("DELETE", "/v1/resources/der-1"))[0] == 204

            async def cancelled() -> bool:
                rows = await deliveries(gw)
                return bool(rows) and all(r.failed_at is not None or r.delivered_at is not None
                                          for r in rows)

            await until(cancelled)
            seen = len(receiver.received)
            await asyncio.sleep(2.0)
            assert len(receiver.received) == seen
            async with c.get(edev) as resp:
                assert resp.status == 404  # its EndDevice went with it


# --- issue 12, finding 1: connect-time refusal of what was stored earlier --------------------


@asynccontextmanager
async def gateway_with(tmp: Path, ieee: dict[str, str], **env: str
                       ) -> AsyncIterator[GatewayHandle]:
    environ = {**settings_env(tmp, ieee2030_5=ieee), **env}
    settings = load_settings(environ=environ)
    async with running_gateway(settings) as gw:
        yield GatewayHandle(settings, environ, gateway=gw)


async def test_stored_subscriptions_to_forbidden_addresses_are_never_connected_to(tmp_path):
    """Subscriptions made while the deployment allowed loopback (development mode) and a
    private network (`outbound_allow`); then it runs with neither. Deliveries to the stored
    IP literals are refused before any connection, and each row says why."""
    ieee = listen()
    async with AsyncExitStack() as stack:
        async with gateway_with(tmp_path, ieee, DERGW_OUTBOUND_ALLOW='["10.0.0.0/8"]') as gw:
            base, receiver = await stack.enter_async_context(receiving(gw.pki))
            await seed_der(gw)
            async with device(gw) as c:
                edev = await own_edev(c)
                await subscribe(c, edev, f"{base}/loopback")
                await subscribe(c, edev, "https://10.1.2.3:4443/private", "derp/1/dderc")
        async with gateway_with(tmp_path, ieee, DERGW_DEV_MODE="false") as gw:
            ldc = gw.client("ldc-a")
            assert (await ldc.post("/v1/instructions", limit(4000)))[0] == 201
            default = {**limit(0), "kind": "default_control",
                       "settings": {"export_max_w": 1500}}
            del default["limits"]
            assert (await ldc.post("/v1/instructions", default))[0] == 201

            async def refused() -> list[DeliveryRow]:
                rows = await deliveries(gw)
                return rows if len(rows) >= 2 and all(r.failed_at for r in rows) else []

            rows = await until(refused)
            state = await until(lambda: _state(delivery(gw.client("admin")), "undeliverable"))
            assert "failed for good: refused" in state["reason"]
        assert receiver.received == []
        errors = {r.url.rsplit("/", 1)[1]: r.last_error for r in rows}
        assert errors["loopback"].startswith("refused") and "loopback" in errors["loopback"]
        assert errors["private"].startswith("refused") and "private" in errors["private"]
        assert all(r.attempts == 1 for r in rows)  # refused for good, not retried


# --- issue 17, finding 2: least privilege on the adapter's platform routes -------------------


async def test_another_ldc_can_neither_see_nor_change_a_ders_2030_5_settings(tmp_path):
    async with gateway_in_process(tmp_path, ieee2030_5=listen()) as gw:
        c = await seed_der(gw)
        lfdi = json.loads((gw.pki / "identities.json").read_text())["ieee2030_5/device-1"]["lfdi"]
        agg = json.loads((gw.pki / "identities.json").read_text())[
            "ieee2030_5/aggregator-1"]["lfdi"]
        base = "/v1/adapters/ieee2030_5"
        before = (await c["admin"].get(f"{base}/programs/{lfdi}"))[1]
        rates = (await c["admin"].get(f"{base}/rates"))[1]
        refused = [
            ("ldc-b", "PUT", f"/programs/{lfdi}", {"randomize_start": 60}, 404),
            ("ldc-b", "GET", f"/programs/{lfdi}", None, 404),
            ("agg-x", "PUT", f"/programs/{lfdi}", {"randomize_start": 60}, 403),
            ("ldc-b", "PUT", f"/programs/{'AB' * 20}", {"primacy": 3}, 404),  # no such DER
            ("ldc-a", "PUT", f"/clients/{agg}", {"aggregator_id": "agg-x"}, 403),
            ("ldc-b", "PUT", f"/clients/{agg}", {"granted": False}, 403),
            ("ldc-a", "PUT", "/rates/poll", {"resource": "DERProgramList", "seconds": 1}, 403),
            ("agg-x", "GET", "/rates", None, 403),
            ("ldc-b", "GET", "/ders/der-1", None, 404),
            ("agg-y", "GET", "/ders/der-1", None, 404),
        ]
        for who, method, path, body, status in refused:
            got, answer = await c[who].request(method, base + path, body)
            assert got == status, (who, method, path, got, answer)
        assert (await c["admin"].get(f"{base}/programs/{lfdi}"))[1] == before
        assert (await c["admin"].get(f"{base}/rates"))[1] == rates
        async with device(gw, "aggregator-1") as agg_client, agg_client.get("/edev") as resp:
            assert resp.status == 200  # not revoked, and no aggregator's view granted
            assert etree.fromstring(await resp.read()).get("all") == "0"
        # ... while the DER's own LDC, the admin, its aggregator and the ISO may
        assert (await c["ldc-a"].request("PUT", f"{base}/programs/{lfdi}",
                                         {"randomize_start": 60}))[0] == 200
        assert (await c["admin"].request("PUT", f"{base}/rates/poll",
                                         {"resource": "DERProgramList", "seconds": 5}))[0] == 200
        for who in ("agg-x", "iso", "ldc-a"):
            assert (await c[who].get(f"{base}/ders/der-1"))[0] == 200, who


# --- issue 17, finding 6: a retried Response is stored once ---------------------------------


async def test_a_retried_response_is_stored_once(tmp_path):
    async with gateway_in_process(tmp_path, ieee2030_5=listen()) as gw:
        clients = await seed_der(gw)
        status, ins = await clients["ldc-a"].post("/v1/instructions", limit(4000))
        assert status == 201
        lfdi = json.loads((gw.pki / "identities.json").read_text())["ieee2030_5/device-1"]["lfdi"]
        async with device(gw) as c:
            edev = await own_edev(c)

            async def control() -> list[Any]:
                async with c.get(f"{edev}/derp/1/derc") as resp:
                    return etree.fromstring(await resp.read()).findall("s:DERControl", NS)

            (derc,) = await until(control)
            answer = serialize(m.DERControlResponse(
                createdDateTime=int(NOW.timestamp()), endDeviceLFDI=lfdi, status=1,
                subject=derc.findtext("s:mRID", namespaces=NS)))
            locations = []
            for _ in range(3):  # a client that never saw the 201 retries
                async with c.post(derc.get("replyTo"), data=answer,
                                  headers=CT) as resp:
                    assert resp.status == 201
                    locations.append(resp.headers["Location"])
            assert len(set(locations)) == 1
            async with c.get("/rsps/1/rsp") as resp:
                assert etree.fromstring(await resp.read()).get("all") == "1"
        _, acks = await clients["admin"].get(f"/v1/acknowledgements?instruction_id={ins['id']}")
        assert [a["status"] for a in acks] == ["received"]


# --- issue 13: no silent loss of control ----------------------------------------------------


async def test_delivery_state_shows_fetches_and_controls_nobody_fetched(tmp_path):
    async with gateway_in_process(tmp_path, ieee2030_5={**listen(), "missed_polls": 2}) as gw:
        clients = await seed_der(gw)
        admin = clients["admin"]
        assert (await admin.request("PUT", "/v1/adapters/ieee2030_5/rates/poll",
                                    {"resource": "DERProgramList", "seconds": 1}))[0] == 200
        assert (await clients["ldc-a"].post("/v1/instructions", limit(4000)))[0] == 201

        # Nobody polls: after 2 poll intervals the live control is undeliverable.
        state = await until(lambda: _state(delivery(admin), "undeliverable"), within=15)
        assert "not polled within 2 poll intervals" in state["reason"]
        assert (await admin.get("/v1/resources/der-1"))[1]["online"] is not True
        async with device(gw) as c:
            edev = await own_edev(c)
            async with c.get(f"{edev}/derp/1/derc") as resp:
                assert resp.status == 200
            state = await until(lambda: _state(delivery(admin), "fetched"), within=10)
            assert state["last_fetched_at"]
            await until(lambda: _online(admin, True), within=10)
        # It stops polling: offline again after 2 poll intervals.
        await until(lambda: _online(admin, False), within=15)


async def delivery(client: Any) -> dict[str, Any] | None:
    """What the platform shows of getting der-1's control to it."""
    return (await client.get("/v1/resources/der-1"))[1]["delivery"]


async def _state(pending: Any, wanted: str) -> dict[str, Any] | None:
    state = await pending
    return state if state and state["state"] == wanted else None


async def _online(admin: Any, wanted: bool) -> bool:
    return (await admin.get("/v1/resources/der-1"))[1]["online"] is wanted


async def test_platform_route_bodies_pass_the_one_json_reader(tmp_path):
    """Repeated keys, deep nesting and NaN get 400 on the adapter's routes too; nothing
    changes."""
    async with gateway_in_process(tmp_path, ieee2030_5=listen()) as gw:
        c = await seed_der(gw)
        lfdi = json.loads((gw.pki / "identities.json").read_text())["ieee2030_5/device-1"]["lfdi"]
        path = f"/v1/adapters/ieee2030_5/programs/{lfdi}"
        before = (await c["admin"].get(path))[1]
        for raw in (b'{"primacy": 2, "primacy": 3}', b"[" * 100 + b"]" * 100,
                    b'{"randomize_start": NaN}'):
            status, body = await c["ldc-a"].request(
                "PUT", path, data=raw, headers={"Content-Type": "application/json"})
            assert status == 400, (raw[:20], status, body)
        assert (await c["admin"].get(path))[1] == before


async def test_a_devices_responses_are_kept_to_the_newest(tmp_path):
    """Soak finding: Response records grew without bound. A device's newest
    `responses_kept` stay; older ones go as new ones arrive (the core keeps the
    acknowledgements)."""
    async with gateway_in_process(tmp_path, ieee2030_5={**listen(), "responses_kept": 2}) as gw:
        clients = await seed_der(gw)
        status, ins = await clients["ldc-a"].post("/v1/instructions", limit(4000))
        assert status == 201
        lfdi = json.loads((gw.pki / "identities.json").read_text())["ieee2030_5/device-1"]["lfdi"]
        async with device(gw) as c:
            edev = await own_edev(c)

            async def control() -> list[Any]:
                async with c.get(f"{edev}/derp/1/derc") as resp:
                    return etree.fromstring(await resp.read()).findall("s:DERControl", NS)

            (derc,) = await until(control)
            locations = []
            for status_code in (1, 2, 3):  # received, started, completed
                answer = serialize(m.DERControlResponse(
                    createdDateTime=int(NOW.timestamp()), endDeviceLFDI=lfdi,
                    status=status_code, subject=derc.findtext("s:mRID", namespaces=NS)))
                async with c.post(derc.get("replyTo"), data=answer, headers=CT) as resp:
                    assert resp.status == 201
                    locations.append(resp.headers["Location"])
            async with c.get("/rsps/1/rsp") as resp:
                listed = etree.fromstring(await resp.read())
            assert listed.get("all") == "2"
            async with c.get(locations[0]) as resp:
                assert resp.status == 404
            for kept in locations[1:]:
                async with c.get(kept) as resp:
                    assert resp.status == 200
        _, acks = await clients["admin"].get(f"/v1/acknowledgements?instruction_id={ins['id']}")
        assert sorted(a["status"] for a in acks) == ["completed", "received", "started"]
