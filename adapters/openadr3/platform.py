"""Platform routes (mounted under /v1/adapters/openadr3): OpenADR client credentials.

    POST   /credentials                      {"role": "ven", "ven_name": "...", "api_version"?}
                                             {"role": "bl", "participant_id"?}
    GET    /credentials
    DELETE /credentials/{client_id}          revoke the credential and all its tokens
    POST   /credentials/{client_id}/revoke-tokens

The secret is in the 201 answer only. Who may do what: the platform admin anything; an
aggregator VEN credentials for itself; an ISO or LDC business-logic credentials acting for
itself (events it writes become instructions on its authority).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from adapters.openadr3.render import Renderer
from adapters.openadr3.state import VERSIONS
from adapters.openadr3.vtn.auth import AuthError, Credentials, Role
from adapters.openadr3.vtn.service import Change, VtnService, now_text
from gateway.api.keys import ACTOR
from gateway.domain import Participant
from gateway.domain import Role as PartyRole
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound

BL_PARTIES = frozenset({PartyRole.ISO, PartyRole.LDC, PartyRole.SCADA})


class CredentialRoutes:
    def __init__(self, credentials: Credentials, service: VtnService, renderer: Renderer) -> None:
        self.credentials = credentials
        self.service = service
        self.renderer = renderer

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/credentials", self.create),
            web.get("/credentials", self.list),
            web.delete("/credentials/{client_id}", self.revoke),
            web.post("/credentials/{client_id}/revoke-tokens", self.revoke_tokens),
        ]

    async def create(self, request: web.Request) -> web.Response:
        actor: Participant = request[ACTOR]
        try:
            body = json.loads(await request.read())
        except ValueError:
            raise InvalidInput("body must be JSON") from None
        if not isinstance(body, dict) or body.get("role") not in ("ven", "bl"):
            raise InvalidInput('role must be "ven" or "bl"')
        role = Role(body["role"])
        kwargs = self._authorise(actor, role, body)
        try:
            public, secret = await self.credentials.provision(
                role, client_id=_opt_str(body, "client_id"), **kwargs
            )
        except AuthError as exc:
            raise Conflict(exc.description) from None
        answer: dict[str, Any] = {**public, "client_secret": secret}
        if role is Role.VEN:
            version = body.get("api_version", "3.1.0")
            if version not in VERSIONS:
                raise InvalidInput("api_version must be 3.1.0 or 3.0.1")
            answer["ven_id"] = await self._ensure_ven(version, public)
            answer["api_version"] = version
        return web.json_response(answer, status=201)

    def _authorise(self, actor: Participant, role: Role, body: dict[str, Any]) -> dict[str, Any]:
        if role is Role.VEN:
            ven_name = _opt_str(body, "ven_name")
            if not ven_name or len(ven_name) > 128:
                raise InvalidInput("ven_name (1 to 128 characters) is required for a VEN")
            if actor.role not in (PartyRole.ADMIN, PartyRole.AGGREGATOR):
                raise Forbidden("only the admin or an aggregator provisions VEN credentials")
            if self._ven_name_taken(ven_name):
                raise Conflict(f"a VEN credential for {ven_name!r} exists")
            owner = actor.id if actor.role is PartyRole.AGGREGATOR else _opt_str(body, "owner_id")
            return {"ven_name": ven_name, "owner_id": owner}
        if actor.role is PartyRole.ADMIN:
            participant = _opt_str(body, "participant_id")
            if not participant:
                raise InvalidInput("participant_id is required when the admin provisions BL")
            return {"participant_id": participant}
        if actor.role not in BL_PARTIES:
            raise Forbidden("only the admin, an ISO or an LDC provisions business-logic clients")
        return {"participant_id": actor.ldc_id if actor.role is PartyRole.SCADA else actor.id}

    def _ven_name_taken(self, ven_name: str) -> bool:
        return any(
            c["ven_name"] == ven_name and not c["revoked_at"]
            for c in self.credentials.credentials()
        )

    async def _ensure_ven(self, version: str, cred: dict[str, Any]) -> str:
        """The ven object of a provisioned VEN (created by the gateway as business logic)."""
        name = cred["ven_name"]
        for ven in self.service.objects_of(version, "ven"):
            if ven.body.get("venName") == name:
                ven.owner = cred["client_id"]
                if version == "3.1.0":
                    ven.body["clientID"] = cred["client_id"]
                await self.service.store.save(ven)
                await self.renderer.sync_ven(ven)
                return ven.id
        seq = self.service.store.next_seq()
        stamp = now_text()
        obj = self.service.compose(
            version,
            "ven",
            f"ven-{seq}",
            seq,
            {"venName": name, "targets": []},
            cred["client_id"],
            stamp,
            stamp,
        )
        await self.service.put_object(Change(version, "ven", "CREATE", None, obj))
        await self.renderer.sync_ven(obj)
        return obj.id

    def _visible(self, actor: Participant, cred: dict[str, Any]) -> bool:
        return actor.role is PartyRole.ADMIN or actor.id in (
            cred.get("owner_id"),
            cred.get("participant_id"),
        )

    async def list(self, request: web.Request) -> web.Response:
        actor: Participant = request[ACTOR]
        return web.json_response(
            [c for c in self.credentials.credentials() if self._visible(actor, c)]
        )

    def _own(self, request: web.Request) -> str:
        client_id = request.match_info["client_id"]
        cred = self.credentials.credential(client_id)
        if cred is None or not self._visible(request[ACTOR], cred):
            raise NotFound(f"no credential {client_id}")
        return client_id

    async def revoke(self, request: web.Request) -> web.Response:
        client_id = self._own(request)
        await self.credentials.revoke(client_id)
        cred = self.credentials.credential(client_id)
        return web.json_response(
            {k: v for k, v in (cred or {}).items() if k not in ("hash", "salt")}
        )

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        count = await self.credentials.revoke_tokens(self._own(request))
        return web.json_response({"revoked_tokens": count})


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value


PLATFORM_OPENAPI: dict[str, Any] = {
    "/credentials": {
        "post": {
            "summary": "Provision an OpenADR 3 client credential (VEN or business logic)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["role"],
                            "properties": {
                                "role": {"enum": ["ven", "bl"]},
                                "ven_name": {"type": "string", "minLength": 1, "maxLength": 128},
                                "api_version": {"enum": ["3.1.0", "3.0.1"]},
                                "participant_id": {"type": "string"},
                                "client_id": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "responses": {"201": {"description": "created; client_secret is shown once"}},
        },
        "get": {
            "summary": "List OpenADR 3 credentials (no secrets)",
            "responses": {"200": {"description": "credentials"}},
        },
    },
    "/credentials/{client_id}": {
        "delete": {
            "summary": "Revoke a credential and its tokens",
            "responses": {"200": {"description": "revoked"}},
        },
    },
    "/credentials/{client_id}/revoke-tokens": {
        "post": {
            "summary": "Revoke every token of a credential",
            "responses": {"200": {"description": "count of revoked tokens"}},
        },
    },
}
