"""The platform API end to end: `der-gateway serve` as a subprocess, real TLS, real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import ssl
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from pki.devpki import DevPki
from pki.tls import client_context
from tests.support.gateway import GatewayProcess, PlatformClient
from tests.support.seed import seed_platform

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def limit_body(rid: str, export_w: float, reason: str = "thermal limit, feeder F-A1") -> dict:
    return {"kind": "limit", "target": {"kind": "resource", "id": rid},
            "start": iso(NOW - timedelta(minutes=1)), "end": iso(NOW + timedelta(hours=2)),
            "limits": {"export_max_w": export_w}, "reason": reason}


def dispatch_body(kind: str, tid: str, watts: float) -> dict:
    return {"kind": "dispatch", "target": {"kind": kind, "id": tid},
            "start": iso(NOW), "end": iso(NOW + timedelta(hours=1)), "setpoint_w": watts}


@pytest.fixture
async def served(tmp_path):
    proc = GatewayProcess(tmp_path)
    handle = await proc.start()
    try:
        yield proc, handle
    finally:
        await proc.stop()


async def count_instructions(admin: PlatformClient) -> int:
    status, found = await admin.get("/v1/instructions?all=true&limit=1000")
    assert status == 200
    return len(found)


async def test_limit_with_client_certificate_clips_iso_dispatch(served):
    """Worked example 1 over HTTPS: effective control and limitation notice read back."""
    _proc, gw = served
    clients = await seed_platform(gw)
    status, limit = await clients["ldc-a"].post("/v1/instructions", limit_body("d1", 5000))
    assert status == 201, limit
    assert limit["issuer_id"] == "ldc-a"
    status, disp = await clients["iso"].post("/v1/instructions",
                                             dispatch_body("resource", "d1", 8000))
    assert status == 201, disp
    status, control = await clients["agg-x"].get("/v1/resources/d1/effective-control")
    assert status == 200
    now_interval = next(i for i in control["intervals"] if i["setpoint_w"] is not None)
    assert now_interval["setpoint_w"] == pytest.approx(5000)
    assert now_interval["limited_by"] == [limit["id"]]
    status, notices = await clients["agg-x"].get("/v1/notices")
    assert status == 200 and len(notices) == 1
    assert notices[0]["requested_w"] == 8000 and notices[0]["effective_w"] == 5000
    assert notices[0]["reason"] == "thermal limit, feeder F-A1"
    status, iso_notices = await clients["iso"].get("/v1/notices")
    assert [n["id"] for n in iso_notices] == [notices[0]["id"]]
    # Another aggregator sees neither the DER nor the notice.
    assert (await clients["agg-y"].get("/v1/resources/d1/effective-control"))[0] == 404
    assert (await clients["agg-y"].get("/v1/notices"))[1] == []


async def test_total_dso_reports_shortfall_to_iso(served):
    _proc, gw = served
    clients = await seed_platform(gw)
    status, body = await clients["iso"].post("/v1/instructions",
                                             dispatch_body("resource", "d2", 1000))
    assert status == 422 and "total DSO" in body["detail"]
    status, _ = await clients["iso"].post("/v1/instructions", dispatch_body("node", "N-B", 20_000))
    assert status == 201
    d2 = (await clients["admin"].get("/v1/resources/d2/effective-control"))[1]
    d3 = (await clients["admin"].get("/v1/resources/d3/effective-control"))[1]
    assert d2["intervals"][0]["setpoint_w"] == pytest.approx(10_000)
    assert d3["intervals"][0]["setpoint_w"] == pytest.approx(5_000)
    (shortfall,) = (await clients["iso"].get("/v1/notices"))[1]
    assert shortfall["kind"] == "shortfall"
    assert shortfall["requested_w"] - shortfall["effective_w"] == pytest.approx(5_000)


async def test_out_of_role_or_area_is_refused_and_nothing_stored(served):
    _proc, gw = served
    clients = await seed_platform(gw)
    admin = clients["admin"]
    before = await count_instructions(admin)
    cases = [
        (clients["ldc-a"], limit_body("d2", 1000), 403),  # d2 is in LDC B's area
        (clients["agg-x"], dispatch_body("resource", "d1", 1000), 403),  # not an ISO
        (clients["ldc-e"], limit_body("d1", 1000), 403),  # embedded LDC outside its area
        (clients["iso"], limit_body("nope", 1000), 404),
        (clients["ldc-a"], {**limit_body("d1", 1000), "limits": {"export_max_w": -5}}, 422),
        (clients["ldc-a"], {**limit_body("d1", 1000), "start": "2026-01-01T00:00:00"}, 422),
        (clients["ldc-a"], {**limit_body("d1", 1000), "surprise": 1}, 422),
        (clients["iso"], dispatch_body("resource", "d1", 50_000), 422),  # above nameplate
    ]
    for client, body, expected in cases:
        status, problem = await client.post("/v1/instructions", body)
        assert status == expected, (body, problem)
        assert problem["status"] == expected and problem["title"]
    status, problem = await clients["ldc-a"].post(
        "/v1/instructions", data=b'{"kind": "limit", ', headers={"Content-Type": "application/json"})
    assert status == 400 and problem["title"] == "Invalid input"
    status, _ = await clients["ldc-a"].post("/v1/instructions", data=io.BytesIO(b"x" * 2_000_000),
                                            headers={"Content-Type": "application/json"})
    assert status == 413
    assert await count_instructions(admin) == before
    # The host LDC may limit DERs of the LDC embedded below it.
    assert (await clients["ldc-h"].post("/v1/instructions", limit_body("d6", 1000)))[0] == 201


async def test_unknown_and_foreign_certificates_are_refused(served, tmp_path):
    _proc, gw = served
    await seed_platform(gw)
    # A certificate from the right CA but registered to nobody: 401 problem.
    stranger = gw.client("stranger")
    status, problem = await stranger.get("/v1/me")
    assert status == 401 and problem["status"] == 401
    # A certificate from another CA: the TLS handshake itself fails.
    other = DevPki(tmp_path / "other-pki")
    other.init(devices=(), aggregators=(), opcua_clients=(), modbus_clients=())
    foreign = other.issue_platform_client("admin")
    ctx = client_context(gw.pki / "platform/ca.pem", foreign, foreign.with_suffix(".key"))
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        async with aiohttp.ClientSession() as http, http.get(gw.platform_url + "/v1/me",
                                                             ssl=ctx) as resp:
            await resp.read()
    assert (await gw.client("admin").get("/v1/health"))[0] == 200  # still serving


async def test_bearer_tokens_idempotency_and_cancel(served):
    _proc, gw = served
    clients = await seed_platform(gw)
    status, issued = await clients["admin"].post("/v1/participants/ldc-a/tokens", {"ttl_days": 1})
    assert status == 201 and issued["token"].startswith("dgw_")
    ldc = gw.client(None, token=issued["token"])
    body = limit_body("d1", 4000)
    first = await ldc.request("POST", "/v1/instructions", body, headers={"Idempotency-Key": "k1"})
    again = await ldc.request("POST", "/v1/instructions", body, headers={"Idempotency-Key": "k1"})
    assert (first[0], again[0]) == (201, 200) and first[1]["id"] == again[1]["id"]
    clash = await ldc.request("POST", "/v1/instructions", limit_body("d1", 3000),
                              headers={"Idempotency-Key": "k1"})
    assert clash[0] == 409
    assert (await clients["ldc-h"].post(f"/v1/instructions/{first[1]['id']}/cancel"))[0] == 404
    status, cancelled = await ldc.post(f"/v1/instructions/{first[1]['id']}/cancel")
    assert status == 200 and cancelled["cancelled_at"]
    control = (await ldc.get("/v1/resources/d1/effective-control"))[1]
    assert control["intervals"] == []
    token_id = issued["token"].removeprefix("dgw_").split(".")[0]
    assert (await clients["admin"].request("DELETE", f"/v1/tokens/{token_id}"))[0] == 204
    assert (await ldc.get("/v1/me"))[0] == 401
    assert (await gw.client(None, token="dgw_nope.nope").get("/v1/me"))[0] == 401


async def read_events(gw, after: int | None, seconds: float) -> list[tuple[int, str, dict]]:
    client = gw.client("admin")
    events: list[tuple[int, str, dict]] = []
    timeout = aiohttp.ClientTimeout(total=seconds)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(
            gw.platform_url + "/v1/events", ssl=client.ssl,
            headers={} if after is None else {"Last-Event-ID": str(after)},
        ) as resp:
            assert resp.status == 200
            frame: dict[str, str] = {}
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "id" in frame:
                        events.append((int(frame["id"]), frame["event"], json.loads(frame["data"])))
                    frame = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    frame[key] = value
    except TimeoutError:
        pass
    return events


async def test_crash_between_commit_and_publish_delivers_once_after_restart(tmp_path):
    """Transactional outbox: the instruction was committed; its events go out exactly once."""
    proc = GatewayProcess(tmp_path)
    gw = await proc.start()
    clients = await seed_platform(gw)
    await proc.stop()
    gw = await proc.start({"DER_GATEWAY_FAULT_INJECT": "crash-before-publish:instruction.changed"})
    with contextlib.suppress(aiohttp.ClientError):  # it may die before it answers
        await clients["ldc-a"].post("/v1/instructions", limit_body("d1", 5000))
    assert await proc.wait_exit() == 70
    gw = await proc.start()
    try:
        (instruction,) = (await clients["ldc-a"].get("/v1/instructions"))[1]
        events = await read_events(gw, 0, seconds=3.0)
        mine = [e for e in events if e[1] == "instruction.changed"
                and e[2]["instruction_id"] == instruction["id"]]
        assert len(mine) == 1
        changed = [e for e in events if e[1] == "effective_control.changed"
                   and e[2]["resource_id"] == "d1" and e[0] > mine[0][0]]
        assert len(changed) == 1
        status = (await clients["admin"].get("/v1/status"))[1]
        assert status["outbox_pending"] == 0
        assert len({e[0] for e in events}) == len(events)  # no event id twice
    finally:
        await proc.stop()


async def test_event_stream_carries_notices_live(served):
    _proc, gw = served
    clients = await seed_platform(gw)
    reader = asyncio.create_task(read_events(gw, None, seconds=4.0))
    await asyncio.sleep(1.0)
    await clients["ldc-a"].post("/v1/instructions", limit_body("d1", 5000))
    await clients["iso"].post("/v1/instructions", dispatch_body("resource", "d1", 8000))
    events = await reader
    assert [e for e in events if e[1] == "notice" and e[2]["effective_w"] == 5000]


async def test_resource_update_recomputes_and_respects_areas(served):
    _proc, gw = served
    clients = await seed_platform(gw)
    status, der = await clients["admin"].get("/v1/resources/d2")
    assert status == 200
    await clients["iso"].post("/v1/instructions", dispatch_body("node", "N-B", 12_000))
    before = (await clients["admin"].get("/v1/resources/d2/effective-control"))[1]
    assert before["intervals"][0]["setpoint_w"] == pytest.approx(8_000)  # 12 kW * 10/15
    der["nameplate"]["export_max_w"] = 20_000
    body = {k: der[k] for k in ("id", "connection_point_id", "kind", "nameplate", "binding",
                                "aggregator_id")}
    assert (await clients["ldc-a"].request("PUT", "/v1/resources/d2", body))[0] == 404
    assert (await clients["agg-y"].request("PUT", "/v1/resources/d2", body))[0] == 404
    status, updated = await clients["ldc-b"].request("PUT", "/v1/resources/d2", body)
    assert status == 200 and updated["nameplate"]["export_max_w"] == 20_000
    after = (await clients["admin"].get("/v1/resources/d2/effective-control"))[1]
    assert after["intervals"][0]["setpoint_w"] == pytest.approx(9_600)  # 12 kW * 20/25

    assert (await clients["agg-y"].request("DELETE", "/v1/resources/d3"))[0] == 404
    assert (await clients["ldc-b"].request("DELETE", "/v1/resources/d3"))[0] == 204
    assert (await clients["admin"].get("/v1/resources/d3"))[0] == 404
    only = (await clients["admin"].get("/v1/resources/d2/effective-control"))[1]
    assert only["intervals"][0]["setpoint_w"] == pytest.approx(12_000)  # d2 takes it all
