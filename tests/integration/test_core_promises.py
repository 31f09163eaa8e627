"""The core's promises where outsiders found them broken (issue 17, items 3-5): least
privilege on DER changes and on what participants and events reveal, and nonsense refused
with state left as it was. Against `der-gateway serve` over real TLS."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.support.gateway import GatewayProcess
from tests.support.seed import modbus_der, seed_platform

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def limit(rid: str, watts: float, start: datetime | None = None,
          end: datetime | None = None) -> dict:
    return {"kind": "limit", "target": {"kind": "resource", "id": rid},
            "start": iso(start or NOW - timedelta(minutes=1)),
            "end": iso(end or NOW + timedelta(hours=2)), "limits": {"export_max_w": watts}}


@pytest.fixture
async def platform(tmp_path):
    proc = GatewayProcess(tmp_path)
    gw = await proc.start()
    try:
        yield gw, await seed_platform(gw)
    finally:
        await proc.stop()


async def test_an_aggregator_cannot_move_resize_or_drop_a_der_under_a_dso(platform):
    _gw, c = platform
    assert (await c["ldc-a"].post("/v1/instructions", limit("d1", 5000)))[0] == 201
    der = modbus_der("d1", "cp-a1", 10_000, unit=1)
    moved = {**der, "connection_point_id": "cp-c1"}
    status, body = await c["agg-x"].request("PUT", "/v1/resources/d1", moved)
    assert status == 403 and "ldc-a" in body["detail"]
    bigger = {**der, "nameplate": {"export_max_w": 1e9}}
    assert (await c["agg-x"].request("PUT", "/v1/resources/d1", bigger))[0] == 403
    status, body = await c["agg-x"].request("DELETE", "/v1/resources/d1")
    assert status == 409 and "ldc-a" in body["detail"]
    # Nothing changed; the LDC may do all three.
    assert (await c["admin"].get("/v1/resources/d1"))[1]["connection_point_id"] == "cp-a1"
    assert (await c["ldc-a"].request("PUT", "/v1/resources/d1", bigger))[0] == 200
    assert (await c["ldc-a"].request("DELETE", "/v1/resources/d1"))[0] == 204


async def test_an_aggregator_still_changes_what_is_its_own(platform):
    _gw, c = platform
    der = modbus_der("d1", "cp-a1", 10_000, unit=1)
    rebound = {**der, "binding": {"protocol": "modbus",
                                  "address": {"host": "127.0.0.1", "port": 1502, "unit_id": 9}}}
    assert (await c["agg-x"].request("PUT", "/v1/resources/d1", rebound))[0] == 200
    assert (await c["agg-x"].request("DELETE", "/v1/resources/d1"))[0] == 204  # no control


async def test_participants_and_instruction_events_follow_least_privilege(platform):
    gw, c = platform
    status, seen = await c["agg-x"].get("/v1/participants")
    assert status == 200 and [p["id"] for p in seen] == ["agg-x"]
    assert seen[0]["cert_sha256"]  # its own fingerprint only
    status, seen = await c["iso"].get("/v1/participants")
    assert {p["id"] for p in seen} >= {"ldc-a", "agg-x"} and "admin" not in {p["id"] for p in seen}
    assert all(p["cert_sha256"] is None for p in seen if p["id"] != "iso")
    assert (await c["agg-x"].get("/v1/participants/ldc-a"))[0] == 404

    # ldc-b's event stream carries ldc-a's instruction on ldc-a's DER? It must not.
    status, ins = await c["ldc-a"].post("/v1/instructions", limit("d1", 5000))
    assert status == 201
    seen_by: dict[str, list[str]] = {}
    for who in ("ldc-a", "ldc-b"):
        events = await read_events(gw, c[who], "instruction.changed")
        seen_by[who] = [e["instruction_id"] for e in events]
    assert seen_by == {"ldc-a": [ins["id"]], "ldc-b": []}


async def read_events(gw, client, topics: str) -> list[dict]:
    """The events replayed from the start of the stream (`after=0`), until it goes quiet."""
    found: list[dict] = []
    async with aiohttp.ClientSession(headers=client.headers) as http, http.get(
            f"{client.base}/v1/events?after=0&topics={topics}", ssl=client.ssl) as resp:
        assert resp.status == 200
        try:
            while True:
                line = await asyncio.wait_for(resp.content.readline(), 1.5)
                if line.startswith(b"data: "):
                    found.append(json.loads(line[6:]))
        except TimeoutError:
            return found


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    (b'{"id": "x", "role": "iso", "role": "ldc"}', "repeats the key"),
    (b'{"id": NaN}', "NaN"),
])
async def test_hostile_json_is_a_clear_400_and_stores_nothing(platform, raw, reason):
    _gw, c = platform
    before = len((await c["admin"].get("/v1/participants"))[1])
    status, body = await c["admin"].request(
        "POST", "/v1/participants", data=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and reason in body["detail"]
    assert len((await c["admin"].get("/v1/participants"))[1]) == before
    assert (await c["admin"].get("/v1/health"))[0] == 200  # still serving


@pytest.mark.parametrize(("start", "end", "reason"), [
    (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), "days in the past"),
    (NOW - timedelta(hours=3), NOW - timedelta(hours=1), "would have no effect"),
    (NOW, NOW + timedelta(days=4000), "days ahead"),
])
async def test_instruction_windows_out_of_range_are_refused(platform, start, end, reason):
    _gw, c = platform
    status, body = await c["ldc-a"].post("/v1/instructions", limit("d1", 5000, start, end))
    assert status == 422 and reason in body["detail"], body
    assert (await c["admin"].get("/v1/instructions?all=true"))[1] == []


async def test_participants_are_corrected_removed_and_never_host_each_other(platform):
    _gw, c = platform
    admin = c["admin"]
    # ldc-h hosts ldc-e: making ldc-h embedded in ldc-e would be a cycle.
    cycle = {"id": "ldc-h", "role": "ldc", "dso_model": "dual_participation",
             "host_ldc_id": "ldc-e"}
    status, body = await admin.request("PUT", "/v1/participants/ldc-h", cycle)
    assert status == 400 and "cycle" in body["detail"]
    status, body = await admin.post("/v1/participants", [
        {"id": "p1", "role": "ldc", "dso_model": "total", "host_ldc_id": "p2"},
        {"id": "p2", "role": "ldc", "dso_model": "total", "host_ldc_id": "p1"}])
    assert status == 400 and "cycle" in body["detail"]
    # A correction (PUT replaces): the DSO model of ldc-a, and a name.
    current = (await admin.get("/v1/participants/ldc-a"))[1]
    fixed = {k: current[k] for k in ("id", "role", "cert_sha256")}
    fixed |= {"dso_model": "market_facilitator", "name": "LDC A"}
    status, body = await admin.request("PUT", "/v1/participants/ldc-a", fixed)
    assert status == 200 and body["dso_model"] == "market_facilitator"
    assert (await c["ldc-a"].get("/v1/me"))[1]["name"] == "LDC A"
    # Removal: refused while referenced, allowed when not; not by others.
    status, body = await admin.request("DELETE", "/v1/participants/agg-x")
    assert status == 409 and "DER" in body["detail"]
    assert (await c["ldc-a"].request("DELETE", "/v1/participants/agg-y"))[0] == 403
    await admin.ok("DELETE", "/v1/resources/d5")
    assert (await admin.request("DELETE", "/v1/participants/agg-y"))[0] == 204
    assert (await c["agg-y"].get("/v1/me"))[0] == 401


async def test_token_lifetimes_are_positive_and_bounded(platform):
    _gw, c = platform
    for days in (0, -1, 367):
        status, _ = await c["admin"].post("/v1/participants/agg-x/tokens", {"ttl_days": days})
        assert status in (400, 422)
    status, body = await c["admin"].post("/v1/participants/agg-x/tokens", {"ttl_days": 1})
    assert status == 201 and body["expires_at"]
