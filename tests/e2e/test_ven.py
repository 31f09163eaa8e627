"""The OpenADR 3 simulator VEN against the real gateway (in process, real TLS on loopback):
token, registration, events by polling and by webhook, DER follows, reports acknowledge."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.ven.ven import Ven, VenConfig
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = [
    pytest.mark.filterwarnings("ignore:shutdown_timeout should be set:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def oadr(rid: str, ven: str, name: str, battery: bool = False) -> dict:
    return {"id": rid, "connection_point_id": "cp-a1", "kind": "battery" if battery else "pv",
            "nameplate": {"export_max_w": 10_000, "import_max_w": 5_000 if battery else 0},
            "aggregator_id": "agg-x",
            "binding": {"protocol": "openadr3", "address": {"ven": ven, "resource": name}}}


async def until(probe, within: float = 20.0):
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.1)


async def stepping(ders) -> None:
    while True:
        for d in ders:
            d.step(0.1)
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("subscribe", [False, True], ids=["poll", "webhook"])
async def test_ven_follows_limit_and_dispatch_and_reports(tmp_path, subscribe):
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, openadr3={"listen": listen}) as gw:
        clients = await seed_platform(gw, [oadr("o1", "ven-x", "pv-1"),
                                           oadr("o2", "ven-x", "bat-1", battery=True)])
        cred = await clients["agg-x"].ok("POST", "/v1/adapters/openadr3/credentials",
                                         {"role": "ven", "ven_name": "ven-x"})
        pv = ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(0.8), ramp_pct_s=0))
        bat = ControlledDer(DerModel(Rating(w_max=10_000, pv=False, w_cha_max=5_000,
                                            wh_max=20_000), ramp_pct_s=0))
        ven = Ven(VenConfig("ven-x", f"{listen}/openadr3/3.1.0", gw.pki / "platform/ca.pem",
                            cred["client_id"], cred["client_secret"], subscribe=subscribe,
                            poll_s=0.5 if not subscribe else 60.0, report_s=2.0),
                  {"pv-1": pv, "bat-1": bat})
        ready = asyncio.Event()
        tasks = [asyncio.create_task(ven.run(ready.set)), asyncio.create_task(stepping([pv, bat]))]
        try:
            async with asyncio.timeout(20):
                await ready.wait()
            assert all(r.targets for r in ven.resources.values())
            now = datetime.now(UTC)
            window = {"start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1))}
            await clients["ldc-a"].ok("POST", "/v1/instructions", {
                "kind": "limit", "target": {"kind": "resource", "id": "o1"}, **window,
                "limits": {"export_max_w": 4_000}, "reason": "feeder"})
            await clients["iso"].ok("POST", "/v1/instructions", {
                "kind": "dispatch", "target": {"kind": "resource", "id": "o2"}, **window,
                "setpoint_w": -3_000})
            await until(lambda: _true(abs(pv.measurement().w - 4_000) < 1
                                      and abs(bat.measurement().w + 3_000) < 1))

            async def acked():
                _, rows = await clients["admin"].get("/v1/acknowledgements?limit=1000")
                return {r["resource_id"] for r in rows if r["status"] == "started"} >= {"o1", "o2"}

            await until(acked)

            async def readings():
                _, rows = await clients["admin"].get("/v1/readings?resource_id=o1")
                return [r for r in rows if abs(r["value"] - 4_000) < 1]

            await until(readings)
            if subscribe:
                assert ven.stats.notifications >= 1
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def _true(value: bool) -> bool:
    return value


async def test_ven_rides_through_a_gateway_restart(tmp_path):
    """Issue 17 (9): the simulated VEN survives the gateway going away (polls and reports
    fail meanwhile), re-connects, re-authenticates when it must, sends again what failed,
    and follows the next limit - as a certified field VEN does."""
    from tests.support.gateway import GatewayProcess

    listen = f"https://127.0.0.1:{free_port()}"
    process = GatewayProcess(tmp_path, openadr3={"listen": listen})
    gw = await process.start()
    clients = await seed_platform(gw, [oadr("o1", "ven-x", "pv-1")])
    cred = await clients["agg-x"].ok("POST", "/v1/adapters/openadr3/credentials",
                                     {"role": "ven", "ven_name": "ven-x"})
    pv = ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(0.8), ramp_pct_s=0))
    ven = Ven(VenConfig("ven-x", f"{listen}/openadr3/3.1.0", gw.pki / "platform/ca.pem",
                        cred["client_id"], cred["client_secret"], poll_s=0.5, report_s=1.0,
                        report_retry_s=0.5), {"pv-1": pv})
    await process.stop()  # the VEN starts while its gateway is down: it waits for it
    ready = asyncio.Event()
    runner = asyncio.create_task(ven.run(ready.set))
    tasks = [runner, asyncio.create_task(stepping([pv]))]
    await asyncio.sleep(2)
    assert not runner.done() and not ready.is_set()
    await process.start()

    async def limit(watts: float) -> None:
        now = datetime.now(UTC)
        await clients["ldc-a"].ok("POST", "/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "o1"},
            "start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": watts}, "reason": "feeder"})

    async def acked(watts: float) -> bool:
        _, rows = await clients["admin"].get("/v1/readings?resource_id=o1&limit=1000")
        return any(abs(r["value"] - watts) < 1 for r in rows)

    try:
        async with asyncio.timeout(20):
            await ready.wait()
        await limit(4_000)
        await until(lambda: _true(abs(pv.measurement().w - 4_000) < 1))
        await until(lambda: acked(4_000))
        errors_before = ven.stats.poll_errors
        await process.stop()
        await asyncio.sleep(3)  # polls and reports fail meanwhile; the VEN keeps going
        assert not runner.done()
        assert ven.stats.poll_errors > errors_before
        await process.start()
        await limit(3_000)
        await until(lambda: _true(abs(pv.measurement().w - 3_000) < 1), within=30)
        await until(lambda: acked(3_000), within=30)
        assert not runner.done()
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await process.stop()
