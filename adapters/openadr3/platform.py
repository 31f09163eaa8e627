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

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from adapters.openadr3.render import Renderer
from adapters.openadr3.state import VERSIONS
from adapters.openadr3.vtn.auth import AuthError, Credentials, Role
from adapters.openadr3.vtn.service import Change, VtnService, now_text
from gateway.domain import Participant
from gateway.domain import Role as PartyRole
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.ports import Access, BodyReader, Concern, PlatformRoute, actor

BL_PARTIES = frozenset({PartyRole.ISO, PartyRole.LDC, PartyRole.SCADA})


BODY = "openadr3.platform.body"
ALL_PARTIES = frozenset({PartyRole.ADMIN, PartyRole.AGGREGATOR, *BL_PARTIES})


class CredentialRoutes:
    def __init__(
        self, credentials: Credentials, service: VtnService, renderer: Renderer, body: BodyReader
    ) -> None:
        self.credentials = credentials
        self.service = service
        self.renderer = renderer
        self.body = body
        # Told of a revocation: (client_id, credential, whole credential or tokens only).
        self.on_revoked: list[Callable[[str, dict[str, Any], bool], Awaitable[None]]] = []

    def routes(self) -> list[PlatformRoute]:
        """Each with its Access: the core checks the role, then that every participant the
        call names (the party a credential acts for or belongs to) is in the caller's area."""
        return [
            PlatformRoute("POST", "/credentials", self.create,
                          "Provision an OpenADR 3 client credential (VEN or business logic)",
                          Access(ALL_PARTIES, self._named_in_body), CREATE_OPENAPI),
            PlatformRoute("GET", "/credentials", self.list,
                          "List the OpenADR 3 credentials the caller may see (no secrets)",
                          Access(ALL_PARTIES)),
            PlatformRoute("DELETE", "/credentials/{client_id}", self.revoke,
                          "Revoke a credential and its tokens",
                          Access(ALL_PARTIES, self._named_by_credential)),
            PlatformRoute("POST", "/credentials/{client_id}/revoke-tokens", self.revoke_tokens,
                          "Revoke every token of a credential",
                          Access(ALL_PARTIES, self._named_by_credential)),
        ]

    async def _json(self, request: web.Request) -> Any:
        """The body, read once (the access check and the handler both need it)."""
        if BODY not in request:
            request[BODY] = await self.body.read_json(request)
        return request[BODY]

    async def _named_in_body(self, request: web.Request) -> Concern:
        body = await self._json(request)
        named = (body.get(k) for k in ("participant_id", "owner_id")) \
            if isinstance(body, dict) else ()
        return Concern(participants=frozenset(str(n) for n in named if isinstance(n, str)))

    async def _named_by_credential(self, request: web.Request) -> Concern:
        cred = self.credentials.credential(request.match_info["client_id"]) or {}
        named = (cred.get(k) for k in ("participant_id", "owner_id"))
        return Concern(participants=frozenset(str(n) for n in named if n))

    async def create(self, request: web.Request) -> web.Response:
        caller = actor(request)
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("role") not in ("ven", "bl"):
            raise InvalidInput('role must be "ven" or "bl"')
        role = Role(body["role"])
        kwargs = self._authorise(caller, role, body)
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

    def _authorise(self, caller: Participant, role: Role, body: dict[str, Any]) -> dict[str, Any]:
        if role is Role.VEN:
            ven_name = _opt_str(body, "ven_name")
            if not ven_name or len(ven_name) > 128:
                raise InvalidInput("ven_name (1 to 128 characters) is required for a VEN")
            if caller.role not in (PartyRole.ADMIN, PartyRole.AGGREGATOR):
                raise Forbidden("only the admin or an aggregator provisions VEN credentials")
            if self._ven_name_taken(ven_name):
                raise Conflict(f"a VEN credential for {ven_name!r} exists")
            owner = caller.id if caller.role is PartyRole.AGGREGATOR else _opt_str(body, "owner_id")
            return {"ven_name": ven_name, "owner_id": owner}
        if caller.role is PartyRole.ADMIN:
            participant = _opt_str(body, "participant_id")
            if not participant:
                raise InvalidInput("participant_id is required when the admin provisions BL")
            return {"participant_id": participant}
        if caller.role not in BL_PARTIES:
            raise Forbidden("only the admin, an ISO or an LDC provisions business-logic clients")
        return {"participant_id": caller.ldc_id if caller.role is PartyRole.SCADA else caller.id}

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
        seq = await self.service.store.next_seq()
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

    def _visible(self, caller: Participant, cred: dict[str, Any]) -> bool:
        return caller.role is PartyRole.ADMIN or caller.id in (
            cred.get("owner_id"),
            cred.get("participant_id"),
        )

    async def list(self, request: web.Request) -> web.Response:
        caller = actor(request)
        return web.json_response(
            [c for c in self.credentials.credentials() if self._visible(caller, c)]
        )

    def _own(self, request: web.Request) -> str:
        client_id = request.match_info["client_id"]
        cred = self.credentials.credential(client_id)
        if cred is None or not self._visible(actor(request), cred):
            raise NotFound(f"no credential {client_id}")
        return client_id

    async def revoke(self, request: web.Request) -> web.Response:
        client_id = self._own(request)
        await self.credentials.revoke(client_id)
        cred = self.credentials.credential(client_id)
        for listener in self.on_revoked:
            await listener(client_id, cred or {}, True)
        return web.json_response(
            {k: v for k, v in (cred or {}).items() if k not in ("hash", "salt")}
        )

    async def revoke_tokens(self, request: web.Request) -> web.Response:
        client_id = self._own(request)
        count = await self.credentials.revoke_tokens(client_id)
        for listener in self.on_revoked:
            await listener(client_id, self.credentials.credential(client_id) or {}, False)
        return web.json_response({"revoked_tokens": count})


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    return value


CREATE_OPENAPI: dict[str, Any] = {
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
                        "owner_id": {"type": "string"},
                        "client_id": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {"201": {"description": "created; client_secret is shown once"}},
}
