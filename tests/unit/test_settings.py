from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import load_settings


def test_defaults_are_the_documented_listeners():
    """The core's own defaults; each adapter's are its settings model's (the core names no
    protocol), as the README's table says."""
    from adapters.ieee2030_5.settings import Settings as Ieee
    from adapters.opcua.settings import Settings as OpcUa
    from adapters.openadr3.settings import Settings as OpenAdr

    s = load_settings(environ={})
    assert s.platform_listen == "https://127.0.0.1:9443"
    assert s.adapter_config("opcua") == {"enabled": True}  # nothing but what was set
    assert Ieee().listen == "https://127.0.0.1:8443"
    assert OpenAdr().listen == "https://127.0.0.1:8444"
    assert OpcUa().listen == "opc.tcp://127.0.0.1:4840"
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///var/")


def test_toml_then_environment(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('log_level = "debug"\n[adapters.opcua]\nenabled = false\nlisten = "x"\n')
    s = load_settings(path, environ={"DERGW_ADAPTERS__OPCUA__LISTEN": "opc.tcp://0.0.0.0:4841",
                                     "DERGW_DATABASE_URL": "postgresql+asyncpg://db/gw"})
    assert s.log_level == "DEBUG"
    assert s.adapter_config("opcua") == {"listen": "opc.tcp://0.0.0.0:4841", "enabled": False}
    assert s.effective_database_url == "postgresql+asyncpg://db/gw"


def test_unknown_setting_is_an_error():
    with pytest.raises(ValidationError):
        load_settings(environ={"DERGW_DATABSE_URL": "typo"})
