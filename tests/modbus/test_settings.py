"""The adapter's settings: defaults, checked values, and unknown keys refused by name."""

from __future__ import annotations

import pytest

from adapters.modbus.settings import Settings, load
from gateway.errors import InvalidInput
from tests.support.gateway import GatewayProcess


def test_defaults_and_environment_strings():
    assert load({}) == Settings()
    assert load({"enabled": True}).poll_interval_s == 5.0
    # From DERGW_ADAPTERS__MODBUS__<KEY>: numbers may arrive as text.
    settings = load({"poll_interval_s": "0.5", "offline_after": "4"})
    assert (settings.poll_interval_s, settings.offline_after) == (0.5, 4)
    assert settings.refresh_s == pytest.approx(20.0)


@pytest.mark.parametrize(("config", "named"), [
    ({"poll_intervl_s": 5}, "adapters.modbus.poll_intervl_s: Extra inputs are not permitted"),
    ({"timeout_s": 0}, "adapters.modbus.timeout_s:"),
    ({"refresh_fraction": 1.5}, "adapters.modbus.refresh_fraction:"),
    ({"max_concurrency": "many"}, "adapters.modbus.max_concurrency:"),
    ({"client_cert": "../../etc/key"}, "adapters.modbus.client_cert:"),
    ({"backoff_initial_s": 10, "backoff_max_s": 1}, "backoff_max_s must be at least"),
])
def test_bad_settings_are_refused_naming_the_key(config, named):
    with pytest.raises(InvalidInput) as refused:
        load(config)
    assert named in str(refused.value)


async def test_a_typo_in_the_environment_stops_the_start_naming_the_key(tmp_path):
    proc = GatewayProcess(tmp_path, modbus={"poll_intervl_s": 5})
    with pytest.raises(RuntimeError, match="gateway exited"):
        await proc.start()
    assert await proc.wait_exit() != 0
    assert "adapters.modbus.poll_intervl_s: Extra inputs are not permitted" in proc.log()
