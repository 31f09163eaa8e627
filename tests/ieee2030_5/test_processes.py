"""Two gateway processes on one PostgreSQL database serve 2030.5 as one server (issue 14):
a Subscription made through one is honoured by whichever renders, each change is notified
once (one process renders: the lease `ieee2030_5:render`), and a client polling the other
process sees the same controls (its memory follows records.changed)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from pki.tls import client_context
from tests.ieee2030_5.test_crash import limits_in
from tests.ieee2030_5.test_promises import limit, own_edev, receiving, seed_der, subscribe, until
from tests.support.gateway import GatewayProcess, free_port
from tests.support.gateway import test_settings as gateway_env
from tests.support.postgres import postgres_cluster


@pytest.fixture
def pg(tmp_path):
    with postgres_cluster(tmp_path) as url:
        yield url


def device(pki, url: str) -> aiohttp.ClientSession:
    base = pki / "ieee2030_5"
    tls = client_context(base / "ca-chain.pem", base / "clients/device-1-chain.pem",
                         base / "clients/device-1.key", ieee2030_5=True)
    return aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=tls))


async def listed_edev(c) -> bool:
    async with c.get("/edev") as resp:
        return b"<EndDevice " in await resp.read()


async def test_two_processes_serve_2030_5_as_one(tmp_path, pg):
    (tmp_path / "gw").mkdir()
    listen_a, listen_b = (f"https://127.0.0.1:{free_port()}" for _ in range(2))
    env_a = gateway_env(tmp_path / "gw", ieee2030_5={"listen": listen_a}) | {
        "DERGW_DATABASE_URL": pg, "DERGW_PROCESS_NAME": "a"}
    env_b = env_a | {"DERGW_PLATFORM_LISTEN": f"https://127.0.0.1:{free_port()}",
                     "DERGW_ADAPTERS__IEEE2030_5__LISTEN": listen_b, "DERGW_PROCESS_NAME": "b"}
    a = GatewayProcess(tmp_path / "gw", env_a)
    b = GatewayProcess(tmp_path / "gw", env_b)
    ga = await a.start()
    await b.start()
    try:
        clients = await seed_der(ga)
        async with receiving(ga.pki) as (base, receiver):
            async with device(ga.pki, listen_b) as on_b:  # subscribed through b
                # (a renders the DER's EndDevice; b hears of it on the event log: wait)
                await until(lambda: listed_edev(on_b), within=15)
                edev = await own_edev(on_b)
                await subscribe(on_b, edev, f"{base}/n")
            await asyncio.sleep(1.0)  # (records.changed reaches a)
            assert (await clients["ldc-a"].post("/v1/instructions", limit(4000)))[0] == 201
            await until(lambda: receiver.bodies("/n"), within=30)
            await asyncio.sleep(3.0)  # a second renderer would have notified by now
            (body,) = receiver.bodies("/n")
            assert limits_in(body) == ["4000e0"]
            for url in (listen_a, listen_b):  # both processes serve what was rendered

                async def served(url: str = url) -> bool:
                    async with device(ga.pki, url) as c, c.get(f"{edev}/derp/1/derc") as r:
                        return limits_in(await r.read()) == ["4000e0"]

                await until(served, within=10)
    finally:
        await b.stop()
        await a.stop()
