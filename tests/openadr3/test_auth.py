"""Credentials: hashed secrets, scopes, expiry and revocation (over the core's records, on
SQLite)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.openadr3.vtn.auth import CREDENTIAL, ISSUED, AuthError, Credentials, Role
from gateway.records import AdapterRecords
from gateway.store.engine import Database


@pytest.fixture
async def records(tmp_path) -> AsyncIterator[AdapterRecords]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")
    await db.upgrade()
    try:
        yield AdapterRecords(db, "openadr3")
    finally:
        await db.close()


async def stored(records: AdapterRecords) -> list[dict[str, Any]]:
    return [doc for kind in (CREDENTIAL, ISSUED) for _k, doc in await records.list(kind)]


async def test_issue_verify_scopes_and_reload(records):
    creds = Credentials(records, token_ttl_s=60)
    public, secret = await creds.provision(Role.VEN, ven_name="v1")
    assert "hash" not in public and secret not in json.dumps(await stored(records))
    issued = await creds.issue(public["client_id"], secret, "write_reports write_events")
    assert issued.scope == "write_reports"  # write_events is not a VEN scope
    principal = creds.verify(issued.access_token)
    assert principal is not None and principal.role is Role.VEN
    assert principal.may("write_reports") and not principal.may("write_events")
    assert issued.access_token not in json.dumps(await stored(records))
    again = Credentials(records, token_ttl_s=60)  # a restart
    await again.load()
    assert again.verify(issued.access_token) == principal


async def test_wrong_secret_scope_expiry_and_revocation(records):
    creds = Credentials(records, token_ttl_s=0)
    public, secret = await creds.provision(Role.BL, participant_id="ldc-a")
    with pytest.raises(AuthError) as err:
        await creds.issue(public["client_id"], secret + "x", None)
    assert err.value.error == "invalid_client"
    with pytest.raises(AuthError) as err:
        await creds.issue("nobody", secret, None)
    assert err.value.error == "invalid_client"
    with pytest.raises(AuthError) as err:
        await creds.issue(public["client_id"], secret, "write_reports")
    assert err.value.error == "invalid_scope"
    expired = await creds.issue(public["client_id"], secret, None)
    assert creds.verify(expired.access_token) is None  # ttl 0: already expired

    live = Credentials(records, token_ttl_s=3600)
    await live.load()
    issued = await live.issue(public["client_id"], secret, None)
    assert live.verify(issued.access_token) is not None
    assert await live.revoke(public["client_id"])
    assert live.verify(issued.access_token) is None
    with pytest.raises(AuthError):
        await live.issue(public["client_id"], secret, None)


@pytest.mark.parametrize(
    ("version", "role", "asked", "granted"),
    [
        # 3.0.1 names one read scope, read_all ("VENs and BL can read all resources").
        ("3.0.1", Role.VEN, None, "read_all write_reports write_subscriptions write_vens"),
        ("3.0.1", Role.VEN, "read_all", "read_all"),
        ("3.0.1", Role.BL, "read_all write_events write_programs",
         "read_all write_events write_programs"),
        ("3.0.1", Role.BL, "read_bl write_events", "write_events"),  # 3.0.1 has no read_bl
        # 3.1.0: VENs read with read_targets and read_ven_objects; a VEN asking read_all too
        # (the ElaadNL client's default) gets what it asked for, so oauthlib sees no change.
        ("3.1.0", Role.VEN, None,
         "read_targets read_ven_objects write_reports write_subscriptions write_vens"),
        ("3.1.0", Role.VEN, "read_all write_reports read_targets read_ven_objects",
         "read_all read_targets read_ven_objects write_reports"),
        ("3.1.0", Role.BL, "read_all read_bl write_events write_programs",
         "read_all read_bl write_events write_programs"),
    ],
)
async def test_scopes_are_named_as_each_version_names_them(version, role, asked, granted,
                                                          records):
    creds = Credentials(records, token_ttl_s=60)
    public, secret = await creds.provision(
        role, **({"ven_name": "v1"} if role is Role.VEN else {"participant_id": "ldc-a"})
    )
    issued = await creds.issue(public["client_id"], secret, asked, version)
    assert issued.scope == granted
    principal = creds.verify(issued.access_token)
    assert principal is not None and principal.may("read") == ("read" in granted)


async def test_two_processes_share_tokens_through_the_store(records):
    """Two Credentials over one store, as two gateway processes have: a token one issued is
    read from the store when presented to the other; revoking at one deletes the tokens the
    other issued; the other drops them once told of the change; expired ones are swept."""
    a, b = Credentials(records, token_ttl_s=60), Credentials(records, token_ttl_s=60)
    await a.load()
    await b.load()
    public, secret = await a.provision(Role.VEN, ven_name="v1")
    client = public["client_id"]
    from_b = await b.issue(client, secret, None)  # b reads the credential a provisioned
    assert a.verify(from_b.access_token) is None  # not known to a's memory ...
    assert (await a.authenticate(from_b.access_token)).client_id == client  # ... but stored
    assert await a.authenticate("not-a-token") is None

    assert await a.revoke_tokens(client) == 1  # found in the store, though b issued it
    assert b.verify(from_b.access_token) is not None  # b has not heard yet
    await b.refresh(ISSUED, (hashlib.sha256(from_b.access_token.encode()).hexdigest(),))
    assert await b.authenticate(from_b.access_token) is None

    short = Credentials(records, token_ttl_s=1)
    await short.load()
    expired = await short.issue(client, secret, None)
    live = await b.issue(client, secret, None)
    await asyncio.sleep(1.1)
    assert await b.sweep_expired() == 1
    assert await b.authenticate(expired.access_token) is None
    assert await a.authenticate(live.access_token) is not None
