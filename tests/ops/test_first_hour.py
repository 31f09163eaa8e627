"""The first hour, as a new user meets it: the CLI's mistakes end in one line, `--version`,
`serve --help`, the certificate fingerprint the platform wants, the admin's 403 with its
hint, and correlation ids of 422 answers and unknown routes found in the log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from cryptography import x509

from pki.identity import sha256_hex
from tests.support import gateway as support
from tests.support.gateway import GatewayProcess


def cli(tmp, env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=tmp,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("der-gateway: "), out.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_mistakes_end_in_one_line_without_a_gateway(tmp_path):
    env = support.test_settings(tmp_path)
    (tmp_path / "bad.json").write_text("{bad")
    (tmp_path / "typo.toml").write_text('platfrom_listen = "https://127.0.0.1:1"\n')
    assert cli(tmp_path, env, "certs", "init").returncode == 0
    one_line_error(cli(tmp_path, env, "status"), "cannot reach the gateway", "serve")
    one_line_error(cli(tmp_path, env, "send", "missing.json"), "no file missing.json")
    one_line_error(cli(tmp_path, env, "send", "bad.json"), "not valid JSON")
    one_line_error(cli(tmp_path, env, "--config", "typo.toml", "status"),
                   "platfrom_listen", "unknown setting")
    one_line_error(cli(tmp_path, env, "--config", "nope.toml", "status"), "nope.toml")
    one_line_error(cli(tmp_path, {**env, "DERGW_LOG_LEVEL": "LOUD"}, "status"), "log_level")
    one_line_error(cli(tmp_path, env, "token", "issue", "nobody"), "no participant 'nobody'")
    one_line_error(cli(tmp_path, env, "certs", "fingerprint", "none.pem"), "no file none.pem")
    (tmp_path / "ok.json").write_text("{}")
    one_line_error(cli(tmp_path, env, "send", "ok.json", "--cert", "x.pem"), "x.pem")
    version = cli(tmp_path, env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("der-gateway 0.")
    helped = cli(tmp_path, env, "serve", "--help").stdout
    for option in ("--config", "--platform-listen", "--data-dir", "--database-url",
                   "--log-level", "DERGW_ADAPTERS__"):
        assert option in helped


def test_fingerprint_registration_send_as_ldc_and_correlation_ids(tmp_path):
    proc = GatewayProcess(tmp_path)
    try:
        gw = asyncio.run(proc.start())
        env = proc.env
        assert cli(tmp_path, env, "certs", "issue", "platform", "ldc-a").returncode == 0
        pem = gw.pki / "platform/clients/ldc-a.pem"
        printed = cli(tmp_path, env, "certs", "fingerprint", str(pem)).stdout.strip()
        # the platform's fingerprint is the SHA-256 of the DER encoding, not of the PEM file
        assert printed == sha256_hex(x509.load_pem_x509_certificate(pem.read_bytes()))
        admin = gw.client("admin")

        async def register_and_probe():
            await admin.ok("POST", "/v1/participants", [
                {"id": "ldc-a", "role": "ldc", "dso_model": "total", "cert_sha256": printed}])
            await admin.ok("POST", "/v1/connection-points",
                           {"id": "cp1", "ldc_id": "ldc-a", "td_node": "N1", "feeder": "F1"})
            bad = await admin.post("/v1/instructions", {"kind": "limit"})
            unknown = await admin.get("/v1/no-such-route")
            return bad, unknown

        (s422, bad), (s404, unknown) = asyncio.run(register_and_probe())
        assert s422 == 422 and s404 == 404
        (tmp_path / "limit.json").write_text(json.dumps({
            "kind": "limit", "target": {"kind": "connection_point", "id": "cp1"},
            "start": "2030-01-01T00:00:00Z", "end": "2030-01-01T01:00:00Z",
            "limits": {"export_max_w": 5000}}))
        as_admin = cli(tmp_path, env, "send", "limit.json")
        assert as_admin.returncode == 1 and "refused (403" in as_admin.stderr
        assert "--cert certs/platform/clients/ldc-a.pem" in as_admin.stderr
        assert "--token" in as_admin.stderr and "Traceback" not in as_admin.stderr
        as_ldc = cli(tmp_path, env, "send", "limit.json", "--cert", str(pem))
        assert as_ldc.returncode == 0, as_ldc.stderr
        assert json.loads(as_ldc.stdout)["issuer_id"] == "ldc-a"
    finally:
        asyncio.run(proc.stop())
    log = proc.log()
    for answer in (bad, unknown):
        cid = answer["correlation_id"]
        assert cid in log, (cid, log[-2000:])
    assert "422 Invalid request body" in log
