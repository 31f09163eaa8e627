"""The operator's CLI against a running `der-gateway serve`: certs, send, status, token, SIGTERM."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests.support.gateway import GatewayProcess
from tests.support.seed import seed_platform


def cli(tmp, env, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=tmp,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


async def test_cli_round_trip_and_graceful_sigterm(tmp_path):
    proc = GatewayProcess(tmp_path)
    gw = await proc.start()
    try:
        await seed_platform(gw)
        out = cli(tmp_path, proc.env, "certs", "issue", "ieee2030_5", "field-device")
        assert out.returncode == 0, out.stderr
        assert "ieee2030_5/field-device" in out.stdout and "LFDI" in out.stdout
        token = cli(tmp_path, proc.env, "token", "issue", "ldc-a").stdout.strip()
        assert token.startswith("dgw_")
        start = datetime.now(UTC).replace(microsecond=0)
        (tmp_path / "limit.toml").write_text(
            'kind = "limit"\nreason = "feeder work"\n'
            f'start = "{start.isoformat()}"\nend = "{(start + timedelta(hours=1)).isoformat()}"\n'
            '[target]\nkind = "resource"\nid = "d1"\n[limits]\nexport_max_w = 2500\n')
        sent = cli(tmp_path, proc.env, "send", "limit.toml", "--token", token)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert json.loads(sent.stdout)["issuer_id"] == "ldc-a"
        resent = cli(tmp_path, proc.env, "send", "limit.toml", "--token", token)
        assert json.loads(resent.stdout)["id"] == json.loads(sent.stdout)["id"]  # idempotent
        refused = cli(tmp_path, proc.env, "send", "limit.toml")  # the admin may not issue
        assert refused.returncode == 1 and "refused (403" in refused.stderr and "--cert" in refused.stderr
        status = json.loads(cli(tmp_path, proc.env, "status", "--json").stdout)
        assert status["ders"]["total"] == 6
        assert status["effective_controls"]["ders_with_intervals"] == 1
        assert "platform" in status["listeners"]
        human = cli(tmp_path, proc.env, "status").stdout
        assert "DERs: 6" in human
    finally:
        assert await proc.stop() == 0  # SIGTERM: a clean, zero exit
    assert "shutting down" in proc.log()
