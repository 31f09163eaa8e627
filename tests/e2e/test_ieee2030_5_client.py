"""The 2030.5 simulator clients against the real gateway (in process, real TLS on loopback):
out-of-band device with PIN check, aggregator with subscriptions, in-band registration."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.ieee2030_5_client.client import ClientConfig, Ieee2030Client, RegistrationError
from simulators.ieee2030_5_client.readings import mrid
from tests.support.gateway import GatewayProcess, free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = [
    pytest.mark.filterwarnings("ignore:shutdown_timeout should be set:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def der(w_max: float = 10_000.0) -> ControlledDer:
    return ControlledDer(DerModel(Rating(w_max=w_max), profile=Constant(0.8), ramp_pct_s=0.0))


def fake_lfdi(name: str) -> str:
    return (mrid("lfdi", name) + "00000000")[:40]


def resource(rid: str, lfdi: str, agg: str = "agg-x") -> dict:
    return {"id": rid, "connection_point_id": "cp-a1", "kind": "pv",
            "nameplate": {"export_max_w": 10_000}, "aggregator_id": agg,
            "binding": {"protocol": "ieee2030_5", "address": {"lfdi": lfdi, "pin": 424242}}}


async def until(probe, within: float = 20.0):
    async with asyncio.timeout(within):
        while True:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.1)


async def stepping(ders: list[ControlledDer]) -> None:
    while True:
        for d in ders:
            d.step(0.1)
        await asyncio.sleep(0.1)


async def test_device_and_aggregator_clients_apply_limits_and_acknowledge(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        import json
        ids = json.loads((gw.pki / "identities.json").read_text())
        dev_lfdi = ids["ieee2030_5/device-1"]["lfdi"]
        agg_lfdi = ids["ieee2030_5/aggregator-1"]["lfdi"]
        behind = [fake_lfdi(f"agg-der-{n}") for n in range(3)]
        clients = await seed_platform(gw, [resource("dev-1", dev_lfdi)] + [
            resource(f"agg-{n}", lfdi) for n, lfdi in enumerate(behind)])
        admin = clients["admin"]
        await admin.ok("PUT", f"/v1/adapters/ieee2030_5/clients/{agg_lfdi}",
                       {"aggregator_id": "agg-x"})
        await admin.ok("PUT", "/v1/adapters/ieee2030_5/rates/poll",
                       {"resource": "DERProgramList", "seconds": 1})
        await admin.ok("PUT", "/v1/adapters/ieee2030_5/rates/post",
                       {"resource": "MirrorUsagePoint", "seconds": 1})

        dev_der = der()
        agg_ders = {lfdi: der() for lfdi in behind}
        device = Ieee2030Client(ClientConfig("device-1", listen, gw.pki, pin=424242),
                                {dev_lfdi: dev_der})
        aggregator = Ieee2030Client(ClientConfig("aggregator-1", listen, gw.pki, subscribe=True,
                                                 min_poll_s=30.0), agg_ders)
        wrong_pin = Ieee2030Client(ClientConfig("device-1", listen, gw.pki, pin=1), {
            dev_lfdi: der()})
        with pytest.raises(RegistrationError):
            await wrong_pin.run()

        ready = [asyncio.Event(), asyncio.Event()]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(device.run(ready[0].set)),
                     group.create_task(aggregator.run(ready[1].set)),
                     group.create_task(stepping([dev_der, *agg_ders.values()]))]
            try:
                async with asyncio.timeout(30):
                    await asyncio.gather(*(r.wait() for r in ready))
                assert len(aggregator.agents) == 3 and len(device.agents) == 1
                now = datetime.now(UTC)
                await clients["ldc-a"].ok("POST", "/v1/instructions", {
                    "kind": "limit", "target": {"kind": "connection_point", "id": "cp-a1"},
                    "start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1)),
                    "limits": {"export_max_w": 12_000}, "reason": "feeder F-A1"})
                # 12 kW shared by nameplate among 4 DERs of 10 kW: 3 kW each.
                all_ders = [dev_der, *agg_ders.values()]
                await until(lambda: _true(all(abs(d.measurement().w - 3_000) < 1 for d in all_ders)))

                async def acked():
                    _, rows = await admin.get("/v1/acknowledgements?limit=1000")
                    started = {r["resource_id"] for r in rows if r["status"] == "started"}
                    return started >= {"dev-1", "agg-0", "agg-1", "agg-2"}

                await until(acked)
                # the aggregator got it by notification, not by polling (it polls every 30 s)
                assert aggregator.stats.notifications >= 3

                async def readings():
                    _, rows = await admin.get("/v1/readings?resource_id=dev-1&quantity=W")
                    return [r for r in rows if abs(r["value"] - 3_000) < 1]

                await until(readings)
            finally:
                for t in tasks:
                    t.cancel()


async def _true(value: bool) -> bool:
    return value


async def test_in_band_registration_with_connection_point(tmp_path):
    """An aggregator registers its DERs in-band; naming a known ConnectionPoint makes each a
    platform resource. The Registration carries the server's PIN, which the client checks."""
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        import json
        ids = json.loads((gw.pki / "identities.json").read_text())
        agg_lfdi = ids["ieee2030_5/aggregator-1"]["lfdi"]
        clients = await seed_platform(gw, [])
        await clients["admin"].ok("PUT", f"/v1/adapters/ieee2030_5/clients/{agg_lfdi}",
                                  {"aggregator_id": "agg-x"})
        lfdis = [fake_lfdi(f"inband-{n}") for n in range(2)]
        client = Ieee2030Client(ClientConfig("aggregator-1", listen, gw.pki, in_band=True,
                                             connection_point="cp-a1", pin=111115,
                                             readings=False), {x: der() for x in lfdis})
        ready = asyncio.Event()
        task = asyncio.create_task(client.run(ready.set))
        try:
            async with asyncio.timeout(30):
                await ready.wait()
            for lfdi in lfdis:
                status, res = await clients["agg-x"].get(f"/v1/resources/2030.5-{lfdi.lower()}")
                assert status == 200, res
                assert res["binding"]["address"]["lfdi"].upper() == lfdi
                assert res["aggregator_id"] == "agg-x"
            assert sorted(client.agents) == sorted(lfdis)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_discovery_is_retried_with_back_off_until_the_server_answers(tmp_path):
    """A client whose server is not reachable yet keeps trying, as a field client does,
    and connects once it is (here: the listener appears behind a relay after a while)."""
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        import json
        agg_lfdi = json.loads((gw.pki / "identities.json").read_text())[
            "ieee2030_5/aggregator-1"]["lfdi"]
        lfdi = fake_lfdi("late-1")
        clients = await seed_platform(gw, [resource("late-1", lfdi)])
        await clients["admin"].ok("PUT", f"/v1/adapters/ieee2030_5/clients/{agg_lfdi}",
                                  {"aggregator_id": "agg-x"})
        relay_port = free_port()
        client = Ieee2030Client(ClientConfig(
            "aggregator-1", f"https://127.0.0.1:{relay_port}", gw.pki, readings=False,
            retry_initial_s=0.2, retry_max_s=0.5), {lfdi: der()})
        ready = asyncio.Event()
        task = asyncio.create_task(client.run(ready.set))
        try:
            await until(lambda: _true(client.stats.discovery_retries >= 2))  # refused twice
            gw_port = int(listen.rsplit(":", 1)[1])

            async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", gw_port)
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

            server = await asyncio.start_server(relay, "127.0.0.1", relay_port)
            async with asyncio.timeout(20):
                await ready.wait()
            assert list(client.agents) == [lfdi]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server.close()


async def test_freq_droop_function_settings_reach_the_simulated_der(tmp_path):
    """A function_settings instruction with freq_droop travels as opModFreqDroop over mTLS
    and the simulated client adopts it as the DER's frequency droop; an unrepresentable one is
    acknowledged cannot_comply."""
    from simulators.der import FreqDroop

    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, ieee2030_5={"listen": listen}) as gw:
        import json
        ids = json.loads((gw.pki / "identities.json").read_text())
        dev_lfdi = ids["ieee2030_5/device-1"]["lfdi"]
        clients = await seed_platform(gw, [resource("dev-1", dev_lfdi)])
        admin, ldc = clients["admin"], clients["ldc-a"]
        await admin.ok("PUT", "/v1/adapters/ieee2030_5/rates/poll",
                       {"resource": "DERProgramList", "seconds": 1})
        dev_der = der()
        device = Ieee2030Client(ClientConfig("device-1", listen, gw.pki, pin=424242),
                                {dev_lfdi: dev_der})
        ready = asyncio.Event()
        now = datetime.now(UTC)
        window = {"start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1))}
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(device.run(ready.set)),
                     group.create_task(stepping([dev_der]))]
            try:
                async with asyncio.timeout(30):
                    await ready.wait()
                await ldc.ok("POST", "/v1/instructions", {
                    "kind": "limit", "target": {"kind": "resource", "id": "dev-1"}, **window,
                    "limits": {"export_max_w": 6_000}, "reason": "feeder F-A1"})
                await ldc.ok("POST", "/v1/instructions", {
                    "kind": "function_settings", "target": {"kind": "resource", "id": "dev-1"},
                    "start": window["start"], "reason": "IEEE 1547 settings for F-A1",
                    "settings": {"freq_droop": {"db_of_hz": 0.017, "db_uf_hz": 0.036,
                                                "k_of": 0.03, "k_uf": 0.05, "response_s": 2}}})
                wanted = FreqDroop(db_of_hz=0.017, db_uf_hz=0.036, k_of=0.03, k_uf=0.05,
                                   response_s=2.0)
                setting = dev_der.model.freq_watt
                await until(lambda: _true(setting.enabled and setting.value == wanted))
                await until(lambda: _true(abs(dev_der.measurement().w - 6_000) < 1))  # and the limit

                _, body = await ldc.post("/v1/instructions", {
                    "kind": "function_settings", "target": {"kind": "resource", "id": "dev-1"},
                    "start": window["start"], "reason": "a bad droop",
                    "settings": {"freq_droop": {"db_of_hz": 0.017, "db_uf_hz": 0.036,
                                                "k_of": 0, "k_uf": 0.05}}})

                async def refused():
                    _, rows = await admin.get(f"/v1/acknowledgements?instruction_id={body['id']}")
                    return [r for r in rows if r["status"] == "cannot_comply"]

                (ack,) = await until(refused)
                assert "k_of 0 is outside" in ack["detail"]
                # no longer told: the DER is back on its own setting
                await until(lambda: _true(not setting.enabled))
            finally:
                for t in tasks:
                    t.cancel()


async def test_the_simulated_client_rides_through_a_gateway_restart(tmp_path):
    """Issue 17, finding 9: the gateway restarts under a running simulated client. The
    client keeps running, reconnects, and what it owed while the gateway was away (the
    control's "completed" Response, its readings) arrives once it is back."""
    listen = f"https://127.0.0.1:{free_port()}"
    proc = GatewayProcess(tmp_path, ieee2030_5={"listen": listen})
    gw = await proc.start()
    import json
    dev_lfdi = json.loads((gw.pki / "identities.json").read_text())["ieee2030_5/device-1"]["lfdi"]
    clients = await seed_platform(gw, [resource("dev-1", dev_lfdi)])
    admin, ldc = clients["admin"], clients["ldc-a"]
    for kind, name in (("poll", "DERProgramList"), ("post", "MirrorUsagePoint")):
        await admin.ok("PUT", f"/v1/adapters/ieee2030_5/rates/{kind}",
                       {"resource": name, "seconds": 1})
    dev_der = der()
    device = Ieee2030Client(ClientConfig("device-1", listen, gw.pki, pin=424242),
                            {dev_lfdi: dev_der})
    ready = asyncio.Event()
    run = asyncio.create_task(device.run(ready.set))
    stepper = asyncio.create_task(stepping([dev_der]))

    async def acked(instruction_id: str, wanted: set[str]) -> bool:
        _, rows = await admin.get(f"/v1/acknowledgements?instruction_id={instruction_id}")
        return wanted <= {r["status"] for r in rows}

    try:
        async with asyncio.timeout(30):
            await ready.wait()
        now = datetime.now(UTC)
        status, first = await ldc.post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "dev-1"},
            "start": iso(now - timedelta(minutes=1)), "end": iso(now + timedelta(seconds=8)),
            "limits": {"export_max_w": 6_000}, "reason": "feeder F-A1"})
        assert status == 201, first
        await until(lambda: acked(first["id"], {"received", "started"}))
        assert await proc.stop() == 0
        await asyncio.sleep(9)  # the control ends while the gateway is away: "completed" fails
        assert not run.done() and device.stats.response_errors >= 1
        gw = await proc.start()
        await until(lambda: acked(first["id"], {"completed"}), within=60)
        now = datetime.now(UTC)
        status, second = await ldc.post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "dev-1"},
            "start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1)),
            "limits": {"export_max_w": 5_000}, "reason": "feeder F-A1"})
        assert status == 201, second
        await until(lambda: acked(second["id"], {"started"}), within=30)
        await until(lambda: _true(abs(dev_der.measurement().w - 5_000) < 1))
        assert not run.done()
        assert device.stats.responses_lost == 0
        # every Response the client counted as posted is on the platform, once
        _, rows = await admin.get("/v1/acknowledgements?resource_id=dev-1&limit=1000")
        stored = [(r["control_ref"], r["protocol_status"]) for r in rows
                  if r.get("protocol") == "ieee2030_5" and r.get("control_ref")]
        agent = device.agents[dev_lfdi.upper()]
        posted = [(mrid, str(s)) for mrid, statuses in agent.responses.items() for s in statuses]
        assert sorted(stored) == sorted(set(posted)), (stored, posted)
        assert not agent.unsent  # readings kept while it was away went out
    finally:
        run.cancel()
        stepper.cancel()
        for task in (run, stepper):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await proc.stop()
