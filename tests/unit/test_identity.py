"""LFDI/SFDI against the IEEE 2030.5-2018 worked example, and against generated certificates."""

from __future__ import annotations

import hashlib

from pki.devpki import DevPki, load_pair
from pki.identity import lfdi, lfdi_from_fingerprint, sfdi, sfdi_from_fingerprint

# IEEE 2030.5-2018 §6.3.4 example: the certificate fingerprint and the identities derived from it.
SPEC_FINGERPRINT = "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5349E2AD745672ED145EE213A"


def test_lfdi_is_first_160_bits_of_the_fingerprint():
    assert lfdi_from_fingerprint(SPEC_FINGERPRINT) == "3E4F45AB31EDFE5B67E343E5E4562E31984E23E5"


def test_sfdi_is_first_36_bits_with_check_digit():
    assert sfdi_from_fingerprint(SPEC_FINGERPRINT) == 167261211391
    assert sum(int(c) for c in str(167261211391)) % 10 == 0


def test_identities_of_a_generated_certificate(tmp_path):
    pki = DevPki(tmp_path)
    ids = pki.init(devices=("device-1",), aggregators=(), opcua_clients=(), modbus_clients=())
    cert, _ = load_pair(tmp_path / "ieee2030_5/clients/device-1.pem")
    from cryptography.hazmat.primitives.serialization import Encoding

    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    assert lfdi(cert) == digest[:40]
    assert sfdi(cert) == sfdi_from_fingerprint(digest)
    assert ids["ieee2030_5/device-1"]["lfdi"] == digest[:40]


def test_dev_pki_never_replaces_existing_keys(tmp_path):
    pki = DevPki(tmp_path)
    pki.init()
    key = (tmp_path / "ieee2030_5/serca.key").read_bytes()
    pki.init()
    assert (tmp_path / "ieee2030_5/serca.key").read_bytes() == key
    assert oct((tmp_path / "ieee2030_5/serca.key").stat().st_mode)[-3:] == "600"
