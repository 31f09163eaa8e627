"""The adapter's settings are a model that refuses unknown keys and wrong values, naming
them, and has a default for everything (MQTT off)."""

from __future__ import annotations

import pytest

from adapters.openadr3.settings import Settings, load


def test_defaults_need_nothing_and_leave_mqtt_off():
    settings = load({"enabled": True, "listen": "https://127.0.0.1:8444"})
    assert settings == Settings()
    assert settings.mqtt() is None and settings.origin == "https://127.0.0.1:8444"


@pytest.mark.parametrize(("config", "named"), [
    ({"token_tll_s": 60}, "adapters.openadr3.token_tll_s"),
    ({"token_ttl_s": 0}, "adapters.openadr3.token_ttl_s"),
    ({"mqtt_public_uris": "mqtt://x"}, "adapters.openadr3.mqtt_public_uris"),
])
def test_unknown_or_wrong_keys_stop_the_start_with_the_key_named(config, named):
    with pytest.raises(ValueError, match=named):
        load(config)


def test_mqtt_settings_make_a_broker_config_without_showing_the_password():
    settings = load({"mqtt_url": "mqtts://broker:8883", "mqtt_username": "vtn",
                     "mqtt_password": "s3cret"})
    assert "s3cret" not in repr(settings)
    mqtt = settings.mqtt()
    assert mqtt is not None and mqtt.password == "s3cret"
    assert mqtt.advertised == ["mqtts://broker:8883"]
