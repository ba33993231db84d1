#!/usr/bin/env bash
# Runs the envelope benches (pinseal with one engine beside ring and raw
# aes-gcm, in one process) and the Node.js baseline on this machine, then
# prints the table of medians and ratios that BENCHMARKS.md records.
#   benches/compare.sh                # the default engine (aes-gcm), ~4 minutes
#   benches/compare.sh ring           # pinseal on the ring engine
#   benches/compare.sh aws-lc-rs      # pinseal on the aws-lc-rs engine
#   MEASURE=5 benches/compare.sh ring # longer, steadier samples
# Measure what users resolve: run `cargo update` first (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${1:-aes-gcm}"
case "$engine" in
  aes-gcm) features=() ;;
  ring|aws-lc-rs) features=(--features "$engine") ;;
  *) echo "unknown engine $engine (aes-gcm, ring, aws-lc-rs)" >&2; exit 2 ;;
esac
rm -rf target/criterion/envelope_*
cargo bench "${features[@]}" --bench envelope -- --warm-up-time 1 --measurement-time "${MEASURE:-2}" >/dev/null
if command -v node >/dev/null; then
  node benches/node_gcm.js 4 16 1048576 > target/node_gcm.txt
else
  echo "node not found: the Node comparison is left out" >&2
  rm -f target/node_gcm.txt
fi
python3 benches/report.py "$engine"
