#!/usr/bin/env bash
# Starts examples/ivr_server.rs and drives it as the telephony provider
# would, with requests signed by the official `twilio` npm package
# (tests/interop/ivr_driver.js); then checks that no log line holds a
# digit the caller typed.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=127.0.0.1:38418
token=ivr-test-token-$RANDOM$RANDOM
log="$PWD/target/ivr_server.log"
# All features: reuses the build of `cargo test --all-features`.
cargo build --quiet --example ivr_server --all-features
PINSEAL_HTTP_ADDR=$addr PINSEAL_AUTH_TOKEN=$token PINSEAL_ENVELOPE_TTL_SECS=2 NO_COLOR=1 \
  target/debug/examples/ivr_server >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$addr/" && break
  sleep 0.1
done

BASE="http://$addr" TOKEN=$token TTL_SECS=2 node tests/interop/ivr_driver.js

kill $server
wait $server 2>/dev/null || true
# The log names calls (CA + 32 characters) and callers by pseudonym
# (ps1.<key id>.<base64url>), and each line starts with a timestamp:
# without those, no line may hold a value the caller typed.
leaks=$(sed -E -e 's/^[0-9T:.-]+Z //' -e 's/ps1\.[0-9a-f]+\.[A-Za-z0-9_-]+//g' \
  -e 's/CA[0-9a-f]{32}//g' "$log" | grep -E '1234|4321|9999|5678' || true)
if [ -n "$leaks" ]; then
  echo "ivr_server: a log line holds typed digits:" >&2
  echo "$leaks" >&2
  exit 1
fi
# The log did record the failures, redacted.
grep -q 'values do not match.*REDACTED' "$log" || { cat "$log"; echo "ivr_server: no redacted mismatch line" >&2; exit 1; }
grep -q 'envelope has expired' "$log" || { cat "$log"; echo "ivr_server: no expiry line" >&2; exit 1; }
grep -q 'already accepted once' "$log" || { cat "$log"; echo "ivr_server: no replay line" >&2; exit 1; }
echo "ivr_server: $(wc -l <"$log") log lines, none holds a typed digit"
