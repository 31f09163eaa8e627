"""/metrics during a small fan-out: an LDC limits its area of four OpenADR DERs (one VEN,
webhook subscription), and the figures move as they should: platform requests by route,
acknowledgements by status, deliveries delivered, transactions timed, connected clients.
Also who may read it: the admin; nobody else unless loopback scraping is switched on."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from simulators.der import Constant, DerModel, Rating
from simulators.feeder.envelope import ControlledDer
from simulators.ven.ven import Ven, VenConfig
from tests.support import gateway as support
from tests.support.gateway import GatewayHandle, free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = [
    pytest.mark.filterwarnings("ignore:shutdown_timeout should be set:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
]
DOCS = Path(__file__).parents[2] / "docs"
NAMES = ("pv-1", "pv-2", "pv-3", "pv-4")


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def total(figures, name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in figures.items()
               if n == name and all(dict(lab).get(k) == want for k, want in labels.items()))


async def scrape(client) -> dict:
    status, text = await client.get("/metrics")
    assert status == 200, text
    return samples(text)


async def test_metrics_move_during_a_fan_out(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    async with gateway_in_process(tmp_path, openadr3={"listen": listen}) as gw:
        resources = [{"id": f"o{i}", "connection_point_id": "cp-a1", "kind": "pv",
                      "nameplate": {"export_max_w": 10_000}, "aggregator_id": "agg-x",
                      "binding": {"protocol": "openadr3",
                                  "address": {"ven": "ven-x", "resource": name}}}
                     for i, name in enumerate(NAMES, 1)]
        clients = await seed_platform(gw, resources)
        admin = clients["admin"]
        cred = await clients["agg-x"].ok("POST", "/v1/adapters/openadr3/credentials",
                                         {"role": "ven", "ven_name": "ven-x"})
        ders = {n: ControlledDer(DerModel(Rating(w_max=10_000), profile=Constant(0.8),
                                          ramp_pct_s=0)) for n in NAMES}
        ven = Ven(VenConfig("ven-x", f"{listen}/openadr3/3.1.0", gw.pki / "platform/ca.pem",
                            cred["client_id"], cred["client_secret"], subscribe=True,
                            poll_s=60.0, report_s=1.0), ders)
        ready = asyncio.Event()
        task = asyncio.create_task(ven.run(ready.set))
        try:
            async with asyncio.timeout(20):
                await ready.wait()
            before = await scrape(admin)
            now = datetime.now(UTC)
            await clients["ldc-a"].ok("POST", "/v1/instructions", {
                "kind": "limit", "target": {"kind": "area", "id": "ldc-a"},
                "start": iso(now - timedelta(seconds=5)), "end": iso(now + timedelta(hours=1)),
                "limits": {"export_max_w": 8_000}, "reason": "feeder"})

            after = before
            async with asyncio.timeout(30):
                while total(after, "dergw_acknowledgements_total", protocol="openadr3") < (
                        total(before, "dergw_acknowledgements_total", protocol="openadr3")
                        + len(NAMES)) or total(after, "dergw_deliveries_delivered_total",
                                               adapter="openadr3") <= total(
                        before, "dergw_deliveries_delivered_total", adapter="openadr3"):
                    await asyncio.sleep(0.3)
                    after = await scrape(admin)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        posted = dict(adapter="platform", route="/v1/instructions", method="POST")
        assert total(after, "dergw_http_requests_total", **posted, status="201") == total(
            before, "dergw_http_requests_total", **posted, status="201") + 1
        assert total(after, "dergw_http_request_duration_seconds_count", **posted) == total(
            before, "dergw_http_request_duration_seconds_count", **posted) + 1
        assert total(after, "dergw_acknowledgements_total", protocol="openadr3") >= total(
            before, "dergw_acknowledgements_total", protocol="openadr3") + len(NAMES)
        assert total(after, "dergw_db_transaction_seconds_count") > total(
            before, "dergw_db_transaction_seconds_count")
        assert total(after, "dergw_connected_clients", protocol="platform") >= 1
        assert ("dergw_event_loop_lag_seconds", ()) in after
        assert total(after, "dergw_deliveries_failed", adapter="openadr3") == 0
        assert total(after, "dergw_outbox_lag_seconds") < 30
        # ids never become label values: the route is the pattern
        assert not any("o1" in v for (_, lab) in after for _, v in lab)

        # Every metric the example alert rules use is one we export.
        rules = yaml.safe_load((DOCS / "prometheus/alerts.yml").read_text())
        exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
        exported = {name for name, _ in after}
        for used in set(re.findall(r"dergw_[a-z_]+", exprs)):
            assert used in exported, used

        # Who may read it: the admin only (by default).
        status, body = await clients["ldc-a"].get("/metrics")
        assert status == 403 and "admin" in body["detail"]
        async with aiohttp.ClientSession() as http, http.get(
                gw.platform_url + "/metrics", ssl=_anonymous(gw)) as resp:
            assert resp.status == 401


def _anonymous(gw):
    from pki.tls import client_context

    return client_context(gw.pki / "platform/ca.pem")


async def test_loopback_scrape_needs_the_setting(tmp_path):
    from gateway.runtime import running_gateway
    from gateway.settings import load_settings

    env = {**support.test_settings(tmp_path), "DERGW_METRICS_ALLOW_LOOPBACK": "true"}
    settings = load_settings(environ=env)
    async with running_gateway(settings) as running:
        gw = GatewayHandle(settings, env, gateway=running)
        async with aiohttp.ClientSession() as http, http.get(
                gw.platform_url + "/metrics", ssl=_anonymous(gw)) as resp:
            assert resp.status == 200
            text = await resp.text()
        assert "dergw_http_requests_total" in text
        # the status page is still behind its sign-in
        async with aiohttp.ClientSession() as http, http.get(
                gw.platform_url + "/v1/me", ssl=_anonymous(gw)) as resp:
            assert resp.status == 401
