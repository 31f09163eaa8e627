"""The adapter's settings: a model with defaults that refuses unknown or bad keys."""

from __future__ import annotations

import pytest

from adapters.ieee2030_5.settings import Settings
from gateway.errors import InvalidInput


def test_defaults_need_no_table():
    settings = Settings.from_config({})
    assert settings.listen == "https://127.0.0.1:8443"
    assert settings.notification_tls.cert_chain.name == "notifier-chain.pem"


def test_a_misspelt_key_is_named():
    with pytest.raises(InvalidInput, match="refrsh_s"):
        Settings.from_config({"refrsh_s": 5})


def test_values_are_checked():
    with pytest.raises(InvalidInput, match="dispatch_as"):
        Settings.from_config({"dispatch_as": "watts"})
    with pytest.raises(InvalidInput, match=r"notification_tls\.ciphers"):
        Settings.from_config({"notification_tls": {"ciphers": "DEFAULT"}})
