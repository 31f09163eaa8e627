"""Status-page sign-in and sessions over real TLS (an HTTP client, not a browser): certificate
sign-in, CSRF and origin checks, a revoked token ends its session, expiry, role limits."""

from __future__ import annotations

import re
import time

import aiohttp

from gateway.ui.sessions import COOKIE, SessionStore
from pki.tls import client_context
from tests.support.gateway import gateway_in_process
from tests.support.seed import seed_platform


class Page:
    """A browser-like client: one TLS identity (or none) and a cookie jar."""

    def __init__(self, gw, cert_name: str | None = None) -> None:
        pki = gw.pki
        cert = pki / f"platform/clients/{cert_name}.pem" if cert_name else None
        self.ssl = client_context(pki / "platform/ca.pem", cert,
                                  cert.with_suffix(".key") if cert else None)
        self.base = gw.platform_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.http.get(self.base + path, ssl=self.ssl, allow_redirects=False) as r:
            return r.status, r.headers.get("Location", ""), await r.text()

    async def post(self, path: str, data: dict, origin: str | None = None
                   ) -> tuple[int, str, str]:
        headers = {"Origin": origin or self.base}
        async with self.http.post(self.base + path, data=data, ssl=self.ssl, headers=headers,
                                  allow_redirects=False) as r:
            return r.status, r.headers.get("Location", ""), await r.text()

    async def form_token(self) -> str:
        _, _, text = await self.get("/ui/signin")
        return re.search(r'name="csrf" value="([^"]+)"', text).group(1)

    def session_csrf(self, text: str) -> str:
        return re.search(r'name="csrf" value="([^"]+)"', text).group(1)

    async def close(self) -> None:
        await self.http.close()


async def test_certificate_sign_in_csrf_origin_and_revocation(tmp_path):
    async with gateway_in_process(tmp_path) as gw:
        await seed_platform(gw)
        services = gw.gateway.services
        admin = await services.participant("admin")
        page = Page(gw, "ldc-a")
        try:
            _, _, text = await page.get("/ui/signin")
            assert "certificate of <strong>ldc-a</strong>" in text
            csrf = await page.form_token()
            # from another site: refused even with the right form token
            status, _, _ = await page.post("/ui/signin", {"csrf": csrf, "method": "certificate"},
                                           origin="https://evil.example")
            assert status == 403
            csrf = await page.form_token()
            status, where, _ = await page.post("/ui/signin",
                                               {"csrf": csrf, "method": "certificate"})
            assert (status, where) == (303, "/ui/")
            status, _, fleet = await page.get("/ui/")
            assert status == 200 and "ldc-a (ldc)" in fleet and "d1" in fleet
            assert "d2" not in fleet  # ldc-b's
            assert (await page.get("/ui/ders/d2"))[0] == 404
            # a state-changing form without the session's CSRF token is refused, and the
            # session lives on
            status, _, _ = await page.post("/ui/signout", {"csrf": "guess"})
            assert status == 403
            assert (await page.get("/ui/"))[0] == 200
            status, where, _ = await page.post("/ui/signout", {"csrf": page.session_csrf(fleet)})
            assert (status, where) == (303, "/ui/signin")
            assert (await page.get("/ui/"))[1] == "/ui/signin"
        finally:
            await page.close()

        # A token's session ends when the token is revoked.
        token, _ = await services.issue_token(admin, "ldc-b")
        page = Page(gw)
        try:
            _, _, text = await page.get("/ui/signin")
            assert "Sign in with this certificate" not in text
            csrf = await page.form_token()
            assert (await page.post("/ui/signin", {"csrf": csrf, "method": "certificate"}))[0] \
                == 401  # no certificate presented
            csrf = await page.form_token()
            status, _, _ = await page.post("/ui/signin", {"csrf": csrf, "token": token})
            assert status == 303
            assert (await page.get("/ui/ders/d2"))[0] == 200
            await services.revoke_token(admin, token.removeprefix("dgw_").split(".")[0])
            assert (await page.get("/ui/ders/d2"))[1] == "/ui/signin"
        finally:
            await page.close()

        # An aggregator may sign in but the adapters' health is for operators.
        token, _ = await services.issue_token(admin, "agg-y")
        page = Page(gw)
        try:
            csrf = await page.form_token()
            await page.post("/ui/signin", {"csrf": csrf, "token": token})
            status, _, fleet = await page.get("/ui/")
            assert status == 200 and "d5" in fleet and "d1" not in fleet
            assert (await page.get("/ui/health"))[0] == 403
            # the session cookie is not a credential for the JSON API
            cookie = next(c for c in page.http.cookie_jar if c.key == COOKIE)
            async with aiohttp.ClientSession() as bare, bare.get(
                    gw.platform_url + "/v1/me", ssl=page.ssl,
                    headers={"Cookie": f"{COOKIE}={cookie.value}"}) as r:
                assert r.status == 401
        finally:
            await page.close()


def test_sessions_expire_idle_and_absolute_and_are_bounded():
    store = SessionStore(idle_s=0.05, absolute_s=10, max_sessions=2)
    sid, _ = store.open("ldc-a")
    assert store.get(sid) is not None
    time.sleep(0.1)
    assert store.get(sid) is None  # idle too long
    store = SessionStore(idle_s=10, absolute_s=0.05)
    sid, _ = store.open("ldc-a")
    time.sleep(0.1)
    assert store.get(sid) is None  # too old, however busy
    store = SessionStore(max_sessions=2)
    first, _ = store.open("a")
    store.open("b")
    store.open("c")
    assert len(store) == 2 and store.get(first) is None  # the least recently used went
    assert store.get("not-a-session") is None and store.get(None) is None
