"""Finding 8: the token endpoint throttles and locks out guessers (429 with Retry-After), per
client id and per source address; the lock-out is temporary. Through the real gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.openadr3.conftest import CORE_WARNINGS, Vtn, oadr_der
from tests.support.gateway import free_port, gateway_in_process
from tests.support.seed import seed_platform

pytestmark = CORE_WARNINGS


@pytest.fixture
async def strict_vtn(tmp_path: Path) -> AsyncIterator[Vtn]:
    listen = f"https://127.0.0.1:{free_port()}"
    config = {"listen": listen, "token_lockout_after": 5, "token_lockout_after_per_address": 12,
              "token_lockout_s": 1.5, "token_rate_per_s": 1000, "token_burst": 1000}
    async with gateway_in_process(tmp_path, openadr3=config) as gw:
        clients = await seed_platform(gw, resources=[oadr_der("o1", "ven-x", "bat-1")])
        yield Vtn(gw, listen, clients)


async def ask(vtn: Vtn, client_id: str, secret: str) -> tuple[int, dict, str | None]:
    async with vtn.http() as http, http.post(
        f"{vtn.base()}/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id,
              "client_secret": secret},
    ) as resp:
        return resp.status, await resp.json(), resp.headers.get("Retry-After")


async def test_wrong_secrets_lock_the_client_out_for_a_while(strict_vtn):
    vtn = strict_vtn
    cred = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    statuses = [(await ask(vtn, cred["client_id"], "guess"))[0] for _ in range(5)]
    assert statuses == [401] * 5
    status, problem, retry = await ask(vtn, cred["client_id"], "guess")
    assert status == 429 and problem["status"] == 429 and int(retry) >= 1
    # Locked out: the right secret is refused too, without being checked.
    status, _, _ = await ask(vtn, cred["client_id"], cred["client_secret"])
    assert status == 429
    await asyncio.sleep(float(retry) + 0.1)
    status, token, _ = await ask(vtn, cred["client_id"], cred["client_secret"])
    assert status == 200 and token["access_token"]


async def test_one_address_spraying_many_client_ids_is_locked_out(strict_vtn):
    vtn = strict_vtn
    cred = await vtn.provision("agg-x", {"role": "ven", "ven_name": "ven-x"})
    for n in range(12):
        status, _, _ = await ask(vtn, f"nobody-{n}", "guess")
        assert status == 401
    status, _, retry = await ask(vtn, cred["client_id"], cred["client_secret"])
    assert status == 429 and retry is not None


async def test_token_requests_are_rate_limited_per_address(tmp_path):
    listen = f"https://127.0.0.1:{free_port()}"
    config = {"listen": listen, "token_rate_per_s": 1, "token_burst": 3}
    async with gateway_in_process(tmp_path, openadr3=config) as gw:
        clients = await seed_platform(gw, resources=[])
        vtn = Vtn(gw, listen, clients)
        cred = await vtn.provision("admin", {"role": "bl", "participant_id": "ldc-a"})
        answers = [await ask(vtn, cred["client_id"], cred["client_secret"]) for _ in range(5)]
        assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
        assert answers[3][2] == "1"
