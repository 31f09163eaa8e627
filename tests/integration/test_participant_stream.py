"""Participant events on the platform event stream, each shown only to whom it concerns:
the admin sees all, anyone else registrations in its own view (docs/core.md, Visibility),
and nobody but the admin hears of credentials. Real gateway in process, real TLS and SQLite.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support.gateway import PlatformClient, gateway_in_process
from tests.support.seed import PARTICIPANTS, _sha, seed_platform

SCADA = [{"id": "scada-a", "role": "scada", "ldc_id": "ldc-a"},
         {"id": "scada-e", "role": "scada", "ldc_id": "ldc-e"}]
SEEDED = {p["id"] for p in PARTICIPANTS}
LDCS_AND_AGGREGATORS = {p["id"] for p in PARTICIPANTS if p["role"] in {"ldc", "aggregator"}}


async def participant_events(client: PlatformClient, query: str = "?after=0&topics="
                             "participant.changed", seconds: float = 2.0
                             ) -> set[tuple[str, str]]:
    """(participant, change) of every participant event the client's stream shows, replayed
    from the start."""
    seen: set[tuple[str, str]] = set()
    frame: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession(headers=client.headers,
                                         timeout=aiohttp.ClientTimeout(total=seconds)) as http, \
                http.get(client.base + "/v1/events" + query, ssl=client.ssl) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line:
                    key, _, value = line.partition(": ")
                    frame[key] = value
                    continue
                if frame.get("event") == "participant.changed":
                    data = json.loads(frame["data"])
                    assert set(data) == {"participant_id", "change"}  # nothing else, no secret
                    seen.add((data["participant_id"], data["change"]))
                frame = {}
    except TimeoutError:
        pass
    return seen


async def test_participant_events_are_shown_by_area_and_credentials_to_the_admin(tmp_path):
    async with gateway_in_process(tmp_path) as gw:
        clients = await seed_platform(gw, resources=[])
        admin = clients["admin"]
        for p in SCADA:
            clients[p["id"]] = gw.client(p["id"])
        await admin.ok("POST", "/v1/participants",
                       [{**p, "cert_sha256": _sha(clients[p["id"]])} for p in SCADA])
        token = (await admin.ok("POST", "/v1/participants/ldc-a/tokens", {}))["token"]
        token_id = token.removeprefix("dgw_").split(".")[0]
        status, _ = await admin.request("DELETE", f"/v1/tokens/{token_id}")
        assert status == 204

        viewers = ("admin", "iso", "ldc-h", "ldc-e", "ldc-a", "agg-x", "scada-e")
        shown = dict(zip(viewers, await asyncio.gather(
            participant_events(admin, "?after=0"),  # the default topics include them
            *(participant_events(clients[v]) for v in viewers[1:])), strict=True))

    registered = {(pid, "registered") for pid in {"admin", *SEEDED, "scada-a", "scada-e"}}
    assert shown["admin"] == registered | {("ldc-a", "token_issued"),
                                           ("ldc-a", "token_revoked")}
    assert shown["iso"] == {(pid, "registered") for pid in {"iso", *LDCS_AND_AGGREGATORS}}
    # a host LDC: itself, its embedded LDC and that LDC's SCADA client; not the host above
    assert shown["ldc-h"] == {(p, "registered") for p in ("ldc-h", "ldc-e", "scada-e")}
    assert shown["ldc-e"] == {(p, "registered") for p in ("ldc-e", "scada-e")}
    assert shown["scada-e"] == shown["ldc-e"]  # a SCADA client sees as its LDC
    assert shown["ldc-a"] == {(p, "registered") for p in ("ldc-a", "scada-a")}  # no tokens
    assert shown["agg-x"] == {("agg-x", "registered")}
