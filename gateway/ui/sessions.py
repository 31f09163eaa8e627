"""Status-page sessions: server-side, short-lived, bounded, and bound to the credential that
opened them.

The browser holds only a random session id in a `__Host-` cookie (HttpOnly, Secure,
SameSite=Strict, Path=/); the store keeps its SHA-256, so a memory dump yields no usable
cookie. A session ends after `IDLE_S` without a request, `ABSOLUTE_S` after sign-in, on
sign-out, or when the credential behind it stops being valid (checked on every request by
gateway.ui.signin). Sessions live in this process only: with several gateway processes
behind one address, route a browser to one of them (sticky) or sign in to each.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

COOKIE = "__Host-dergw-session"
SIGNIN_COOKIE = "__Host-dergw-signin"  # login CSRF: double-submit value of the sign-in form
IDLE_S = 30 * 60
ABSOLUTE_S = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    participant_id: str
    csrf: str  # the token every state-changing form of this session carries
    created: float
    last_seen: float
    token: str | None = None  # a bearer-token sign-in: re-checked on every request
    cert_sha256: str | None = None  # a certificate sign-in: the certificate it was made with


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, idle_s: float = IDLE_S, absolute_s: float = ABSOLUTE_S,
                 max_sessions: int = MAX_SESSIONS) -> None:
        self.idle_s, self.absolute_s, self.max_sessions = idle_s, absolute_s, max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, participant_id: str, *, token: str | None = None,
             cert_sha256: str | None = None) -> tuple[str, Session]:
        """A new session; returns its id (for the cookie, never stored) and the session."""
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)  # the least recently used goes first
        session_id = secrets.token_urlsafe(32)
        now = time.monotonic()
        session = Session(participant_id, secrets.token_urlsafe(32), now, now, token,
                          cert_sha256)
        self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (and mark it used), or None."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = time.monotonic()
        if self._expired(session, now):
            del self._sessions[key]
            return None
        session.last_seen = now
        self._sessions.move_to_end(key)
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.last_seen > self.idle_s
                or now - session.created > self.absolute_s)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True,
                        samesite="Strict")


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and secrets.compare_digest(str(a), str(b))
