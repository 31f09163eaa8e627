"""The status page in a real headless Chromium against the real gateway (in process, TLS on
loopback) and real OpenADR VENs (the simulator) answering over the network:

- sign-in refused with a wrong token; no page without a session;
- an LDC signs in and sees only its area; opens a DER: its control and plots;
- an instruction submitted through the API, whose acknowledgement timeline fills in live
  (its VEN starts only after the page is open, so every row arrives over the event stream);
- no page of another LDC's area by URL; sign-out ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.ven.ven import Ven, VenConfig
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import modbus_der, seed_platform
from tests.ui.browser import Browser, require_chromium

pytestmark = [
    pytest.mark.filterwarnings("ignore:shutdown_timeout should be set:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
    pytest.mark.timeout(240),
]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def oadr(rid: str, ven: str, name: str) -> dict:
    return {"id": rid, "connection_point_id": "cp-a1", "kind": "pv",
            "nameplate": {"export_max_w": 10_000}, "aggregator_id": "agg-x",
            "binding": {"protocol": "openadr3", "address": {"ven": ven, "resource": name}}}


class VenRun:
    """One simulated VEN with its PV DERs, running until stopped."""

    def __init__(self, listen: str, pki, cred: dict, name: str, resources: list[str]) -> None:
        self.ders = {r: ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(0.8),
                                               ramp_pct_s=0)) for r in resources}
        self.ven = Ven(VenConfig(name, f"{listen}/openadr3/3.1.0", pki / "platform/ca.pem",
                                 cred["client_id"], cred["client_secret"], subscribe=True,
                                 poll_s=60.0, report_s=1.0), self.ders)
        self.ready = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.tasks = [asyncio.create_task(self.ven.run(self.ready.set)),
                      asyncio.create_task(self._step())]
        async with asyncio.timeout(20):
            await self.ready.wait()

    async def _step(self) -> None:
        while True:
            for d in self.ders.values():
                d.step(0.2)
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_an_ldc_watches_its_area_live(tmp_path):
    require_chromium()
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, openadr3={"listen": listen}) as gw:
        clients = await seed_platform(gw, [oadr("o1", "ven-a", "pv-1"),
                                           oadr("o2", "ven-b", "pv-2"),
                                           modbus_der("d2", "cp-b1", 10_000, unit=2)])
        services = gw.gateway.services
        admin = await services.participant("admin")
        token, _ = await services.issue_token(admin, "ldc-a")
        creds = {v: await clients["agg-x"].ok("POST", "/v1/adapters/openadr3/credentials",
                                              {"role": "ven", "ven_name": v})
                 for v in ("ven-a", "ven-b")}
        now = datetime.now(UTC)
        window = {"start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1))}
        ven_a = VenRun(listen, gw.pki, creds["ven-a"], "ven-a", ["pv-1"])
        await ven_a.start()
        first = await clients["ldc-a"].ok("POST", "/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "o1"}, **window,
            "limits": {"export_max_w": 4_000}, "reason": "thermal limit, feeder F-A1"})
        other = await clients["ldc-b"].ok("POST", "/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "d2"}, **window,
            "limits": {"export_max_w": 1_000}, "reason": "ldc-b's own"})

        async def has_power_readings():
            _, rows = await clients["admin"].get("/v1/readings?resource_id=o1&quantity=W")
            return len(rows) >= 2

        for _ in range(100):
            if await has_power_readings():
                break
            await asyncio.sleep(0.3)

        browser = await asyncio.to_thread(Browser, gw.platform_url,
                                          gw.pki / "platform/server.pem")
        ven_b = VenRun(listen, gw.pki, creds["ven-b"], "ven-b", ["pv-2"])
        try:
            # No session: every page sends the browser to sign-in.
            await browser.open("/ui/ders/o1")
            assert browser.path == "/ui/signin"
            await browser.fill_and_submit("#token", "dgw_0000.wrong", "#signin-token")
            assert "sign-in refused" in await browser.text("#signin-error")
            await browser.screenshot("01-signin-refused")
            assert not [c for c in browser.cookies() if c["name"] == "__Host-dergw-session"]

            # The LDC signs in with its token and sees its area only.
            await browser.open("/ui/signin")
            await browser.fill_and_submit("#token", token, "#signin-token")
            assert browser.path == "/ui/"
            cookie = next(c for c in browser.cookies() if c["name"] == "__Host-dergw-session")
            assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
            fleet = await browser.text("main")
            assert "LDC ldc-a" in fleet and "o1" in fleet and "o2" in fleet
            assert "d2" not in fleet and "ldc-b" not in fleet
            await browser.screenshot("02-fleet-ldc-a")

            # A DER: its control with provenance, and plots drawn by uPlot.
            await browser.open("/ui/ders/o1")
            intervals = await browser.text("#control-intervals")
            assert "4.0 kW" in intervals and "ldc-a" in intervals
            assert first["id"][:8] in intervals
            await browser.wait_for(lambda: browser.count("#plot-control canvas"))
            await browser.wait_for(lambda: browser.count("#plot-W canvas"))
            assert int(await browser.attribute("#plot-W", "data-points")) >= 2
            await browser.screenshot("03-der-o1")

            # Another LDC's pages are not reachable by URL.
            await browser.open("/ui/ders/d2")
            assert "no such DER in your view" in await browser.text("main")
            await browser.open(f"/ui/instructions/{other['id']}")
            assert "no such instruction in your view" in await browser.text("main")
            await browser.screenshot("04-other-area-refused")

            # An instruction through the API; its page open before any DER could answer.
            second = await clients["ldc-a"].ok("POST", "/v1/instructions", {
                "kind": "limit", "target": {"kind": "resource", "id": "o2"}, **window,
                "limits": {"export_max_w": 3_000}, "reason": "voltage, feeder F-A1"})
            await browser.open(f"/ui/instructions/{second['id']}")
            assert await browser.count("#timeline tr.ack") == 0
            await browser.script("window.dergwLoadedOnce = true;")
            await ven_b.start()  # now o2's VEN connects, fetches the event and answers
            await browser.wait_for(lambda: browser.count("#timeline tr.ack"))
            timeline = await browser.text("#timeline")
            assert "o2" in timeline
            assert await browser.script("return window.dergwLoadedOnce === true;")  # no reload
            assert await browser.text("#acked") == "1"
            assert "p50" in await browser.text("#latency")
            await browser.wait_for(lambda: browser.count("#plot-latency canvas"))
            await browser.screenshot("05-instruction-live")

            # Sign-out ends the session: the next page asks for sign-in again.
            await browser.click("form.signout button")
            assert browser.path == "/ui/signin"
            await browser.open("/ui/")
            assert browser.path == "/ui/signin"
        finally:
            await ven_b.stop()
            await ven_a.stop()
            await asyncio.to_thread(browser.quit)
