"""TLS context helpers. Client authentication is on unless a caller explicitly turns it off."""

from __future__ import annotations

import ssl
from pathlib import Path

# IEEE 2030.5 mandates TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 over TLS 1.2. OpenSSL's "DEFAULT"
# cipher list leaves CCM8 out, so name it explicitly.
IEEE2030_5_CIPHERS = "ECDHE-ECDSA-AES128-CCM8"


def server_context(
    cert: Path, key: Path, client_ca: Path | None, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """A modern server context (TLS 1.2+); verifies client certificates against `client_ca`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def ieee2030_5_server_context(cert_chain: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """TLS 1.2 only, ECDHE-ECDSA-AES128-CCM8 only, client certificate required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(IEEE2030_5_CIPHERS)
    ctx.load_cert_chain(cert_chain, key)
    ctx.load_verify_locations(cafile=client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    ca: Path, cert: Path | None = None, key: Path | None = None, *, ieee2030_5: bool = False
) -> ssl.SSLContext:
    """A client context that verifies the server against `ca`, optionally presenting a cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ieee2030_5:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(IEEE2030_5_CIPHERS)
    ctx.load_verify_locations(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def peer_certificate_der(transport: object) -> bytes | None:
    """The verified peer certificate (DER) of an asyncio transport, or None."""
    ssl_object = getattr(transport, "get_extra_info", lambda _n: None)("ssl_object")
    if ssl_object is None:
        return None
    der: bytes | None = ssl_object.getpeercert(binary_form=True)
    return der
