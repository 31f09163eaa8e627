"""Issue 17, finding 1: the DERControl records and the notifications they imply commit in one
transaction. `der-gateway serve` is made to exit (code 70) inside the records write, after
the records and before the deliveries; after a restart every subscriber is notified, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
from lxml import etree

from pki.tls import client_context
from tests.ieee2030_5.test_promises import (
    NS,
    limit,
    own_edev,
    receiving,
    seed_der,
    subscribe,
    until,
)
from tests.support.gateway import GatewayProcess, free_port

CRASH = {"DER_GATEWAY_FAULT_INJECT": "crash-between-records-and-deliveries"}


def device(gw, listen: str) -> aiohttp.ClientSession:
    base = gw.pki / "ieee2030_5"
    tls = client_context(base / "ca-chain.pem", base / "clients/device-1-chain.pem",
                         base / "clients/device-1.key", ieee2030_5=True)
    return aiohttp.ClientSession(listen, connector=aiohttp.TCPConnector(ssl=tls))


def limits_in(body: bytes) -> list[str]:
    """The export limits (csipaus:opModExpLimW values) a notified DERControlList carries."""
    root = etree.fromstring(body)
    return [f"{v.findtext('s:value', namespaces=NS)}e{v.findtext('s:multiplier', namespaces=NS)}"
            for v in root.iterfind(".//c:opModExpLimW", NS)]


async def test_a_crash_between_records_and_notifications_loses_neither(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    proc = GatewayProcess(tmp_path, ieee2030_5={"listen": listen})
    gw = await proc.start()
    try:
        clients = await seed_der(gw)
        async with receiving(gw.pki) as (base, receiver):
            async with device(gw, listen) as c:
                edev = await own_edev(c)
                for who in ("a", "b"):  # two subscribers to the DER's controls
                    await subscribe(c, edev, f"{base}/{who}")
            await proc.stop()

            await proc.start(CRASH)
            with contextlib.suppress(aiohttp.ClientError):  # it may die before it answers
                status, _ = await clients["ldc-a"].post("/v1/instructions", limit(4000))
                assert status == 201
            assert await proc.wait_exit() == 70, proc.log()[-2000:]
            assert receiver.received == []  # nothing was committed for delivery

            await proc.start()
            await until(lambda: receiver.bodies("/a") and receiver.bodies("/b"), within=30)
            await asyncio.sleep(3.0)  # anything sent twice would have come by now
            for who in ("a", "b"):
                (body,) = receiver.bodies(f"/{who}")
                assert limits_in(body) == ["4000e0"], etree.tostring(etree.fromstring(body))
            # the records made it too: the client polls the same control it was told of
            async with device(gw, listen) as c, c.get(f"{edev}/derp/1/derc") as resp:
                assert limits_in(await resp.read()) == ["4000e0"]
    finally:
        await proc.stop()
    assert json.dumps(proc.log()).count("fault injection") == 1
