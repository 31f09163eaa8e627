"""Durable deliveries: retries with back-off until the receiver answers; SSRF checks."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from gateway.delivery import DeliveryQueue, check_callback_url
from gateway.errors import InvalidInput
from gateway.store.engine import Database
from tests.support.gateway import free_port


async def test_retries_until_the_receiver_recovers_and_survives_restart(tmp_path):
    received: list[bytes] = []
    failures = {"left": 2}

    async def hook(request: web.Request) -> web.Response:
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503)
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await db.upgrade()
    url = f"http://127.0.0.1:{port}/hook"
    await check_callback_url(url, dev_mode=True)
    # Enqueued while no worker runs (as if the process had stopped): it waits in the store.
    queue = DeliveryQueue(db).for_adapter("test")
    await queue.enqueue(url, b"<Notification/>", content_type="application/sep+xml")
    worker = DeliveryQueue(db, dev_mode=True)
    worker.base_backoff_s = 0.05
    async with worker.running():
        for _ in range(100):  # until it is recorded, not only received (a worker stopped
            # between the two sends it again after a restart: at least once)
            if (await worker.stats())["delivered"]:
                break
            await asyncio.sleep(0.05)
    assert received == [b"<Notification/>"]
    assert await worker.stats() == {"delivered": 1, "failed": 0, "pending": 0,
                                    "oldest_pending_s": 0.0}
    await runner.cleanup()
    await db.close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x",       # plain http outside dev mode
    "https://127.0.0.1:9/x",      # loopback outside dev mode
    "https://10.0.0.5/x",         # private
    "https://169.254.169.254/x",  # link-local metadata service
    "https://user:pw@example.invalid/x",
    "ftp://host/x",
])
async def test_hostile_callbacks_are_refused(url):
    with pytest.raises(InvalidInput):
        await check_callback_url(url, dev_mode=False)


async def test_worker_refuses_forbidden_addresses_at_send_time(tmp_path):
    """A callback that resolves to loopback outside dev mode is never connected to."""
    hits: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    await db.upgrade()
    worker = DeliveryQueue(db, dev_mode=False)
    worker.base_backoff_s = 0.01
    # Enqueued as if it had passed an earlier check (e.g. the name then pointed elsewhere).
    await worker.enqueue(f"https://localhost:{port}/hook", b"x", content_type="text/plain",
                         max_attempts=2)
    async with worker.running():
        for _ in range(100):
            if (await worker.stats())["failed"]:
                break
            await asyncio.sleep(0.05)
    assert hits == [] and (await worker.stats())["failed"] == 1
    await runner.cleanup()
    await db.close()
