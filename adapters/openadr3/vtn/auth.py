"""OAuth2 client credentials for VENs and business-logic (BL) clients.

Secrets are stored as scrypt hashes (salted, never logged); access tokens are random and
stored as their SHA-256, with an expiry, so a leaked records table yields no usable token.
Revoking a credential revokes every token issued to it.

Several gateway processes share the records: what another process wrote is refreshed from
the event log (`refresh`), and a token or credential not known here yet (issued a moment ago
by another process) is read from the store when it is first presented (`authenticate`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from adapters.openadr3.codec.timing import parse_start, rfc3339
from adapters.openadr3.state import LIST_ABOVE, Records, list_docs
from gateway.ports import RecordWrite

CREDENTIAL = "credential"
ISSUED = "token"  # records kind of issued access tokens
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
UNKNOWN_KEPT = 10_000  # token hashes the store did not know, remembered (never valid later)
SWEEP_BATCH = 500  # expired tokens deleted per transaction


class Role(StrEnum):
    BL = "bl"
    VEN = "ven"


_WRITE_BL = frozenset({"write_programs", "write_events", "write_subscriptions", "write_vens"})
_WRITE_VEN = frozenset({"write_reports", "write_subscriptions", "write_vens"})
# The scopes each role holds, as each version's specification names them. 3.0.1 knows one
# read scope (read_all, "VENs and BL can read all resources"); 3.1.0 gives VENs read_targets
# and read_ven_objects, and BL read_all and read_bl. A 3.1.0 VEN that asks for read_all (the
# ElaadNL client's default) gets it too, so that the granted scope equals the requested one:
# what any VEN reads is still limited by object privacy, whatever its read scope.
VERSION_SCOPES: dict[str, dict[Role, frozenset[str]]] = {
    "3.0.1": {
        Role.BL: frozenset({"read_all"}) | _WRITE_BL,
        Role.VEN: frozenset({"read_all"}) | _WRITE_VEN,
    },
    "3.1.0": {
        Role.BL: frozenset({"read_all", "read_bl"}) | _WRITE_BL,
        Role.VEN: frozenset({"read_targets", "read_ven_objects"}) | _WRITE_VEN,
    },
}
# Granted when asked for, beyond the defaults above.
ON_REQUEST: dict[str, dict[Role, frozenset[str]]] = {
    "3.0.1": {Role.BL: frozenset(), Role.VEN: frozenset()},
    "3.1.0": {Role.BL: frozenset(), Role.VEN: frozenset({"read_all"})},
}
ROLE_SCOPES: dict[Role, frozenset[str]] = VERSION_SCOPES["3.1.0"]
READ_SCOPES = frozenset({"read_all", "read_bl", "read_targets", "read_ven_objects"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved once from the bearer token, then passed down typed."""

    client_id: str
    role: Role
    scopes: frozenset[str]
    participant_id: str | None = None  # BL: the platform party on whose authority it acts

    @property
    def is_bl(self) -> bool:
        return self.role is Role.BL

    def may(self, scope: str) -> bool:
        if scope == "read":
            return bool(self.scopes & READ_SCOPES)
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


class AuthError(Exception):
    """RFC 6749 error code plus a sentence; the edge renders it as a problem object."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT)


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Credentials:
    """Provisioning, token issue and token verification, over the adapter's records."""

    def __init__(self, records: Records, token_ttl_s: int = 3600) -> None:
        self._records = records
        self._ttl = token_ttl_s
        self._creds: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, dict[str, Any]] = {}
        # Hashes of tokens the store did not know: a random token that is not there when it
        # is presented never will be (its holder got it only once it was committed).
        self._unknown: dict[str, None] = {}
        # scrypt costs ~50 ms of CPU and 16 MiB: a flood of token requests queues here
        # instead of taking every thread and the memory with it.
        self._kdf = asyncio.Semaphore(4)
        # A reload's reads must not be installed over what was written here meanwhile.
        self._lock = asyncio.Lock()

    async def _hash(self, secret: str, salt: bytes) -> bytes:
        async with self._kdf:
            return await asyncio.to_thread(_hash_secret, secret, salt)

    async def load(self) -> None:
        """(Re)read every credential and live token (start-up, or after the event log
        overflowed)."""
        async with self._lock:
            creds = {doc["client_id"]: doc for doc in await list_docs(self._records, CREDENTIAL)}
            tokens = _live(await list_docs(self._records, ISSUED))
            self._creds, self._tokens = creds, tokens

    async def refresh(self, kind: str, keys: tuple[str, ...] | None) -> list[dict[str, Any]]:
        """Another process wrote credentials or tokens (those keys; None: any): refresh
        what is kept here. Tokens not known here are left to be read when presented.
        Answers the credentials found among the keys."""
        async with self._lock:
            if kind == CREDENTIAL:
                return await self._refresh_credentials(keys)
            if keys is None:
                self._tokens = _live(await list_docs(self._records, ISSUED))
                return []
            for key in [k for k in keys if k in self._tokens]:
                doc = await self._records.get(ISSUED, key)
                if doc is None:  # deleted: revoked, or swept once expired
                    self._tokens.pop(key, None)
                else:
                    self._tokens.update(_live([doc]))
            return []

    async def _refresh_credentials(self, keys: tuple[str, ...] | None) -> list[dict[str, Any]]:
        if keys is None or len(keys) > LIST_ABOVE:
            listed = {doc["client_id"]: doc for doc in await list_docs(self._records, CREDENTIAL)}
            wanted = set(listed) | set(self._creds) if keys is None else set(keys)
            found = {key: listed.get(key) for key in wanted}
        else:
            found = {key: await self._records.get(CREDENTIAL, key) for key in keys}
        for key, doc in found.items():
            if doc is None:
                self._creds.pop(key, None)
            else:
                self._creds[key] = doc
        return [doc for doc in found.values() if doc is not None]

    async def _stored_credential(self, client_id: str) -> dict[str, Any] | None:
        """A credential this process may not have heard of yet, read from the store (under
        the lock: a refresh that revokes it must not be overtaken)."""
        doc = self._creds.get(client_id)
        if doc is not None:
            return doc
        async with self._lock:
            doc = self._creds.get(client_id)
            if doc is None:
                doc = await self._records.get(CREDENTIAL, client_id)
                if doc is not None:
                    self._creds[client_id] = doc
            return doc

    # -- provisioning ----------------------------------------------------------------------

    async def provision(
        self,
        role: Role,
        *,
        client_id: str | None = None,
        participant_id: str | None = None,
        ven_name: str | None = None,
        owner_id: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Create a credential; answers its public record and the secret (shown once)."""
        client_id = client_id or f"{role.value}-{secrets.token_hex(6)}"
        existing = await self._stored_credential(client_id)
        if existing is not None and not existing.get("revoked_at"):
            raise AuthError("invalid_request", f"client {client_id} exists")
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        digest = await self._hash(secret, salt)
        doc = {
            "client_id": client_id,
            "role": role.value,
            "salt": salt.hex(),
            "hash": digest.hex(),
            "kdf": {"alg": "scrypt", **SCRYPT},
            "participant_id": participant_id,
            "ven_name": ven_name,
            "owner_id": owner_id,
            "created_at": rfc3339(datetime.now(UTC)),
            "revoked_at": None,
        }
        await self._records.put(CREDENTIAL, client_id, doc)
        async with self._lock:
            self._creds[client_id] = doc
        return public_view(doc), secret

    def credential(self, client_id: str) -> dict[str, Any] | None:
        return self._creds.get(client_id)

    def credentials(self) -> list[dict[str, Any]]:
        return [public_view(d) for d in self._creds.values()]

    async def revoke(self, client_id: str) -> bool:
        doc = await self._stored_credential(client_id)
        if doc is None:
            return False
        if not doc.get("revoked_at"):
            doc = {**doc, "revoked_at": rfc3339(datetime.now(UTC))}
            await self._records.put(CREDENTIAL, client_id, doc)
            async with self._lock:
                self._creds[client_id] = doc
        await self.revoke_tokens(client_id)
        return True

    async def revoke_tokens(self, client_id: str) -> int:
        """Every token of the client, as the store has them (another process may have
        issued one a moment ago), deleted in one transaction."""
        keys = [k for k, t in await self._records.list(ISSUED) if t["client_id"] == client_id]
        if keys:
            await self._records.write(RecordWrite(deletes=[(ISSUED, k) for k in keys]))
        async with self._lock:
            for key in keys:
                self._tokens.pop(key, None)
            for key in [k for k, t in self._tokens.items() if t["client_id"] == client_id]:
                self._tokens.pop(key, None)
        return len(keys)

    async def sweep_expired(self) -> int:
        """Delete the records of tokens that have expired (one process does it: the
        adapter's render lease holder). Answers how many went."""
        now = time.time()
        keys = [k for k, t in await self._records.list(ISSUED) if _expires_ts(t) <= now]
        for start in range(0, len(keys), SWEEP_BATCH):
            batch = keys[start:start + SWEEP_BATCH]
            await self._records.write(RecordWrite(deletes=[(ISSUED, k) for k in batch]))
        async with self._lock:
            for key in keys:
                self._tokens.pop(key, None)
        return len(keys)

    # -- token endpoint ------------------------------------------------------------------

    async def issue(
        self, client_id: str, secret: str, scope: str | None, version: str = "3.1.0"
    ) -> IssuedToken:
        doc = await self._stored_credential(client_id)
        # Hash even for an unknown client so that timing does not reveal which ids exist.
        salt = bytes.fromhex(doc["salt"]) if doc else b"\0" * 16
        digest = await self._hash(secret, salt)
        if (
            doc is None
            or doc.get("revoked_at")
            or not hmac.compare_digest(digest.hex(), doc["hash"])
        ):
            raise AuthError("invalid_client", "unknown client or wrong secret")
        role = Role(doc["role"])
        allowed = VERSION_SCOPES[version][role]
        if not scope:
            granted = allowed
        else:
            granted = (allowed | ON_REQUEST[version][role]) & frozenset(scope.split())
        if not granted:
            raise AuthError("invalid_scope", "none of the requested scopes is allowed")
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        key = _token_key(token)
        record: dict[str, Any] = {
            "key": key,
            "client_id": client_id,
            "scopes": sorted(granted),
            "issued_at": rfc3339(now),
            "expires_at": rfc3339(now + timedelta(seconds=self._ttl)),
            "expires_ts": (now + timedelta(seconds=self._ttl)).timestamp(),
        }
        await self._records.put(ISSUED, key, record)
        async with self._lock:
            self._tokens[key] = record
        return IssuedToken(token, self._ttl, " ".join(sorted(granted)))

    def verify(self, token: str) -> Principal | None:
        """The principal behind a bearer token known here, or None when unknown, expired or
        revoked (`authenticate` also asks the store about one not known here)."""
        record = self._tokens.get(_token_key(token))
        return None if record is None else self._principal(record)

    async def authenticate(self, token: str) -> Principal | None:
        """As `verify`; a token not known here (another process issued it a moment ago) is
        read from the store once, and remembered either way."""
        key = _token_key(token)
        record = self._tokens.get(key)
        if record is None:
            if key in self._unknown:
                return None
            record = await self._stored_token(key)
            if record is None:
                return None
            await self._stored_credential(record["client_id"])
        return self._principal(record)

    async def _stored_token(self, key: str) -> dict[str, Any] | None:
        """A live token read from the store (under the lock: a refresh that deletes it must
        not be overtaken), or None, remembering that the store does not know it."""
        async with self._lock:
            stored = self._tokens.get(key) or await self._records.get(ISSUED, key)
            if stored is None:
                self._unknown[key] = None
                while len(self._unknown) > UNKNOWN_KEPT:
                    del self._unknown[next(iter(self._unknown))]
                return None
            record = _live([stored]).get(key)  # (None: expired)
            if record is not None:
                self._tokens[key] = record
            return record

    def _principal(self, record: dict[str, Any]) -> Principal | None:
        if record["expires_ts"] <= time.time():
            self._tokens.pop(record["key"], None)
            return None
        cred = self._creds.get(record["client_id"])
        if cred is None or cred.get("revoked_at"):
            return None
        return Principal(
            client_id=cred["client_id"],
            role=Role(cred["role"]),
            scopes=frozenset(record["scopes"]),
            participant_id=cred.get("participant_id"),
        )


def _expires_ts(doc: dict[str, Any]) -> float:
    if "expires_ts" in doc:
        return float(doc["expires_ts"])
    return parse_start(doc["expires_at"], datetime.now(UTC)).timestamp()


def _live(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Token records by key, those not yet expired (with `expires_ts`)."""
    now = time.time()
    out = {}
    for doc in docs:
        doc = {**doc, "expires_ts": _expires_ts(doc)}
        if doc["expires_ts"] > now:
            out[doc["key"]] = doc
    return out


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """A credential without its hash and salt."""
    role = Role(doc["role"])
    return {
        "client_id": doc["client_id"],
        "role": role.value,
        "scopes": sorted(ROLE_SCOPES[role]),
        "participant_id": doc.get("participant_id"),
        "ven_name": doc.get("ven_name"),
        "owner_id": doc.get("owner_id"),
        "created_at": doc.get("created_at"),
        "revoked_at": doc.get("revoked_at"),
    }
