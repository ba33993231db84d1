#!/usr/bin/env bash
# Starts a 3-master Redis Cluster on 127.0.0.1:7001-7003 (no replicas), in
# target/redis-cluster, and waits until it is ready. `stop` shuts it down.
# Whatever Redis already listens on those ports is shut down first.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="$PWD/target/redis-cluster"
ports="7001 7002 7003"

if [ "${1:-start}" = stop ]; then
  for p in $ports; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  exit 0
fi

for p in $ports; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
rm -rf "$dir"
for p in $ports; do
  mkdir -p "$dir/$p"
  redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
    --cluster-config-file "$dir/$p/nodes.conf" --dir "$dir/$p" \
    --save '' --appendonly no --daemonize yes \
    --logfile "$dir/$p/redis.log"
done
for p in $ports; do
  for _ in $(seq 1 100); do
    redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
done
redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 \
  --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 1 100); do
  ok=1
  for p in $ports; do
    redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
  done
  [ "$ok" = 1 ] && break
  sleep 0.1
done
[ "$ok" = 1 ] || { echo "the Redis Cluster did not come up" >&2; exit 1; }
echo "Redis Cluster up on 127.0.0.1:7001-7003"
