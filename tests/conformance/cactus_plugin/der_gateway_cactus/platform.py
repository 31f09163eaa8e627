"""A small client of the der-gateway platform API, authenticated by platform certificates.

Runs inside the cactus-client virtual environment, so it imports nothing from der-gateway.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp

FOOTER = "-----END CERTIFICATE-----"


def cert_sha256(pem: Path) -> str:
    """SHA-256 of the first certificate in a PEM file (a chain file holds several: the
    standard library's decoder must be given exactly one)."""
    text = pem.read_text()
    first = text[:text.index(FOOTER) + len(FOOTER)]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first.strip())).hexdigest()


def cert_lfdi(pem: Path) -> str:
    """2030.5 LFDI of the first certificate in a PEM file (SHA-256, first 160 bits)."""
    return cert_sha256(pem)[:40].upper()


class PlatformApi:
    def __init__(self, base: str, pki: Path) -> None:
        self.base = base.rstrip("/")
        self.pki = pki

    def _ssl(self, participant: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "platform/ca.pem"))
        cert = self.pki / f"platform/clients/{participant}.pem"
        ctx.load_cert_chain(cert, cert.with_suffix(".key"))
        return ctx

    async def call(self, participant: str, method: str, path: str, body: Any = None,
                   ok: tuple[int, ...] = ()) -> Any:
        """One request as `participant`; raises unless 2xx (or a status listed in `ok`)."""
        async with aiohttp.ClientSession() as http, http.request(
            method, self.base + path, json=body, ssl=self._ssl(participant)
        ) as resp:
            text = await resp.text()
            if resp.status >= 300 and resp.status not in ok:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {text[:300]}")
            return await resp.json(content_type=None) if text.strip() else None
