#!/usr/bin/env bash
# The README's "Using it" walk-through, as a script: run it while `./dev serve` runs.
#
#   ./dev serve &            # or in another terminal
#   docs/walkthrough.sh
#
# It registers an ISO, an LDC (ldc-a, by its certificate's real fingerprint) and an
# aggregator, a connection point and a 2030.5 DER (by its device certificate's real LFDI),
# then sends, as ldc-a, an export limit from now for two hours, and reads the DER's
# effective control. Times are relative to now. Registering again is harmless (409 is
# taken as "already registered"). tests/ops/test_walkthrough.py runs it in CI.
#
# Settings as the gateway's: DERGW_PLATFORM_LISTEN (https://127.0.0.1:9443) and
# DERGW_PKI_DIR (certs). The CLI: `der-gateway` on PATH, else .venv/bin/der-gateway.
set -euo pipefail

BASE=${DERGW_PLATFORM_LISTEN:-https://127.0.0.1:9443}
PKI=${DERGW_PKI_DIR:-certs}
if command -v der-gateway >/dev/null; then
  DG=der-gateway
else
  DG="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/der-gateway"
fi
step() { printf '\n== %s\n' "$*"; }

# curl as a participant: its certificate (ca, cert, key), JSON in and out.
as() {  # as NAME METHOD PATH [BODY]
  local name=$1 method=$2 path=$3 body=${4:-}
  local args=(-sS --cacert "$PKI/platform/ca.pem" --cert "$PKI/platform/clients/$name.pem"
              --key "$PKI/platform/clients/$name.key" -X "$method" -w '\n%{http_code}\n')
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "$BASE$path"
}

# Expect one of the given HTTP statuses; print the body; stop otherwise.
expect() {  # expect "201 409" <<< "$(as ...)"
  local wanted=$1 reply status
  reply=$(cat)
  status=$(tail -n1 <<<"$reply")
  sed '$d' <<<"$reply"
  if [[ " $wanted " != *" $status "* ]]; then
    echo "walkthrough: expected HTTP $wanted, got $status" >&2
    exit 1
  fi
}

step "certificates: ldc-a's platform client and a 2030.5 device (dev PKI)"
$DG certs issue platform ldc-a >/dev/null
$DG certs issue ieee2030_5 d1-device >/dev/null
LDC_SHA256=$($DG certs fingerprint "$PKI/platform/clients/ldc-a.pem")
D1_LFDI=$($DG certs fingerprint --all "$PKI/ieee2030_5/clients/d1-device.pem" | awk '$1 == "lfdi" {print $2}')
echo "ldc-a certificate SHA-256: $LDC_SHA256"
echo "d1-device LFDI:            $D1_LFDI"

step "participants (admin)"
as admin POST /v1/participants '[
  {"id": "iso", "role": "iso"},
  {"id": "ldc-a", "role": "ldc", "dso_model": "dual_participation", "cert_sha256": "'"$LDC_SHA256"'"},
  {"id": "agg-x", "role": "aggregator"}]' | expect "201 409"

step "a connection point and a DER (admin)"
as admin POST /v1/connection-points \
  '{"id": "cp1", "ldc_id": "ldc-a", "td_node": "N1", "feeder": "F1"}' | expect "201 409"
as admin POST /v1/resources '{"id": "d1", "connection_point_id": "cp1", "kind": "pv",
  "nameplate": {"export_max_w": 10000}, "aggregator_id": "agg-x",
  "binding": {"protocol": "ieee2030_5", "address": {"lfdi": "'"$D1_LFDI"'"}}}' | expect "201 409"

step "who am I, as ldc-a"
as ldc-a GET /v1/me | expect 200

step "an export limit from now for two hours (as ldc-a, by its certificate)"
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
END=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)
as ldc-a POST /v1/instructions '{"kind": "limit", "target": {"kind": "resource", "id": "d1"},
  "start": "'"$START"'", "end": "'"$END"'",
  "limits": {"export_max_w": 5000}, "reason": "thermal limit, feeder F1"}' | expect 201

step "the same with the CLI: a 2,500 W limit from in 10 minutes, one hour long"
cat > "${TMPDIR:-/tmp}/limit-$$.json" <<EOF
{"kind": "limit", "target": {"kind": "resource", "id": "d1"},
 "start": "$(date -u -d '+10 minutes' +%Y-%m-%dT%H:%M:%SZ)",
 "end": "$(date -u -d '+70 minutes' +%Y-%m-%dT%H:%M:%SZ)",
 "limits": {"export_max_w": 2500}, "reason": "planned work, feeder F1"}
EOF
$DG send "${TMPDIR:-/tmp}/limit-$$.json" --cert "$PKI/platform/clients/ldc-a.pem" >/dev/null
rm -f "${TMPDIR:-/tmp}/limit-$$.json"
echo "sent"

step "d1's effective control (as ldc-a)"
as ldc-a GET /v1/resources/d1/effective-control | expect 200

step "notices, acknowledgements and readings (as ldc-a)"
as ldc-a GET /v1/notices | expect 200
as ldc-a GET '/v1/acknowledgements?resource_id=d1' | expect 200
as ldc-a GET '/v1/readings?resource_id=d1' | expect 200

step "done: follow live with curl -N ... $BASE/v1/events, or open $BASE/ui/ in a browser"
