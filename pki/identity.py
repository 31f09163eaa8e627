"""IEEE 2030.5 device identities derived from a certificate (2030.5-2018 §6.3.4).

LFDI: the first 160 bits of SHA-256 over the certificate's DER bytes, as 40 hex characters
(emitted uppercase, compared case-insensitively). SFDI: the first 36 bits as a decimal
integer, followed by a check digit that makes the sum of all digits a multiple of 10.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def fingerprint(cert_der: bytes) -> str:
    """SHA-256 of the DER bytes, uppercase hex (64 characters)."""
    return hashlib.sha256(cert_der).hexdigest().upper()


def lfdi_from_fingerprint(fp_hex: str) -> str:
    return fp_hex[:40].upper()


def sfdi_from_fingerprint(fp_hex: str) -> int:
    value = int(fp_hex[:9], 16)  # 36 bits = 9 hex digits
    digits = sum(int(c) for c in str(value))
    return value * 10 + (10 - digits % 10) % 10


def lfdi(cert: x509.Certificate | bytes) -> str:
    return lfdi_from_fingerprint(fingerprint(_der(cert)))


def sfdi(cert: x509.Certificate | bytes) -> int:
    return sfdi_from_fingerprint(fingerprint(_der(cert)))


def sha256_hex(cert: x509.Certificate | bytes) -> str:
    """Lowercase SHA-256 fingerprint: how the platform API names a client certificate."""
    return fingerprint(_der(cert)).lower()


def _der(cert: x509.Certificate | bytes) -> bytes:
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(Encoding.DER)
    return cert
