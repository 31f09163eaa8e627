"""Credentials: hashed secrets, scopes, expiry and revocation (over an in-memory records
store with the AdapterRecords interface)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.openadr3.auth import AuthError, Credentials, Role


class MemoryRecords:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self.docs.get((kind, key))

    async def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self.docs[(kind, key)] = json.loads(json.dumps(doc))

    async def delete(self, kind: str, key: str) -> bool:
        return self.docs.pop((kind, key), None) is not None

    async def list(self, kind: str, prefix: str | None = None) -> list[tuple[str, dict]]:
        return sorted((k, v) for (kd, k), v in self.docs.items() if kd == kind)


async def test_issue_verify_scopes_and_reload():
    records = MemoryRecords()
    creds = Credentials(records, token_ttl_s=60)
    public, secret = await creds.provision(Role.VEN, ven_name="v1")
    assert "hash" not in public and secret not in json.dumps(list(records.docs.values()))
    issued = await creds.issue(public["client_id"], secret, "write_reports read_all")
    assert issued.scope == "write_reports"  # read_all is not a VEN scope
    principal = creds.verify(issued.access_token)
    assert principal is not None and principal.role is Role.VEN
    assert principal.may("write_reports") and not principal.may("write_events")
    assert issued.access_token not in json.dumps(list(records.docs.values()))
    again = Credentials(records, token_ttl_s=60)  # a restart
    await again.load()
    assert again.verify(issued.access_token) == principal


async def test_wrong_secret_scope_expiry_and_revocation():
    records = MemoryRecords()
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
