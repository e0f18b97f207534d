#!/usr/bin/env python3
"""Sharded benchmark: sysbench through a 4-shard `shardcar local` cluster vs. one MariaDB
holding the same data, interleaved, in the same run.

Starts the release `shardcar local --keyspace sbtest:4 --vschema bench/sharded/vschema.json`
(four real mariadbd behind the app-role sidecar, which runs in the `shardcar local`
process), and one direct mariadbd with the same tables; loads them with sysbench's own
`prepare` (through the sidecar, every row is routed to its shard). Then for each case runs
sysbench directly and through the sidecar, back to back, --repeat times, and reports QPS,
p50/p95/p99, the ratio, and the sidecar's CPU per query. Cases: oltp_point_select (prepared
and text) and a scatter `... WHERE k BETWEEN ? AND ? ORDER BY k, id LIMIT 10`
(bench/sharded/scatter_order_limit.lua).

Python 3 standard library only; uses bench/run.py's helpers.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(spec)
sys.modules["bench_run"] = run
spec.loader.exec_module(run)  # type: ignore[union-attr]

APP_USER, APP_PASSWORD = "app", "app"


class LocalCluster:
    """`shardcar local` as the process whose CPU is the sidecar's."""

    def __init__(self, binary: str, root: str, shards: int):
        self.port, self.admin = run.free_port(), run.free_port()
        self.log_path = os.path.join(root, "local.log")
        log = open(self.log_path, "w")
        argv = [binary, "local", f"--keyspace=sbtest:{shards}",
                f"--vschema={os.path.join(HERE, 'sharded', 'vschema.json')}",
                f"--port={self.port}", f"--admin-port={self.admin}",
                f"--data-dir={os.path.join(root, 'cluster')}"]
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = run.PROCS.start("shardcar-local", argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise run.BenchError(f"shardcar local exited: {run._tail(self.log_path)}")
            try:
                status, _ = run.http_get(self.admin, "/ready")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise run.BenchError("shardcar local not ready in 120 s")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid


def sysbench(tools, port, user, password, args, extra, logdir, tag, cluster=None):
    argv = [tools["sysbench"], "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
            f"--mysql-user={user}", f"--mysql-password={password}", "--mysql-db=sbtest",
            f"--tables={args.tables}", f"--table-size={args.table_size}", "--auto_inc=off",
            "--percentile=99", "--histogram=on"] + extra
    cpu0 = run.cpu_seconds(cluster.pid) if cluster else None
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=args.seconds + 600)
    with open(os.path.join(logdir, f"{tag}.log"), "w") as f:
        f.write(" ".join(argv) + "\n\n" + cp.stdout + cp.stderr)
    if cp.returncode != 0:
        raise run.BenchError(f"{tag}: sysbench failed: {(cp.stdout + cp.stderr)[-800:]}")
    r = run.parse_sysbench(cp.stdout)
    if cluster and r.queries:
        r.cpu_us_per_query = (run.cpu_seconds(cluster.pid) - cpu0) * 1e6 / r.queries
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=run.DEFAULT_BIN)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--tables", type=int, default=4)
    ap.add_argument("--table-size", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=None, help="write the markdown report here too")
    args = ap.parse_args()
    tools = {n: run.which_or_debian(n) for n in ("mariadb-install-db", "mariadbd", "mariadb", "sysbench")}
    if not all(tools.values()) or not os.access(args.binary, os.X_OK):
        run.log("missing tools or binary (cargo build --release -p shardcar; scripts/setup.sh)")
        return 1
    root = tempfile.mkdtemp(prefix="shardcar-sharded-bench-")
    try:
        direct = run.start_mariadb(tools, root)
        cluster = LocalCluster(args.binary, root, args.shards)
        run.log(f"direct mariadbd :{direct.port}, 4-shard cluster :{cluster.port}; loading")
        prepare = ["oltp_read_only", "prepare"]
        sysbench(tools, direct.port, run.SB_USER, run.SB_PASSWORD, args, prepare, root, "prepare-direct")
        sysbench(tools, cluster.port, APP_USER, APP_PASSWORD, args, prepare, root, "prepare-sharded")
        lua = os.path.join(HERE, "sharded", "scatter_order_limit.lua")
        cases = [
            ("point select, prepared", ["--db-ps-mode=auto", "oltp_point_select"]),
            ("point select, text", ["--db-ps-mode=disable", "oltp_point_select"]),
            ("scatter ORDER BY k LIMIT 10", ["--db-ps-mode=disable", lua]),
        ]
        rows = []
        for name, extra in cases:
            pairs = []
            for rep in range(args.repeat):
                common = [f"--threads={args.threads}", f"--time={args.seconds}", "--report-interval=0"] + extra + ["run"]
                d = sysbench(tools, direct.port, run.SB_USER, run.SB_PASSWORD, args, common, root, f"{name}-{rep}-direct")
                s = sysbench(tools, cluster.port, APP_USER, APP_PASSWORD, args, common, root, f"{name}-{rep}-sharded", cluster)
                run.log(f"{name} #{rep}: direct {d.qps:.0f} qps, sharded {s.qps:.0f} qps "
                        f"(ratio {s.qps / d.qps:.2f}), sidecar {s.cpu_us_per_query:.1f} µs/q")
                pairs.append((d, s))
            ratios = [s.qps / d.qps for d, s in pairs]
            rows.append((name, pairs, ratios))
        lines = [f"Sharded benchmark: {args.shards} shards (`shardcar local`) vs one MariaDB, "
                 f"{args.tables} tables x {args.table_size} rows, {args.threads} threads, "
                 f"{args.seconds} s x {args.repeat} interleaved sweeps.", "",
                 "| case | direct qps | sharded qps | ratio (median, min..max) | direct p50/p95/p99 ms | sharded p50/p95/p99 ms | sidecar CPU µs/query |",
                 "|---|---|---|---|---|---|---|"]
        for name, pairs, ratios in rows:
            dq = statistics.median(d.qps for d, _ in pairs)
            sq = statistics.median(s.qps for _, s in pairs)
            dl = pairs[-1][0]
            sl = pairs[-1][1]
            cpu = statistics.median(s.cpu_us_per_query for _, s in pairs if s.cpu_us_per_query)
            lines.append(f"| {name} | {dq:.0f} | {sq:.0f} | {statistics.median(ratios):.2f} ({min(ratios):.2f}..{max(ratios):.2f}) "
                         f"| {run.fmt(dl.p50, '.2f')}/{run.fmt(dl.p95, '.2f')}/{run.fmt(dl.p99, '.2f')} "
                         f"| {run.fmt(sl.p50, '.2f')}/{run.fmt(sl.p95, '.2f')}/{run.fmt(sl.p99, '.2f')} | {cpu:.1f} |")
        report = "\n".join(lines)
        print(report)
        if args.out:
            with open(args.out, "w") as f:
                f.write(report + "\n")
        return 0
    except run.BenchError as e:
        run.log(f"error: {e}")
        return 1
    finally:
        run.PROCS.cleanup()


if __name__ == "__main__":
    sys.exit(main())
