#!/usr/bin/env python3
"""Prints the envelope ratio table from criterion's results and the Node
baseline (see benches/compare.sh). Medians in ns; ratios are pinseal's time
over the baseline's time in the same run (lower is faster), except
throughput, which is pinseal's bytes/s over the baseline's."""
import json
import os
import platform
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "target")
CRIT = os.path.join(ROOT, "criterion")


def median(group, fn, impl):
    path = os.path.join(CRIT, group, fn, impl, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def node(size):
    with open(os.path.join(ROOT, "node_gcm.txt")) as f:
        for line in f:
            _, s, ns = line.split()
            if int(s) == size:
                return float(ns)
    raise KeyError(size)


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


cpu = "unknown CPU"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
ENGINE = sys.argv[1] if len(sys.argv) > 1 else "aes-gcm"


def locked_versions(names):
    """The versions Cargo.lock resolved for `names` (what the bench ran)."""
    found, name = {}, None
    with open(os.path.join(os.path.dirname(__file__), "..", "Cargo.lock")) as f:
        for line in f:
            if line.startswith("name = "):
                name = line.split('"')[1]
            elif line.startswith("version = ") and name in names:
                found.setdefault(name, []).append(line.split('"')[1])
    return ", ".join(f"{n} {'/'.join(found[n])}" for n in names if n in found)


print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
print(f"Engine: {ENGINE}; resolved: {locked_versions(['aes', 'aes-gcm', 'ghash', 'polyval', 'ring', 'aws-lc-rs', 'aws-lc-sys'])}")
print()
print("| size | pinseal seal | ring seal | aes-gcm seal | pinseal open | ring open | aes-gcm open | seal_into | open_into |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
sizes = [4, 16, 64, 1024, 16384, 1048576]
for size in sizes:
    g = f"envelope_{size}"
    try:
        row = [median(g, "seal", "pinseal"), median(g, "seal", "ring"), median(g, "seal", "aes-gcm"),
               median(g, "open", "pinseal"), median(g, "open", "ring"), median(g, "open", "aes-gcm"),
               median(g, "seal_into", "pinseal"), median(g, "open_into", "pinseal")]
    except OSError:
        continue
    print(f"| {size} B | " + " | ".join(fmt(x) for x in row) + " |")

print()
print("| target | measured | goal | met |")
print("|---|---:|---:|:---:|")
ok = True

# Goals per engine: times are pinseal's over ring's (lower is better);
# throughputs pinseal's over ring's (higher is better); Node speed-ups are
# Node's seal+hex time over pinseal's seal_hex time. None: report only.
GOALS = {
    "ring": dict(seal16=0.4, open16=1.15, seal1m=0.9, open1m=0.8, node4=30, node1m=8),
    "aws-lc-rs": dict(seal16=0.45, open16=1.3, seal1m=1.2, open1m=1.0, node4=30, node1m=8),
    "aes-gcm": dict(seal16=0.7, open16=None, seal1m=None, open1m=None, node4=15, node1m=None),
}
goals = GOALS.get(ENGINE, GOALS["aes-gcm"])


def target(name, value, goal, lower_is_better):
    global ok
    if goal is None:
        print(f"| {name} | {value:.2f}x | report | |")
        return
    met = value <= goal if lower_is_better else value >= goal
    ok &= met
    rel = "≤" if lower_is_better else "≥"
    print(f"| {name} | {value:.2f}x | {rel} {goal}x | {'yes' if met else 'no'} |")


g16, g1m = "envelope_16", "envelope_1048576"
target("seal 16 B / ring seal 16 B (time)", median(g16, "seal", "pinseal") / median(g16, "seal", "ring"), goals["seal16"], True)
target("open 16 B / ring open 16 B (time)", median(g16, "open", "pinseal") / median(g16, "open", "ring"), goals["open16"], True)
target("seal 1 MiB throughput / ring", median(g1m, "seal", "ring") / median(g1m, "seal", "pinseal"), goals["seal1m"], False)
target("open 1 MiB throughput / ring", median(g1m, "open", "ring") / median(g1m, "open", "pinseal"), goals["open1m"], False)
try:
    target("Node seal+hex 4 B / pinseal seal_hex 4 B (speed-up)",
           node(4) / median("envelope_4", "seal_hex", "pinseal"), goals["node4"], False)
    target("Node seal+hex 1 MiB / pinseal seal_hex 1 MiB (speed-up)",
           node(1048576) / median(g1m, "seal_hex", "pinseal"), goals["node1m"], False)
    print()
    print(f"Node.js {os.popen('node --version').read().strip()}: seal+hex 4 B {fmt(node(4))}, "
          f"16 B {fmt(node(16))}, 1 MiB {fmt(node(1048576))}")
except (OSError, KeyError):
    print("| Node comparison | not run | | |")
sys.exit(0)
