#!/usr/bin/env bash
# Runs the envelope benches (pinseal beside ring and raw aes-gcm, in one
# process) and the Node.js baseline on this machine, then prints the table of
# medians and ratios that BENCHMARKS.md records.
#   benches/compare.sh              # about 4 minutes
#   MEASURE=5 benches/compare.sh    # longer, steadier samples
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench envelope -- --warm-up-time 1 --measurement-time "${MEASURE:-2}" >/dev/null
if command -v node >/dev/null; then
  node benches/node_gcm.js 4 16 1048576 > target/node_gcm.txt
else
  echo "node not found: the Node comparison is left out" >&2
  rm -f target/node_gcm.txt
fi
python3 benches/report.py
