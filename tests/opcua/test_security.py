"""Who gets in: trusted certificates with matching application URIs, named users only."""

from __future__ import annotations

import pytest
from asyncua import Client, ua

from pki.devpki import DevPki, issue_certificate, load_pair, new_key, write_pem
from tests.opcua.support import (
    CONTROLLER,
    CORE_WARNINGS,
    NAMESPACE_URI,
    VIEWER,
    make_client,
    wait_for,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), *CORE_WARNINGS]


def rogue_certificate(tmp_path, uri: str = "urn:rogue:client", issuer=None):
    """An RSA application certificate like the dev PKI's, but from an untrusted issuer."""
    key = new_key("rsa")
    cert = issue_certificate("rogue", key, issuer, uris=(uri,), dns=("localhost",),
                             server=True, client=True)
    path = tmp_path / "rogue.pem"
    write_pem(path, cert, key)
    return path


async def test_only_secure_endpoints_with_username_tokens(served):
    gw, _ = served
    client = Client(gw.adapter_listen("opcua"), timeout=10)
    endpoints = await client.connect_and_get_server_endpoints()
    modes = {e.SecurityMode for e in endpoints}
    assert ua.MessageSecurityMode.None_ not in modes
    assert modes == {ua.MessageSecurityMode.Sign, ua.MessageSecurityMode.SignAndEncrypt}
    policies = {e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints}
    assert policies == {"Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"}
    tokens = {t.TokenType for e in endpoints for t in e.UserIdentityTokens}
    assert tokens == {ua.UserTokenType.UserName}
    assert {e.Server.ApplicationUri for e in endpoints} == {"urn:der-gateway:opcua:server"}


@pytest.mark.parametrize("policy", ["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"])
@pytest.mark.parametrize("mode", [ua.MessageSecurityMode.Sign,
                                  ua.MessageSecurityMode.SignAndEncrypt])
async def test_every_policy_and_mode_works(served, policy, mode):
    gw, _ = served
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, user=VIEWER, policy=policy,
                               mode=mode)
    async with client:
        assert await client.get_namespace_index(NAMESPACE_URI) >= 2


async def test_unknown_certificate_is_refused(served, tmp_path):
    gw, _ = served
    cert = rogue_certificate(tmp_path)
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, cert=cert,
                               app_uri="urn:rogue:client")
    with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
        await client.connect()
    await client.disconnect()


async def test_application_uri_must_match_the_certificate(served):
    gw, _ = served
    client = await make_client(gw.adapter_listen("opcua"), gw.pki,
                               app_uri="urn:der-gateway:opcua:client:someone-else")
    with pytest.raises(ua.uaerrors.BadCertificateUriInvalid):
        await client.connect()
    await client.disconnect()


async def test_certificate_from_the_trusted_ca_but_another_uri_still_works(served):
    gw, _ = served
    path = DevPki(gw.pki).issue_opcua_client("second-console")
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, cert=path, user=VIEWER):
        pass
    assert load_pair(path)[0]  # issued by the dev CA: trusted through the CA


async def test_anonymous_is_refused(served):
    gw, _ = served
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, user=None)
    with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
        await client.connect()
    await client.disconnect()


@pytest.mark.parametrize("user", [
    {**CONTROLLER, "password": "wrong-password"},
    {**VIEWER, "name": "nobody"},
])
async def test_wrong_credentials_are_refused(served, user):
    gw, _ = served
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, user=user)
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await client.connect()
    await client.disconnect()


async def test_users_provisioned_through_the_platform(served):
    gw, clients = served
    url = "/v1/adapters/opcua/users/night-shift"
    body = {"password": "night-shift-pass", "role": "viewer", "ldc_id": "ldc-a"}
    status, _ = await clients["ldc-b"].request("PUT", url, body)
    assert status == 403  # ldc-b may not create users acting for ldc-a
    status, created = await clients["ldc-a"].request("PUT", url, body)
    assert status == 201, created
    assert created == {"name": "night-shift", "role": "viewer", "ldc_id": "ldc-a"}
    status, listed = await clients["ldc-a"].get("/v1/adapters/opcua/users")
    assert status == 200 and "night-shift" in {u["name"] for u in listed}
    assert "password" not in str(listed) and "scrypt" not in str(listed)
    status, _ = await clients["ldc-a"].request("PUT", url, {**body, "password": "short"})
    assert status == 400
    status, _ = await clients["ldc-a"].request("PUT", "/v1/adapters/opcua/users/op-ctl", body)
    assert status == 409  # defined in the configuration file
    user = {"name": "night-shift", "password": "night-shift-pass"}
    async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=user) as client:
        assert await client.get_namespace_index(NAMESPACE_URI) >= 2
    status, _ = await clients["ldc-a"].request("DELETE", url)
    assert status == 204
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, user=user)
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await client.connect()
    await client.disconnect()


async def test_an_operator_provisioned_by_another_process_can_log_in(served):
    """With several processes only one serves OPC UA; an operator provisioned through
    another's platform API reaches it through the event log (records.changed)."""
    from adapters.opcua.model.users import account_from_doc
    from gateway.bus import Event
    from gateway.events import Topic

    gw, _ = served
    adapter = gw.gateway.adapters["opcua"]
    user = {"name": "elsewhere", "password": "elsewhere-pass-1"}
    doc = account_from_doc({**user, "role": "viewer", "ldc_id": "ldc-a"}).to_doc()
    await adapter.ctx.records.put("user", user["name"], doc)  # as the other process did
    client = await make_client(gw.adapter_listen("opcua"), gw.pki, user=user)
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):  # not heard of yet
        await client.connect()
    await client.disconnect()
    await gw.gateway.bus.publish(Event(10**12, Topic.RECORDS_CHANGED, {
        "adapter": "opcua", "by": "another-process", "changes": {"user": [user["name"]]}}))

    async def logs_in():
        try:
            async with await make_client(gw.adapter_listen("opcua"), gw.pki, user=user) as c:
                return await c.get_namespace_index(NAMESPACE_URI) >= 2
        except ua.uaerrors.BadUserAccessDenied:
            return False
    assert await wait_for(logs_in)
