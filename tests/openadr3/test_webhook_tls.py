"""Finding 9: the webhooks' trust store is a setting of the adapter (`webhook_ca_file`), not
the process-wide SSL_CERT_FILE: a receiver whose certificate comes from a private CA gets its
notification when that CA is configured, and none when it is not."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pki.devpki import issue_certificate, new_key, write_pem
from tests.openadr3.conftest import CORE_WARNINGS, Vtn
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = CORE_WARNINGS


def private_ca(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA of the receiver's own and a server context with a certificate for 127.0.0.1."""
    ca_key = new_key()
    ca = issue_certificate("receiver CA", ca_key, None, ca=True, path_length=0)
    write_pem(tmp / "receiver-ca.pem", ca)
    key = new_key()
    cert = issue_certificate("receiver", key, (ca, ca_key), ips=("127.0.0.1",), server=True)
    write_pem(tmp / "receiver.pem", cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "receiver.pem", tmp / "receiver.key")
    return tmp / "receiver-ca.pem", context


@pytest.mark.parametrize("configured", [True, False])
async def test_webhooks_trust_the_configured_ca(tmp_path, configured):
    ca_file, server_tls = private_ca(tmp_path)
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        received.put_nowait(await request.json())
        return web.json_response({}, headers={"Connection": "close"})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    listen = f"https://127.0.0.1:{free_port()}"
    config: dict[str, Any] = {"listen": listen}
    if configured:
        config["webhook_ca_file"] = str(ca_file)
    try:
        async with gateway_in_process(tmp_path, openadr3=config) as gw:
            vtn = Vtn(gw, listen, await seed_platform(gw, resources=[]))
            token = await vtn.token(await vtn.provision(
                "admin", {"role": "bl", "participant_id": "ldc-a"}))
            status, sub = await vtn.call("POST", "/subscriptions", token, {
                "clientName": "bl", "objectOperations": [{
                    "objects": ["PROGRAM"], "operations": ["CREATE"],
                    "callbackUrl": f"https://127.0.0.1:{port}/hook"}]})
            assert status == 201, sub
            status, _ = await vtn.call("POST", "/programs", token, {"programName": "p"})
            assert status == 201
            if configured:
                note = await asyncio.wait_for(received.get(), 10)
                assert note["object"]["programName"] == "p"
            else:
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(received.get(), 3)
    finally:
        await runner.cleanup()
