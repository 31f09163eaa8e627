"""OPC UA operators: username/password users, their role, and the LDC they act for.

Passwords are stored only as scrypt hashes (``scrypt$n$r$p$salt$hash``, base64 parts). Users
come from the adapter config (``[[adapters.opcua.users]]``) and from platform routes, which
keep them in the adapter's records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gateway.errors import InvalidInput

# scrypt cost: ~30 ms per check on a server core; a successful check is remembered (below),
# so a SCADA reconnect storm does not stall the event loop.
_N, _R, _P = 2**14, 8, 1
_VERIFIED_CACHE = 256


class OperatorRole(StrEnum):
    VIEWER = "viewer"  # browse, read, subscribe
    CONTROLLER = "controller"  # and call the control methods


@dataclass(frozen=True, slots=True)
class OperatorAccount:
    name: str
    role: OperatorRole
    ldc_id: str  # the platform participant the operator acts for (an LDC or its SCADA client)
    password_hash: str

    def public(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value, "ldc_id": self.ldc_id}

    def to_doc(self) -> dict[str, str]:
        return self.public() | {"password_hash": self.password_hash}


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def account_from_doc(doc: dict[str, Any]) -> OperatorAccount:
    """An account from config or a stored record; a clear-text `password` is hashed here."""
    try:
        name, role, ldc_id = str(doc["name"]), OperatorRole(doc["role"]), str(doc["ldc_id"])
    except (KeyError, ValueError) as exc:
        raise InvalidInput("a user needs name, role (viewer|controller) and ldc_id") from exc
    if not name or len(name) > 64 or not ldc_id:
        raise InvalidInput("user name must be 1-64 characters and ldc_id non-empty")
    if doc.get("password_hash"):
        encoded = str(doc["password_hash"])
        if not encoded.startswith("scrypt$"):
            raise InvalidInput("password_hash must be an scrypt hash made by hash_password")
    elif doc.get("password"):
        if len(str(doc["password"])) < 8:
            raise InvalidInput("password must be at least 8 characters")
        encoded = hash_password(str(doc["password"]))
    else:
        raise InvalidInput("a user needs password or password_hash")
    return OperatorAccount(name, role, ldc_id, encoded)


AccountWatcher = Callable[[str, "OperatorAccount | None"], None]


class UserDirectory:
    """In-memory view of the accounts, consulted synchronously at session activation.

    Watchers hear of every change, synchronously, with the user's new account (None: the
    user was removed), so that open sessions follow it before the next request."""

    def __init__(self) -> None:
        self._accounts: dict[str, OperatorAccount] = {}
        self._watchers: list[AccountWatcher] = []
        self._fixed: set[str] = set()  # from config: platform routes may not change them
        self._pepper = secrets.token_bytes(32)  # the cache never holds a password
        self._verified: OrderedDict[tuple[str, bytes], str] = OrderedDict()

    def watch(self, watcher: AccountWatcher) -> None:
        self._watchers.append(watcher)

    def unwatch(self, watcher: AccountWatcher) -> None:
        self._watchers.remove(watcher)

    def add(self, account: OperatorAccount, *, fixed: bool = False) -> None:
        self._accounts[account.name] = account
        if fixed:
            self._fixed.add(account.name)
        self._forget(account.name)
        self._changed(account.name, account)

    def remove(self, name: str) -> bool:
        self._forget(name)
        removed = self._accounts.pop(name, None) is not None
        if removed:
            self._changed(name, None)
        return removed

    def _changed(self, name: str, account: OperatorAccount | None) -> None:
        for watcher in self._watchers:
            watcher(name, account)

    def is_fixed(self, name: str) -> bool:
        return name in self._fixed

    def get(self, name: str) -> OperatorAccount | None:
        return self._accounts.get(name)

    def all(self) -> list[OperatorAccount]:
        return sorted(self._accounts.values(), key=lambda a: a.name)

    def authenticate(self, name: str | None, password: str | None) -> OperatorAccount | None:
        if not name or password is None:
            return None
        account = self._accounts.get(name)
        if account is None:
            return None
        key = (name, hmac.digest(self._pepper, password.encode(), "sha256"))
        if self._verified.get(key) == account.password_hash:
            return account
        if not verify_password(password, account.password_hash):
            return None
        self._verified[key] = account.password_hash
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return account

    def _forget(self, name: str) -> None:
        for key in [k for k in self._verified if k[0] == name]:
            del self._verified[key]
