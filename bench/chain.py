#!/usr/bin/env python3
"""Two-hop benchmark: sysbench -> app sidecar -> db sidecar -> mariadbd, against
sysbench -> mariadbd directly, interleaved in one run (issue 4's figures).

Starts its own mariadbd, loads the sysbench tables, starts a db-role sidecar in front
of mariadbd and an app-role sidecar in front of that, then for every test x threads
runs sysbench direct and through both hops back to back. Reports QPS, p50/p95/p99, the
ratio, the CPU per query of each sidecar and the most connections mysqld saw
(Threads_connected, sampled every 200 ms). Shares its process and sysbench helpers with
run.py. See bench/README.md.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as rb  # noqa: E402

# Targets from issue 4.
TARGET_RATIO_8 = 0.5


class ConnectionSampler:
    """Samples mysqld's Threads_connected while a run goes on; reports the maximum,
    minus the sampler's own connection."""

    def __init__(self, tools, db: rb.MariaDB):
        self.argv = [tools["mariadb"], "--no-defaults", f"--socket={db.sock}", "-uroot", "-N", "-B", "--unbuffered"]
        self.stop = threading.Event()
        self.samples: list[int] = []
        self.thread: threading.Thread | None = None

    def _loop(self):
        sql = "SHOW GLOBAL STATUS LIKE 'Threads_connected';\n"
        # One client process for the whole run, fed a statement every 200 ms.
        p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, bufsize=1)
        try:
            while not self.stop.is_set():
                p.stdin.write(sql)
                p.stdin.flush()
                line = p.stdout.readline()
                parts = line.split()
                if len(parts) == 2 and parts[1].isdigit():
                    self.samples.append(int(parts[1]) - 1)
                self.stop.wait(0.2)
        except (BrokenPipeError, OSError):
            pass
        finally:
            p.kill()
            p.wait()

    def __enter__(self):
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread:
            self.thread.join(timeout=5)

    @property
    def peak(self) -> int | None:
        return max(self.samples) if self.samples else None


class DbSidecarFactory(rb.SidecarFactory):
    """run.py's sidecar factory, optionally reaching mariadbd over its Unix socket (how a
    db sidecar beside mysqld in the same pod would)."""

    def __init__(self, *a, socket: bool = False, **kw):
        super().__init__(*a, **kw)
        self.socket = socket

    def write_config(self):
        path, port, admin = super().write_config()
        if self.socket:
            with open(path) as f:
                text = f.read()
            text = text.replace(f'address: "127.0.0.1:{self.db.port}"', f'address: "unix:{self.db.sock}"')
            with open(path, "w") as f:
                f.write(text)
        return path, port, admin


def write_app_config(root: str, factory: rb.SidecarFactory, db_port: int) -> tuple[str, int, int]:
    """The app sidecar's config: the sysbench account, upstream = the db sidecar (which
    knows the same account)."""
    port, admin = rb.free_port(), rb.free_port()
    pw = os.path.join(root, "app-upstream-password")
    with open(pw, "w") as f:
        f.write(rb.SB_PASSWORD)
    os.chmod(pw, 0o600)
    path = os.path.join(root, "app.yaml")
    with open(path, "w") as f:
        f.write(
            f"listen: 127.0.0.1:{port}\n"
            f"admin_listen: 127.0.0.1:{admin}\n"
            "users:\n"
            f"  - name: {rb.SB_USER}\n"
            f"    native_hash: \"{factory.hashes['native_hash']}\"\n"
            f"    sha2_hash: \"{factory.hashes['sha2_hash']}\"\n"
            "upstream:\n"
            f"  address: \"127.0.0.1:{db_port}\"\n"
            f"  user: {rb.SB_USER}\n"
            f"  password_file: \"{pw}\"\n"
        )
    return path, port, admin


def start_app(binary: str, root: str, factory: rb.SidecarFactory, db_port: int) -> rb.Sidecar:
    cfg, port, admin = write_app_config(root, factory, db_port)
    log_path = os.path.join(root, "app.log")
    with open(log_path, "w") as logf:
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "warn"))
        p = rb.PROCS.start("shardcar", [binary, "app", "--config", cfg],
                           stdout=logf, stderr=subprocess.STDOUT, env=env)
    return rb.Sidecar(p, port, admin, log_path)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="sysbench through app sidecar -> db sidecar vs direct MariaDB.")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--threads", type=rb.csv(int), default=[8, 512])
    ap.add_argument("--tests", type=rb.csv(str), default=["oltp_point_select", "oltp_read_write"])
    ap.add_argument("--ps-mode", default="disable", choices=["auto", "disable"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--db-yaml", default="db:\n  pool:\n    statement_connections: 16\n    transaction_connections: 15\n    stream_connections: 1\n",
                    help="YAML appended to the db sidecar's config (default: a pool of 32)")
    ap.add_argument("--db-upstream", choices=["tcp", "socket"], default="tcp",
                    help="how the db sidecar reaches mariadbd (default loopback TCP)")
    ap.add_argument("--out", default="BENCHMARKS-chain.md")
    ap.add_argument("--binary", default=rb.DEFAULT_BIN)
    ap.add_argument("--keep", action="store_true")
    return ap.parse_args(argv)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main(argv=None) -> int:
    args = parse_args(argv)
    tools = {n: rb.which_or_debian(n) for n in ("mariadb-install-db", "mariadbd", "mariadb", "sysbench")}
    if not all(tools.values()):
        print(rb.MISSING_HELP.format(missing=", ".join(n for n, p in tools.items() if not p)), file=sys.stderr)
        return 2
    binary = os.path.abspath(args.binary)
    env = rb.environment(tools, binary)
    root = tempfile.mkdtemp(prefix="shardcar-chain-")
    if not args.keep:
        rb.PROCS.dirs.append(root)
    logdir = os.path.join(root, "runs")
    os.makedirs(logdir)
    try:
        db = rb.start_mariadb(tools, root)
        rb.log(f"mariadbd on {db.port}; sysbench prepare")
        rb.run_cmd(rb.sb_base(tools, db.port) + ["--threads=4", "oltp_read_write", "prepare"], timeout=1800)
        rb.run_cmd(rb.sb_base(tools, db.port) + ["--threads=4", "--time=5", "oltp_read_only", "run"], timeout=120)
        factory = DbSidecarFactory(binary, root, db, "db", args.db_yaml.replace("\\n", "\n"),
                                   socket=args.db_upstream == "socket")
        dbsc, _ = factory.start()
        factory.wait_ready(dbsc)
        app = start_app(binary, root, factory, dbsc.port)
        factory.wait_ready(app)
        rb.mysql_select1(app.port, rb.SB_USER, rb.SB_PASSWORD)
        rb.log(f"db sidecar :{dbsc.port}, app sidecar :{app.port}")

        rows: dict[tuple, list] = {(t, th): [] for t in args.tests for th in args.threads}
        for rep in range(1, args.repeat + 1):
            for test in args.tests:
                for th in args.threads:
                    tag = f"r{rep}-{test}-t{th}"
                    with ConnectionSampler(tools, db) as cd:
                        d = rb.run_sysbench(tools, test, db.port, th, args.seconds, args.ps_mode, None, logdir, tag + "-direct")
                    db_cpu0 = rb.cpu_seconds(dbsc.pid)
                    with ConnectionSampler(tools, db) as cs:
                        s = rb.run_sysbench(tools, test, app.port, th, args.seconds, args.ps_mode, app, logdir, tag + "-chain")
                    db_cpu = rb.cpu_seconds(dbsc.pid) - db_cpu0
                    db_us = db_cpu * 1e6 / s.queries if s.ok and s.queries else None
                    rows[(test, th)].append((d, s, db_us, cd.peak, cs.peak))
                    rb.log(f"{tag}: direct {rb.fmt(d.qps)} qps p99 {rb.fmt(d.p99, '.2f')} ms conns {cd.peak} | "
                           f"chain {rb.fmt(s.qps)} qps p99 {rb.fmt(s.p99, '.2f')} ms conns {cs.peak} "
                           f"app {rb.fmt(s.cpu_us_per_query, '.1f')} µs/q db {rb.fmt(db_us, '.1f')} µs/q"
                           + ("" if d.ok else f" | DIRECT FAILED: {d.failure}")
                           + ("" if s.ok else f" | CHAIN FAILED: {s.failure}"))
                    for sc in (app, dbsc):
                        if sc.proc.poll() is not None:
                            raise rb.BenchError(f"a sidecar died during {tag}:\n{rb._tail(sc.log_path)}")

        L = ["# Two hops: app sidecar → db sidecar → mariadbd vs direct", "",
             f"Command: `{env['cmdline']}`  ", f"Date {env['date']}, git {env['git']}, {env['nproc']} cores "
             f"({env['cpu']}), {env['mariadbd']}, {env['sysbench']}; ps-mode {args.ps_mode}, "
             f"{args.seconds} s per run, {args.repeat} interleaved sweeps; db sidecar → mariadbd over "
             f"{'its Unix socket' if args.db_upstream == 'socket' else 'loopback TCP'}; db sidecar config "
             f"`{args.db_yaml.strip()}`.",
             "", "Medians over the sweeps. Errors are sysbench's (any error fails the run). "
             "`mysqld conns` is the most Threads_connected seen (200 ms samples).", "",
             "| test | threads | direct QPS | chain QPS | ratio (min..max) | direct p99 ms | chain p99 ms | "
             "direct mysqld conns | chain mysqld conns | app µs/q | db µs/q | failures |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
        for (test, th), rs in rows.items():
            ratios = [s.qps / d.qps for d, s, *_ in rs if d.ok and s.ok and d.qps]
            fails = sum(1 for d, s, *_ in rs if not (d.ok and s.ok))
            L.append(
                f"| {test} | {th} | {rb.fmt(med(d.qps for d, *_ in rs if d.ok))} | "
                f"{rb.fmt(med(s.qps for _, s, *_ in rs if s.ok))} | "
                f"{rb.fmt_range(ratios)} | "
                f"{rb.fmt(med(d.p99 for d, *_ in rs), '.2f')} | {rb.fmt(med(s.p99 for _, s, *_ in rs), '.2f')} | "
                f"{rb.fmt(med(r[3] for r in rs))} | {rb.fmt(med(r[4] for r in rs))} | "
                f"{rb.fmt(med(s.cpu_us_per_query for _, s, *_ in rs), '.1f')} | {rb.fmt(med(r[2] for r in rs), '.1f')} | "
                f"{fails or ''} |")
        L.append("")
        L.append(f"Target at 8 threads: ratio ≥ {TARGET_RATIO_8}. At 512 threads: chain QPS above direct and chain p99 below direct.")
        report = "\n".join(L)
        print(report)
        with open(args.out, "w") as f:
            f.write(report + "\n")
        return 0
    except rb.BenchError as e:
        rb.log(f"error: {e}")
        return 1
    finally:
        rb.PROCS.cleanup()


if __name__ == "__main__":
    sys.exit(main())
