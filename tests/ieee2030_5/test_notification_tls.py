"""Notifications reach a strict 2030.5 TLS listener, as a certified client runs one.

The receiver accepts TLS 1.2 only, ECDHE-ECDSA-AES128-CCM8 only, and requires a client
certificate that chains to the 2030.5 root with clientAuth usage (what `openssl s_server
-tls1_2 -cipher ECDHE-ECDSA-AES128-CCM8 -Verify 1` enforces). The gateway is real (in
process, real TLS, real SQLite); the receiver is a real TLS server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web
from lxml import etree
from sqlalchemy import select

from adapters.ieee2030_5.codec import models as m
from adapters.ieee2030_5.codec.xml import serialize
from gateway.store.tables import DeliveryRow
from pki.devpki import issue_certificate, load_pair, new_key, write_pem
from pki.tls import IEEE2030_5_CIPHERS, client_context
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

NS = {"s": "urn:ieee:std:2030.5:ns"}
CT = {"Content-Type": "application/sep+xml"}


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def receiver_certificate(pki: Path, name: str, *, trusted: bool) -> Path:
    """A listener certificate: from the 2030.5 MICA (trusted), or from a CA of its own."""
    if trusted:
        issuer = load_pair(pki / "ieee2030_5/mica.pem")
    else:
        rogue_key = new_key()
        issuer = (issue_certificate("rogue CA", rogue_key, None, ca=True, path_length=0),
                  rogue_key)
    key = new_key()
    cert = issue_certificate(name, key, issuer, server=True, client=True,
                             ips=("127.0.0.1",))
    path = pki / f"receivers/{name}.pem"
    write_pem(path, cert, key)
    return path


def strict_context(pki: Path, cert: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(IEEE2030_5_CIPHERS)
    ctx.load_cert_chain(cert, cert.with_suffix(".key"))
    ctx.load_verify_locations(cafile=pki / "ieee2030_5/ca-chain.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # -Verify 1: no client certificate, no handshake
    return ctx


@asynccontextmanager
async def strict_receiver(pki: Path, cert: Path):
    received: list[tuple[bytes, dict]] = []

    async def notify(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object")
        received.append((await request.read(), {
            "version": ssl_object.version(), "cipher": ssl_object.cipher()[0],
            "peer": ssl_object.getpeercert()}))
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=strict_context(pki, cert)).start()
    try:
        yield f"https://127.0.0.1:{port}/notify", received
    finally:
        await runner.cleanup()


async def subscribe_and_limit(gw, uri: str) -> tuple[list[str], object]:
    """device-1 subscribes to its DERControlList and DefaultDERControl at `uri`; then an LDC
    sets a limit and a default control. Returns the subscribed hrefs and the DB."""
    ids = json.loads((gw.pki / "identities.json").read_text())
    device = ids["ieee2030_5/device-1"]
    clients = await seed_platform(gw, [{
        "id": "der-1", "connection_point_id": "cp-a1", "kind": "pv",
        "nameplate": {"export_max_w": 10_000}, "aggregator_id": "agg-x",
        "binding": {"protocol": "ieee2030_5",
                    "address": {"lfdi": device["lfdi"], "sfdi": device["sfdi"]}}}])
    base = gw.pki / "ieee2030_5"
    tls = client_context(base / "ca-chain.pem", base / "clients/device-1-chain.pem",
                         base / "clients/device-1.key", ieee2030_5=True)
    listen = gw.adapter_listen("ieee2030_5")
    hrefs = []
    async with aiohttp.ClientSession(listen, connector=aiohttp.TCPConnector(ssl=tls)) as c:
        async with c.get("/edev") as resp:
            edev = etree.fromstring(await resp.read()).find("s:EndDevice", NS).get("href")
        for tail in ("derp/1/derc", "derp/1/dderc"):
            sub = m.Subscription(subscribedResource=f"{edev}/{tail}", encoding=0, level="+S1",
                                 limit=10, notificationURI=uri)
            async with c.post(f"{edev}/sub", data=serialize(sub), headers=CT) as resp:
                assert resp.status == 201, await resp.text()
            hrefs.append(f"{edev}/{tail}")
    now = datetime.now(UTC).replace(microsecond=0)
    for body in ({"kind": "limit", "limits": {"export_max_w": 4000}},
                 {"kind": "default_control", "settings": {"export_max_w": 1500}}):
        status, answer = await clients["ldc-a"].post("/v1/instructions", {
            **body, "target": {"kind": "resource", "id": "der-1"},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(hours=1)),
            "reason": "feeder F-A1"})
        assert status == 201, answer
    return hrefs, gw.gateway.db


async def until(probe, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while True:
            result = probe()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.1)


async def deliveries(db) -> list[DeliveryRow]:
    async with db.read() as session:
        return list((await session.execute(select(DeliveryRow))).scalars())


async def test_every_notification_reaches_a_strict_2030_5_listener(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        cert = receiver_certificate(gw.pki, "listener", trusted=True)
        async with strict_receiver(gw.pki, cert) as (uri, received):
            hrefs, _ = await subscribe_and_limit(gw, uri)
            await until(lambda: {etree.fromstring(b).findtext("s:subscribedResource",
                                                              namespaces=NS)
                                 for b, _ in received} >= set(hrefs))
        for body, tls in received:
            assert tls["version"] == "TLSv1.2" and tls["cipher"] == "ECDHE-ECDSA-AES128-CCM8"
            subject = dict(x[0] for x in tls["peer"]["subject"])
            assert subject["commonName"] == "der-gateway 2030.5 notifier"
            assert etree.QName(etree.fromstring(body)).localname == "Notification"


async def test_a_listener_outside_the_2030_5_pki_gets_nothing_and_the_delivery_says_why(
        tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        cert = receiver_certificate(gw.pki, "rogue-listener", trusted=False)
        async with strict_receiver(gw.pki, cert) as (uri, received):
            _, db = await subscribe_and_limit(gw, uri)
            rows: list[DeliveryRow] = []

            async def all_tried() -> bool:
                rows[:] = await deliveries(db)
                return bool(rows) and all(r.attempts > 0 for r in rows)

            await until(all_tried)
            assert received == []
        assert rows and all(r.delivered_at is None for r in rows)
        assert all("certificate verify failed" in r.last_error for r in rows), \
            [r.last_error for r in rows]
