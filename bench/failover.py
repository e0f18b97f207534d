#!/usr/bin/env python3
"""Failover benchmark (issue 5's figures): runs the two failover end-to-end tests of
tests/tests/failover.rs N times and summarizes what they print.

- planned reparent: `shardcar local`, 2 shards x (primary + 2 replicas), 3-member etcd,
  sysbench oltp_write_only (8 threads, autocommit) through the app sidecar while four
  planned reparents run; per reparent, how long the shard's writes were held (from
  announcing the reparent to publishing the new primary), and sysbench's error count.
- unplanned failover: the same cluster with semi_sync; 4 writers insert unique ids; the
  primary of -80 gets kill -9; time until the new primary is published (detection +
  promotion), and the longest stall any writer saw (time to its first successful write
  after the kill), the errors (writes in flight), and whether an acknowledged write was
  lost (the test fails if so).

Usage: bench/failover.py [--runs 10]. Needs scripts/setup.sh to have run. Python 3
standard library only.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

HELD = re.compile(r"writes held (\d+) ms, total (\d+) ms")
KILL = re.compile(r"published after (\d+) ms; longest stall of a writer (\d+) ms; (\d+) writes acknowledged, errors: \[(.*)\]")
IGNORED = re.compile(r"ignored errors:\s+(\d+)")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    held, totals, sysbench_errors = [], [], []
    promoted, stall, kill_errors = [], [], []
    failures = 0
    for i in range(args.runs):
        out = subprocess.run(
            ["cargo", "nextest", "run", "-p", "shardcar-tests", "--test", "failover",
             "--no-capture", "--test-threads", "1"],
            capture_output=True, text=True,
        )
        text = out.stdout + out.stderr
        if out.returncode != 0:
            failures += 1
            at = text.find("panicked")
            print(f"run {i + 1}: FAILED\n{text[max(0, at - 200):at + 2500]}", file=sys.stderr)
            continue
        for m in HELD.finditer(text):
            held.append(int(m.group(1)))
            totals.append(int(m.group(2)))
        for m in IGNORED.finditer(text):
            sysbench_errors.append(int(m.group(1)))
        for m in KILL.finditer(text):
            promoted.append(int(m.group(1)))
            stall.append(int(m.group(2)))
            kill_errors.append(m.group(4).count("ERROR"))
        print(f"run {i + 1}: ok", file=sys.stderr)

    def line(name: str, v: list[float]) -> str:
        if not v:
            return f"| {name} | - | - | - | - |"
        return f"| {name} | {statistics.median(v):.0f} | {pct(v, 90):.0f} | {max(v):.0f} | {len(v)} |"

    print(f"runs: {args.runs}, failed: {failures}")
    print("| figure (ms) | median | p90 | max | samples |")
    print("|---|---|---|---|---|")
    print(line("planned: writes held per reparent", held))
    print(line("planned: whole reparent", totals))
    print(line("unplanned: kill -9 to new primary published", promoted))
    print(line("unplanned: longest writer stall", stall))
    print(f"planned: client errors per run (sysbench ignored errors): {sysbench_errors}")
    print(f"unplanned: errors per run (writes in flight at the kill): {kill_errors}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
