#!/usr/bin/env bash
# Starts examples/http_service.rs (the Verify v2 twin) on the memory store
# and then on Redis, and drives each with the official `twilio` npm client
# (tests/interop/verify_driver.js): create, check by To and by
# VerificationSid, fetch, cancel, approve, and every error code.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=127.0.0.1:38417
outbox="$PWD/target/http_service_outbox.txt"
log="$PWD/target/http_service.log"
export VERIFY_PORT=${addr##*:} VERIFY_OUTBOX=$outbox
export VERIFY_ACCOUNT_SID=AC0123456789abcdef0123456789abcdef
export VERIFY_SERVICE_SID=VAfedcba9876543210fedcba9876543210
export VERIFY_AUTH_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export NODE_PATH=${NODE_PATH:-$PWD/target/ci-node/node_modules}
# All features: reuses the build of `cargo test --all-features`.
cargo build --quiet --example http_service --all-features

server=
trap '[[ -n $server ]] && kill $server 2>/dev/null || true' EXIT

run() { # run STORE [REDIS_URL]
  rm -f "$outbox"
  env -u PINSEAL_REDIS_URL ${2:+PINSEAL_REDIS_URL=$2} PINSEAL_HTTP_ADDR=$addr \
    PINSEAL_OUTBOX="$outbox" PINSEAL_ACCOUNT_SID=$VERIFY_ACCOUNT_SID \
    PINSEAL_SERVICE_SID=$VERIFY_SERVICE_SID PINSEAL_AUTH_TOKEN=$VERIFY_AUTH_TOKEN \
    target/debug/examples/http_service >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://$addr/" && break
    sleep 0.1
  done
  grep -q "challenge store: $1" "$log" || { cat "$log"; echo "http_service: not on $1" >&2; exit 1; }
  node tests/interop/verify_driver.js
  # A 429 carries Retry-After (the npm client does not expose headers).
  headers=$(curl -s -D - -o /dev/null -u "$VERIFY_ACCOUNT_SID:$VERIFY_AUTH_TOKEN" \
    -d 'To=%2B15550100566&Channel=sms' "http://$addr/v2/Services/$VERIFY_SERVICE_SID/Verifications")
  grep -q '^HTTP/1.1 429' <<<"$headers" || { echo "http_service: no 429: $headers" >&2; exit 1; }
  grep -qi '^retry-after: [1-9]' <<<"$headers" || { echo "http_service: no Retry-After" >&2; exit 1; }
  kill $server; wait $server 2>/dev/null || true; server=
  # The server's output holds the lifecycle events, and no code or number
  # that was sent.
  for kind in pending approved canceled max-attempts-reached; do
    grep -q "\"type\":\"com.twilio.accountsecurity.verify.verification.$kind\"" "$log" \
      || { echo "http_service: no $kind event" >&2; exit 1; }
  done
  # (As a token of its own: six digits turn up by chance inside the hex ids.)
  awk '{print $NF; print substr($(NF-1), 2)}' "$outbox" | sort -u | while read -r secret; do
    if grep -qE "(^|[^0-9A-Za-z])\+?$secret([^0-9A-Za-z]|\$)" "$log"; then
      echo "http_service: a code or number in the log" >&2; exit 1
    fi
  done
  echo "http_service: the twilio client passed on the $1 store"
}

run memory
run Redis "${PINSEAL_REDIS_URL:-redis://127.0.0.1:6379/}"
