"""Issue 17 (1): an event and the webhooks that announce it commit together. `der-gateway
serve` is killed by the fault point inside the records write, after the event's rows and
before the delivery rows; after a restart every subscriber is notified, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.openadr3.conftest import CORE_WARNINGS, Vtn, oadr_der, until
from tests.support.gateway import GatewayProcess, free_port
from tests.support.seed import seed_platform
from tests.support.webhooks import WebhookReceiver

pytestmark = CORE_WARNINGS
FAULT = {"DER_GATEWAY_FAULT_INJECT": "crash-between-records-and-deliveries"}


async def test_event_and_its_webhooks_survive_a_crash_between_the_two_writes(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    process = GatewayProcess(tmp_path, openadr3={"listen": listen})
    receivers = [await WebhookReceiver().start() for _ in range(2)]
    try:
        gw = await process.start(extra_env=FAULT)
        clients = await seed_platform(gw, resources=[oadr_der("o1", "ven-x", "bat-1")])
        vtn = Vtn(gw, listen, clients)
        ven = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
        token = await vtn.token(ven)
        for hooks in receivers:  # two subscribers of the VEN's events
            status, _ = await vtn.call("POST", "/subscriptions", token, {
                "clientName": "ven-x", "objectOperations": [{
                    "objects": ["EVENT"], "operations": ["CREATE", "UPDATE"],
                    "callbackUrl": hooks.url}]})
            assert status == 201
        now = datetime.now(UTC)
        status, _ = await clients["ldc-a"].post("/v1/instructions", {
            "kind": "limit", "target": {"kind": "resource", "id": "o1"},
            "start": (now - timedelta(minutes=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
            "limits": {"export_max_w": 2_000}, "reason": "crash test"})
        assert status == 201
        # Rendering the limit writes the event with its webhooks: the process dies inside.
        assert await process.wait_exit(timeout=20) == 70
        assert all(not hooks.posts for hooks in receivers)

        await process.start()  # no fault now: the follower renders from the store again
        await until(lambda: _all(receivers), within=20)
        await asyncio.sleep(3)  # and nothing comes twice
        for seen in (hooks.operations() for hooks in receivers):
            created = [k for k in seen if k.startswith("CREATE:")]
            assert len(created) == 1, seen
            assert seen[created[0]] == 1, seen
            assert sum(seen.values()) == 1, seen
        _, events = await vtn.call("GET", "/events", token, params=[("targets", "ven-x/bat-1")])
        assert [e["id"] for e in events] == [created[0].split(":", 1)[1]]
    finally:
        await process.stop()
        for hooks in receivers:
            await hooks.stop()



async def _all(receivers: list[WebhookReceiver]) -> bool:
    return all(hooks.posts for hooks in receivers)
