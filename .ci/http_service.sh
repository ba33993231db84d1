#!/usr/bin/env bash
# Starts examples/http_service.rs and drives it with curl: start, check by
# phone number and by id, cancel, bad input, and the send budget's 429.
set -euo pipefail
cd "$(dirname "$0")/.."

addr=127.0.0.1:38417
outbox="$PWD/target/http_service_outbox.txt"
rm -f "$outbox"
# All features: reuses the build of `cargo test --all-features`.
cargo build --quiet --example http_service --all-features
# The memory store: a fresh one each run (PINSEAL_REDIS_URL would pick Redis).
env -u PINSEAL_REDIS_URL PINSEAL_HTTP_ADDR=$addr PINSEAL_OUTBOX=$outbox \
  target/debug/examples/http_service &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$addr/" && break
  sleep 0.1
done

fail() { echo "http_service: $*" >&2; exit 1; }

# post PATH BODY: prints "STATUS BODY"
post() {
  curl -s -o target/http_body.txt -w '%{http_code}' -H 'content-type: application/json' \
    -X POST "http://$addr$1" -d "$2"
  printf ' %s\n' "$(cat target/http_body.txt)"
}
expect() { # expect WHAT GOT WANT-PATTERN
  case "$2" in $3) echo "ok: $1 -> $2" ;; *) fail "$1: got '$2', want '$3'" ;; esac
}
last_code() { tail -n 1 "$outbox" | awk '{print $NF}'; }

started=$(post /verifications '{"to":"+1 (555) 010-0199"}')
expect "start" "$started" '201 {"id":"*","to":"+15550100199","status":"pending"}'
id=$(sed 's/.*"id":"\([0-9a-f]*\)".*/\1/' <<<"$started")
code=$(last_code)
[[ "$code" =~ ^[0-9]{6}$ ]] || fail "no code in the outbox"
wrong=$(printf '%06d' $(( (10#$code + 1) % 1000000 )))

expect "wrong code by number" "$(post /verifications/check "{\"to\":\"+15550100199\",\"code\":\"$wrong\"}")" \
  '200 {"status":"pending","attempts_left":4}'
expect "right code by id" "$(post /verifications/check "{\"id\":\"$id\",\"code\":\"$code\"}")" \
  '200 {"status":"approved"}'
expect "spent code" "$(post /verifications/check "{\"to\":\"+15550100199\",\"code\":\"$code\"}")" \
  '200 {"status":"not_found"}'

started=$(post /verifications '{"to":"+15550100199"}')
id=$(sed 's/.*"id":"\([0-9a-f]*\)".*/\1/' <<<"$started")
code=$(last_code)
expect "cancel" "$(post "/verifications/$id/cancel" '')" '200 {"status":"canceled"}'
expect "cancel again" "$(post "/verifications/$id/cancel" '')" '404 {"status":"not_found"}'
expect "canceled code" "$(post /verifications/check "{\"to\":\"+15550100199\",\"code\":\"$code\"}")" \
  '200 {"status":"canceled"}'

expect "national number" "$(post /verifications '{"to":"555-0199"}')" '400 *'
bad=$(post /verifications/check '{"to":"+15550100199","code":739182}')
expect "code of the wrong type" "$bad" '400 *'
case "$bad" in *739182*) fail "the error echoes the input: $bad" ;; esac
expect "bad challenge id" "$(post /verifications/nothex/cancel '')" '404 {"code":20404,*'

# The number's send budget is 5 per 10 minutes: 2 spent, 3 left.
for _ in 1 2 3; do
  expect "resend" "$(post /verifications '{"to":"+15550100199"}')" '201 *'
done
headers=$(curl -s -D - -H 'content-type: application/json' \
  -X POST "http://$addr/verifications" -d '{"to":"+15550100199"}')
expect "sixth send" "$(head -n 1 <<<"$headers" | tr -d '\r')" 'HTTP/1.1 429*'
grep -qi '^retry-after: [1-9]' <<<"$headers" || fail "no Retry-After on 429: $headers"
grep -q '"code":60203' <<<"$headers" || fail "not Verify's 60203: $headers"
echo "http_service: all requests answered as expected"
