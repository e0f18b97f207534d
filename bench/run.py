#!/usr/bin/env python3
"""Interleaved sysbench benchmark: direct MariaDB vs. the Shardcar sidecar.

Starts its own mariadbd in a temp dir, loads the sysbench tables, starts the
release sidecar in front of it, and for every test x ps-mode x threads runs
sysbench against mariadbd directly and then through the sidecar, back to back.
Reports QPS, p50/p95/p99 (from sysbench's histogram), the sidecar/direct ratio
(median and min..max over --repeat sweeps), added latency, the sidecar's CPU
per query, its RSS and its start-up time. See bench/README.md.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import http.client
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(REPO, "target", "release", "shardcar")
CLK_TCK = os.sysconf("SC_CLK_TCK")

SB_USER, SB_PASSWORD = "sb", "sb-bench-pw"
UP_USER, UP_PASSWORD = "shardcar", "shardcar-bench-pw"
TABLES, TABLE_SIZE = 4, 100_000

# Targets from issue 2.
TARGET_RATIO_1 = 0.85
TARGET_RATIO_8 = 0.65
TARGET_CPU_US = 8.0
TARGET_ADDED_US_1 = 12.0
TARGET_RSS_IDLE_MB = 8.0
TARGET_RSS_32_MB = 20.0
TARGET_READY_MS = 20.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Process bookkeeping and clean-up
# --------------------------------------------------------------------------

_libc = None


def _pdeathsig() -> None:
    """Child side: die with SIGTERM when the benchmark process dies (even on SIGKILL)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Procs:
    """Every long-lived child we start, so that clean-up can stop them all."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.dirs: list[str] = []

    def start(self, name: str, argv: list[str], *, pdeathsig: bool = True, **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, preexec_fn=_pdeathsig if pdeathsig else None, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 30.0) -> None:
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        self.procs = [(n, q) for (n, q) in self.procs if q is not p]

    def cleanup(self) -> None:
        # Newest first: sysbench, then the sidecar, then mariadbd.
        for name, p in reversed(list(self.procs)):
            try:
                self.stop(p, timeout=30.0 if name == "mariadbd" else 5.0)
            except Exception as e:  # keep cleaning up
                log(f"could not stop {name} (pid {p.pid}): {e}")
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


PROCS = Procs()


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cmd(argv: list[str], *, timeout: float = 120, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"timed out after {timeout}s: {shlex.join(argv)}") from e
    if check and cp.returncode != 0:
        raise BenchError(f"failed (exit {cp.returncode}): {shlex.join(argv)}\n{cp.stdout[-2000:]}{cp.stderr[-2000:]}")
    return cp


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, `5` to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def ctx_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches summed over all threads of pid."""
    vol = invol = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:  # thread exited meanwhile
            pass
    return vol, invol


def loadavg1() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, str]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------
# A minimal MySQL client (handshake + SELECT 1) for start-up probes.
# No process spawn per attempt, so the figure is the sidecar's, not the CLI's.
# --------------------------------------------------------------------------

class ProbeError(Exception):
    pass


def _read_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed")
        buf += chunk
    return bytes(buf)


def _read_packet(s: socket.socket) -> tuple[int, bytes]:
    hdr = _read_exact(s, 4)
    n = hdr[0] | hdr[1] << 8 | hdr[2] << 16
    return hdr[3], _read_exact(s, n)


def _write_packet(s: socket.socket, seq: int, payload: bytes) -> None:
    s.sendall(struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _native_scramble(pw: bytes, salt: bytes) -> bytes:
    if not pw:
        return b""
    h1 = hashlib.sha1(pw).digest()
    return _xor(h1, hashlib.sha1(salt + hashlib.sha1(h1).digest()).digest())


def _sha2_scramble(pw: bytes, salt: bytes) -> bytes:
    if not pw:
        return b""
    h1 = hashlib.sha256(pw).digest()
    return _xor(h1, hashlib.sha256(hashlib.sha256(h1).digest() + salt).digest())


def _err_text(pkt: bytes) -> str:
    code = struct.unpack("<H", pkt[1:3])[0]
    msg = pkt[3:]
    if msg[:1] == b"#":
        msg = msg[6:]
    return f"ERR {code}: {msg.decode(errors='replace')}"


def mysql_select1(port: int, user: str, password: str, timeout: float = 2.0) -> None:
    """Connect, authenticate, run SELECT 1, check the answer. Raises on any failure."""
    pw = password.encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _, hs = _read_packet(s)
        if hs[:1] == b"\xff":
            raise ProbeError(_err_text(hs))
        if hs[0] != 10:
            raise ProbeError(f"unexpected protocol version {hs[0]}")
        i = hs.index(b"\0", 1) + 1 + 4
        salt1 = hs[i:i + 8]
        i += 9
        caps = struct.unpack("<H", hs[i:i + 2])[0]
        i += 5
        caps |= struct.unpack("<H", hs[i:i + 2])[0] << 16
        i += 2
        data_len = hs[i]
        i += 11
        n2 = max(13, data_len - 8)
        salt2 = hs[i:i + n2].rstrip(b"\0")
        i += n2
        plugin = hs[i:].split(b"\0", 1)[0].decode() or "mysql_native_password"
        salt = salt1 + salt2
        want = 0x1 | 0x200 | 0x2000 | 0x8000 | 0x80000  # LONG_PASSWORD PROTOCOL_41 TRANSACTIONS SECURE_CONNECTION PLUGIN_AUTH
        if (caps & 0x200) == 0:
            raise ProbeError("server lacks CLIENT_PROTOCOL_41")
        client_caps = want & caps
        auth = _sha2_scramble(pw, salt) if plugin == "caching_sha2_password" else _native_scramble(pw, salt)
        if plugin not in ("caching_sha2_password", "mysql_native_password"):
            plugin, auth = "mysql_native_password", _native_scramble(pw, salt)
        resp = struct.pack("<IIB23x", client_caps, 1 << 24, 33) + user.encode() + b"\0"
        resp += bytes([len(auth)]) + auth + plugin.encode() + b"\0"
        _write_packet(s, 1, resp)
        while True:
            seq, pkt = _read_packet(s)
            if pkt[:1] == b"\x00":
                break
            if pkt[:1] == b"\xff":
                raise ProbeError(_err_text(pkt))
            if pkt[:1] == b"\xfe":  # AuthSwitchRequest
                name, _, data = pkt[1:].partition(b"\0")
                data = data.rstrip(b"\0")
                plugin = name.decode()
                if plugin == "mysql_native_password":
                    _write_packet(s, seq + 1, _native_scramble(pw, data))
                elif plugin == "caching_sha2_password":
                    _write_packet(s, seq + 1, _sha2_scramble(pw, data))
                else:
                    raise ProbeError(f"unsupported auth plugin {plugin}")
                continue
            if pkt[:2] == b"\x01\x03":  # caching_sha2 fast auth OK; OK follows
                continue
            raise ProbeError(f"unexpected auth packet {pkt[:8].hex()}")
        _write_packet(s, 0, b"\x03SELECT 1")
        _, pkt = _read_packet(s)
        if pkt[:1] == b"\xff":
            raise ProbeError(_err_text(pkt))
        if pkt[:1] != b"\x01":
            raise ProbeError(f"unexpected column count packet {pkt[:8].hex()}")
        eofs, rows = 0, []
        while eofs < 2:
            _, pkt = _read_packet(s)
            if pkt[:1] == b"\xff":
                raise ProbeError(_err_text(pkt))
            if pkt[:1] == b"\xfe" and len(pkt) < 9:
                eofs += 1
            elif eofs == 1:
                rows.append(pkt)
        if rows != [b"\x011"]:
            raise ProbeError(f"unexpected SELECT 1 rows {rows!r}")
        try:
            _write_packet(s, 0, b"\x01")  # COM_QUIT
        except OSError:
            pass
    finally:
        s.close()


# --------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------

MISSING_HELP = """\
missing: {missing}
Install the prerequisites with one of:
    scripts/setup.sh                                  (from the repository root)
    sudo apt-get install -y mariadb-server mariadb-client sysbench
"""


def which_or_debian(name: str) -> str | None:
    p = shutil.which(name)
    if p:
        return p
    for d in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        c = os.path.join(d, name)
        if os.access(c, os.X_OK):
            return c
    return None


@dataclass
class MariaDB:
    datadir: str
    port: int
    sock: str
    proc: subprocess.Popen
    client: str

    def sql(self, statement: str, timeout: float = 60) -> str:
        return run_cmd([self.client, "--no-defaults", f"--socket={self.sock}", "-uroot", "-N", "-B", "-e", statement],
                       timeout=timeout).stdout


def start_mariadb(tools: dict[str, str], root: str) -> MariaDB:
    datadir = os.path.join(root, "mariadb")
    os.makedirs(datadir)
    run_cmd([tools["mariadb-install-db"], "--no-defaults", f"--datadir={datadir}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"], timeout=300)
    port = free_port()
    sock = os.path.join(datadir, "sock")
    errlog = open(os.path.join(root, "mariadbd.log"), "w")
    argv = [tools["mariadbd"], "--no-defaults", f"--datadir={datadir}", "--user=root", f"--port={port}",
            "--bind-address=127.0.0.1", f"--socket={sock}", "--innodb-buffer-pool-size=512M",
            "--max-connections=2000", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2",
            f"--pid-file={os.path.join(datadir, 'mariadbd.pid')}", f"--log-error={os.path.join(root, 'mariadbd.err')}"]
    proc = PROCS.start("mariadbd", argv, stdout=errlog, stderr=subprocess.STDOUT)
    db = MariaDB(datadir, port, sock, proc, tools["mariadb"])
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise BenchError(f"mariadbd exited with {proc.returncode}; see its log:\n{_tail(os.path.join(root, 'mariadbd.err'))}")
        if os.path.exists(sock):
            cp = run_cmd([db.client, "--no-defaults", f"--socket={sock}", "-uroot", "-e", "SELECT 1"], check=False, timeout=10)
            if cp.returncode == 0:
                break
        if time.monotonic() > deadline:
            raise BenchError("mariadbd did not become ready within 120 s")
        time.sleep(0.2)
    db.sql(
        "CREATE DATABASE sbtest;"
        f"CREATE USER '{SB_USER}'@'%' IDENTIFIED BY '{SB_PASSWORD}';"
        f"GRANT ALL ON sbtest.* TO '{SB_USER}'@'%';"
        f"CREATE USER '{UP_USER}'@'%' IDENTIFIED BY '{UP_PASSWORD}';"
        f"GRANT ALL ON sbtest.* TO '{UP_USER}'@'%';"
    )
    return db


def _tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------
# Sidecar
# --------------------------------------------------------------------------

@dataclass
class Sidecar:
    proc: subprocess.Popen
    port: int
    admin_port: int
    log_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid


class SidecarFactory:
    def __init__(self, binary: str, root: str, db: MariaDB, role: str = "app", extra_yaml: str = ""):
        self.binary = binary
        self.role = role
        self.extra_yaml = extra_yaml
        self.root = root
        self.db = db
        self.n = 0
        cp = run_cmd([binary, "hash-password"], input=SB_PASSWORD)
        hashes = dict(re.findall(r'^(native_hash|sha2_hash): "([^"]+)"', cp.stdout, re.M))
        if set(hashes) != {"native_hash", "sha2_hash"}:
            raise BenchError(f"unexpected hash-password output: {cp.stdout!r}")
        self.hashes = hashes
        self.pw_file = os.path.join(root, "upstream-password")
        with open(self.pw_file, "w") as f:
            f.write(UP_PASSWORD)
        os.chmod(self.pw_file, 0o600)

    def write_config(self) -> tuple[str, int, int]:
        self.n += 1
        port, admin = free_port(), free_port()
        while admin == port:
            admin = free_port()
        path = os.path.join(self.root, f"sidecar-{self.n}.yaml")
        with open(path, "w") as f:
            f.write(
                f"listen: 127.0.0.1:{port}\n"
                f"admin_listen: 127.0.0.1:{admin}\n"
                "users:\n"
                f"  - name: {SB_USER}\n"
                f"    native_hash: \"{self.hashes['native_hash']}\"\n"
                f"    sha2_hash: \"{self.hashes['sha2_hash']}\"\n"
                "upstream:\n"
                f"  address: \"127.0.0.1:{self.db.port}\"\n"
                f"  user: {UP_USER}\n"
                f"  password_file: \"{self.pw_file}\"\n"
                + self.extra_yaml
            )
        return path, port, admin

    def start(self, *, pdeathsig: bool = True) -> tuple[Sidecar, float]:
        """Start a sidecar; returns it and the perf_counter() value taken just before exec."""
        cfg, port, admin = self.write_config()
        log_path = os.path.join(self.root, f"sidecar-{self.n}.log")
        logf = open(log_path, "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "warn"))
        t0 = time.perf_counter()
        p = PROCS.start("shardcar", [self.binary, self.role, "--config", cfg], pdeathsig=pdeathsig,
                        stdout=logf, stderr=subprocess.STDOUT, env=env)
        logf.close()
        return Sidecar(p, port, admin, log_path), t0

    def wait_ready(self, sc: Sidecar, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if sc.proc.poll() is not None:
                raise BenchError(f"sidecar exited with {sc.proc.returncode}:\n{_tail(sc.log_path)}")
            try:
                status, _ = http_get(sc.admin_port, "/ready")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"sidecar /ready not 200 within {timeout}s:\n{_tail(sc.log_path)}")
            time.sleep(0.01)


def measure_startup(factory: SidecarFactory, n: int) -> dict:
    """exec -> first SELECT 1 answered through the sidecar, and exec -> /ready 200, n fresh processes each."""
    select1, ready = [], []
    for _ in range(n):
        sc, t0 = factory.start(pdeathsig=False)
        try:
            last = None
            while True:
                try:
                    mysql_select1(sc.port, SB_USER, SB_PASSWORD, timeout=2.0)
                    select1.append((time.perf_counter() - t0) * 1000)
                    break
                except (OSError, ProbeError) as e:
                    last = e
                if sc.proc.poll() is not None:
                    raise BenchError(f"sidecar exited during start-up probe ({last}):\n{_tail(sc.log_path)}")
                if time.perf_counter() - t0 > 10:
                    raise BenchError(f"no SELECT 1 through the sidecar within 10 s; last error: {last}\n{_tail(sc.log_path)}")
                time.sleep(0.0005)
        finally:
            PROCS.stop(sc.proc, timeout=5)
    for _ in range(n):
        sc, t0 = factory.start(pdeathsig=False)
        try:
            while True:
                try:
                    status, _ = http_get(sc.admin_port, "/ready", timeout=2.0)
                    if status == 200:
                        ready.append((time.perf_counter() - t0) * 1000)
                        break
                except OSError:
                    pass
                if sc.proc.poll() is not None:
                    raise BenchError(f"sidecar exited during /ready probe:\n{_tail(sc.log_path)}")
                if time.perf_counter() - t0 > 10:
                    raise BenchError(f"/ready not 200 within 10 s\n{_tail(sc.log_path)}")
                time.sleep(0.0005)
        finally:
            PROCS.stop(sc.proc, timeout=5)
    return {"select1_ms": select1, "ready_ms": ready}


METRIC_RE = re.compile(r"^(shardcar_(?:errors|upstream_lost|upstream_kills|handshake_failures|client_connections_rejected)_total(?:\{[^}]*\})?) ([0-9.eE+-]+)$", re.M)


def error_metrics(sc: Sidecar) -> dict[str, float]:
    try:
        status, body = http_get(sc.admin_port, "/metrics", timeout=5)
    except OSError:
        return {}
    if status != 200:
        return {}
    return {k: float(v) for k, v in METRIC_RE.findall(body)}


# --------------------------------------------------------------------------
# sysbench
# --------------------------------------------------------------------------

@dataclass
class SbResult:
    ok: bool
    qps: float | None = None
    tps: float | None = None
    queries: int | None = None
    errors: int | None = None
    reconnects: int | None = None
    p50: float | None = None  # ms
    p95: float | None = None
    p99: float | None = None
    avg: float | None = None
    sb_p99: float | None = None  # sysbench's own 99th percentile line
    failure: str | None = None
    # sidecar-only
    cpu_us_per_query: float | None = None
    cpu_s: float | None = None
    hwm_kb: int | None = None
    rss_kb: int | None = None
    vol_cs_per_query: float | None = None
    invol_cs_per_query: float | None = None
    load1: float | None = None  # 1-minute load average when the run started
    metric_deltas: dict = field(default_factory=dict)


def sb_base(tools, port: int) -> list[str]:
    return [tools["sysbench"], "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
            f"--mysql-user={SB_USER}", f"--mysql-password={SB_PASSWORD}", "--mysql-db=sbtest",
            f"--tables={TABLES}", f"--table-size={TABLE_SIZE}"]


def hist_percentile(hist: list[tuple[float, int]], pct: float) -> float | None:
    total = sum(c for _, c in hist)
    if total == 0:
        return None
    need = total * pct / 100.0
    acc = 0
    for v, c in hist:
        acc += c
        if acc >= need:
            return v
    return hist[-1][0]


def parse_sysbench(out: str) -> SbResult:
    r = SbResult(ok=True)
    m = re.search(r"queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)", out)
    if not m:
        return SbResult(ok=False, failure="no 'queries:' line in sysbench output")
    r.queries, r.qps = int(m.group(1)), float(m.group(2))
    m = re.search(r"transactions:\s+(\d+)\s+\(([\d.]+) per sec\.\)", out)
    r.tps = float(m.group(2)) if m else None
    m = re.search(r"ignored errors:\s+(\d+)", out)
    r.errors = int(m.group(1)) if m else None
    m = re.search(r"reconnects:\s+(\d+)", out)
    r.reconnects = int(m.group(1)) if m else None
    m = re.search(r"^\s*avg:\s+([\d.]+)", out, re.M)
    r.avg = float(m.group(1)) if m else None
    m = re.search(r"^\s*\d+(?:th|st|nd|rd) percentile:\s+([\d.]+)", out, re.M)
    r.sb_p99 = float(m.group(1)) if m else None
    hist = [(float(v), int(c)) for v, c in re.findall(r"^\s*([\d.]+) \|\**\s+(\d+)\s*$", out, re.M)]
    if hist:
        hist.sort()
        r.p50, r.p95, r.p99 = (hist_percentile(hist, p) for p in (50, 95, 99))
    return r


def run_sysbench(tools, test: str, port: int, threads: int, seconds: int, mode: str,
                 sidecar: Sidecar | None, logdir: str, tag: str) -> SbResult:
    argv = sb_base(tools, port) + [f"--threads={threads}", f"--time={seconds}", "--percentile=99",
                                   "--report-interval=0", f"--db-ps-mode={mode}", "--histogram=on",
                                   test, "run"]
    before_cpu = before_metrics = before_cs = None
    load1 = loadavg1()
    if sidecar is not None:
        if sidecar.proc.poll() is not None:
            return SbResult(ok=False, failure=f"sidecar not running (exit {sidecar.proc.returncode})")
        reset_hwm(sidecar.pid)
        before_metrics = error_metrics(sidecar)
        before_cs = ctx_switches(sidecar.pid)
        before_cpu = cpu_seconds(sidecar.pid)
    p = PROCS.start("sysbench", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timed_out = False
    try:
        out, _ = p.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        timed_out = True
        p.kill()
        out, _ = p.communicate()
    finally:
        PROCS.procs = [(n, q) for (n, q) in PROCS.procs if q is not p]
    with open(os.path.join(logdir, f"{tag}.log"), "w") as f:
        f.write(shlex.join(argv) + "\n\n" + (out or ""))
    if timed_out:
        r = SbResult(ok=False, failure=f"sysbench did not finish within {seconds + 60}s (hang?)")
    elif p.returncode != 0:
        fatal = [l for l in out.splitlines() if "FATAL" in l or "error" in l.lower()][:6]
        r = SbResult(ok=False, failure=f"sysbench exit {p.returncode}: " + " | ".join(fatal or out.splitlines()[-5:]))
    else:
        r = parse_sysbench(out)
    r.load1 = load1
    if sidecar is not None:
        if sidecar.proc.poll() is not None:
            r.ok = False
            r.failure = (r.failure or "") + f"; sidecar died (exit {sidecar.proc.returncode}): {_tail(sidecar.log_path, 10)}"
            return r
        r.cpu_s = cpu_seconds(sidecar.pid) - before_cpu
        vol, invol = ctx_switches(sidecar.pid)
        if r.queries:
            r.cpu_us_per_query = r.cpu_s * 1e6 / r.queries
            r.vol_cs_per_query = (vol - before_cs[0]) / r.queries
            r.invol_cs_per_query = (invol - before_cs[1]) / r.queries
        st = proc_status(sidecar.pid)
        r.hwm_kb, r.rss_kb = st.get("VmHWM"), st.get("VmRSS")
        after = error_metrics(sidecar)
        r.metric_deltas = {k: v - before_metrics.get(k, 0.0) for k, v in after.items() if v - before_metrics.get(k, 0.0) > 0}
    return r


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt(x, spec=".0f", none="–"):
    return none if x is None else format(x, spec)


def fmt_range(xs, spec=".2f"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return format(xs[0], spec)
    return f"{format(statistics.median(xs), spec)} ({format(min(xs), spec)}..{format(max(xs), spec)})"


def pct3(rs: list[SbResult]) -> str:
    return "/".join(fmt(median([getattr(r, a) for r in rs]), ".3f") for a in ("p50", "p95", "p99"))


def case_summary(pairs: list[tuple[SbResult, SbResult]]) -> dict:
    good = [(d, s) for d, s in pairs if d.ok and s.ok]
    ratios = [s.qps / d.qps for d, s in good if d.qps]
    added = [(s.p50 - d.p50) * 1000 for d, s in good if s.p50 is not None and d.p50 is not None]
    return {
        "direct_qps": median([d.qps for d, _ in good]),
        "sidecar_qps": median([s.qps for _, s in good]),
        "ratios": ratios,
        "ratio": median(ratios),
        "added_us": added,
        "added_p50_us": median(added),
        "cpu_us": median([s.cpu_us_per_query for _, s in good]),
        "cpu_us_all": [s.cpu_us_per_query for _, s in good if s.cpu_us_per_query is not None],
        "hwm_kb": max([s.hwm_kb for _, s in good if s.hwm_kb] or [0]) or None,
        "direct": [d for d, _ in good],
        "sidecar": [s for _, s in good],
        "failures": [(d, s) for d, s in pairs if not (d.ok and s.ok)],
        "errors": sum((d.errors or 0) + (s.errors or 0) for d, s in pairs),
        "sidecar_errors": sum((s.errors or 0) for _, s in pairs),
        "direct_errors": sum((d.errors or 0) for d, _ in pairs),
        "metric_deltas": _sum_dicts([s.metric_deltas for _, s in pairs]),
    }


def _sum_dicts(ds):
    out = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def check(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "MISSED")


def build_report(args, env: dict, results: dict, startup: dict, idle: dict, elapsed: float) -> str:
    L = []
    L.append(f"# Shardcar benchmark run, {env['date']}")
    L.append("")
    L.append(f"- machine: {env['nproc']} CPUs, {env['cpu']}, {env['mem']}; kernel {env['kernel']}")
    L.append(f"- mariadbd: {env['mariadbd']}")
    L.append(f"- sysbench: {env['sysbench']}")
    L.append(f"- shardcar: git {env['git']} ({env['binary']}, built {env['binary_mtime']})")
    L.append(f"- load before the run (1/5/15 min): {env['loadavg']}")
    L.append(f"- command: `{env['cmdline']}`")
    L.append(f"- data: sysbench `--tables={TABLES} --table-size={TABLE_SIZE}`, innodb buffer pool 512M; "
             f"{args.seconds} s per run, {args.repeat} interleaved sweep(s), total {elapsed / 60:.1f} min")
    L.append("")
    L.append("Ratio = sidecar QPS / direct QPS of the same back-to-back pair; median over sweeps with the min..max "
             "range in brackets. Latencies are per sysbench event (one query for oltp_point_select, one "
             "transaction for the others), from sysbench's histogram, median over sweeps. Added p50 = sidecar p50 − "
             "direct p50 of the same pair. CPU = sidecar utime+stime during the run / queries.")
    L.append("")
    for test in args.tests:
        L.append(f"## {test}")
        L.append("")
        L.append("| ps-mode | threads | direct QPS | sidecar QPS | ratio | direct p50/p95/p99 ms | sidecar p50/p95/p99 ms "
                 "| added p50 µs | sidecar CPU µs/query | errors d/s |")
        L.append("|---|---:|---:|---:|---|---|---|---:|---:|---|")
        for mode in args.ps_modes:
            for th in args.threads:
                c = results[(test, mode, th)]
                L.append(f"| {mode} | {th} | {fmt(c['direct_qps'])} | {fmt(c['sidecar_qps'])} | {fmt_range(c['ratios'])} "
                         f"| {pct3(c['direct'])} | {pct3(c['sidecar'])} | {fmt_range(c['added_us'], '.0f')} "
                         f"| {fmt_range(c['cpu_us_all'], '.1f')} | {c['direct_errors']}/{c['sidecar_errors']} |")
        L.append("")
    L.append("## Noise indicators")
    L.append("")
    L.append("1-minute load average when the direct and the sidecar run started (on this many CPUs: "
             f"{env['nproc']}), and the sidecar's context switches per query, voluntary (it waited for a "
             "socket: ≈ wake-ups per query) and involuntary (preempted, either by the mysqld or sysbench "
             "thread it has just woken or by unrelated work). A load well above the CPU count means the "
             "figures above are dominated by other work on the machine. Medians over sweeps.")
    L.append("")
    L.append("| test | ps-mode | threads | load at direct / sidecar start | sidecar voluntary cs/query | sidecar involuntary cs/query |")
    L.append("|---|---|---:|---|---:|---:|")
    for test in args.tests:
        for mode in args.ps_modes:
            for th in args.threads:
                c = results[(test, mode, th)]
                L.append(f"| {test} | {mode} | {th} | {fmt(median([d.load1 for d in c['direct']]), '.1f')} / "
                         f"{fmt(median([s.load1 for s in c['sidecar']]), '.1f')} "
                         f"| {fmt(median([s.vol_cs_per_query for s in c['sidecar']]), '.2f')} "
                         f"| {fmt(median([s.invol_cs_per_query for s in c['sidecar']]), '.3f')} |")
    L.append("")
    # failures and anomalies
    anomalies = []
    for key, c in results.items():
        for d, s in c["failures"]:
            if not d.ok:
                anomalies.append(f"- {'/'.join(map(str, key))} DIRECT: {d.failure}")
            if not s.ok:
                anomalies.append(f"- {'/'.join(map(str, key))} SIDECAR: {s.failure}")
        if c["metric_deltas"]:
            anomalies.append(f"- {'/'.join(map(str, key))} sidecar error metrics increased: " +
                             ", ".join(f"{k} +{v:g}" for k, v in sorted(c["metric_deltas"].items())))
        if c["errors"]:
            anomalies.append(f"- {'/'.join(map(str, key))} sysbench ignored errors: direct {c['direct_errors']}, "
                             f"sidecar {c['sidecar_errors']}")
    L.append("## Failures and errors")
    L.append("")
    L.extend(anomalies or ["none: every run completed, sysbench reported 0 ignored errors and the sidecar's error metrics did not move."])
    L.append("")

    # memory and start-up
    max_th = max(args.threads)
    hwm_max_th = [c["hwm_kb"] for (t, m, th), c in results.items() if th == max_th and c["hwm_kb"]]
    rss_load_mb = max(hwm_max_th) / 1024 if hwm_max_th else None
    s1, rd = startup.get("select1_ms", []), startup.get("ready_ms", [])
    L.append("## Start-up and memory")
    L.append("")
    L.append("| figure | value |")
    L.append("|---|---|")
    L.append(f"| exec → first `SELECT 1` answered through the sidecar (median of {len(s1)}) | "
             f"{fmt(median(s1), '.1f')} ms (runs: {', '.join(f'{x:.1f}' for x in s1)}) |")
    L.append(f"| exec → `/ready` 200 (median of {len(rd)}) | {fmt(median(rd), '.1f')} ms (runs: {', '.join(f'{x:.1f}' for x in rd)}) |")
    L.append(f"| idle RSS after one `SELECT 1` (VmRSS / VmHWM) | {fmt(idle.get('rss_kb', 0) / 1024, '.1f')} MB / "
             f"{fmt(idle.get('hwm_kb', 0) / 1024, '.1f')} MB (threads: {idle.get('threads', '?')}) |")
    L.append(f"| peak RSS (VmHWM) during {max_th}-thread runs, max over cases | {fmt(rss_load_mb, '.1f')} MB |")
    L.append("")

    # targets
    def point(th):
        vals = [(m, results.get(("oltp_point_select", m, th))) for m in args.ps_modes]
        return [(m, c) for m, c in vals if c is not None]

    L.append("## Against the targets of issue 2")
    L.append("")
    L.append("| target | measured | verdict |")
    L.append("|---|---|---|")
    if "oltp_point_select" in args.tests:
        for th, tgt in ((1, TARGET_RATIO_1), (8, TARGET_RATIO_8)):
            for m, c in point(th):
                r = c["ratio"]
                L.append(f"| point select ratio ≥ {tgt} at {th} thread(s), ps-mode {m} | {fmt_range(c['ratios'])} "
                         f"| {check(None if r is None else r >= tgt)}"
                         f"{'' if r is None or r >= tgt else f' by {tgt - r:.2f}'} |")
        for th in args.threads:
            for m, c in point(th):
                v = c["cpu_us"]
                L.append(f"| sidecar CPU ≤ {TARGET_CPU_US:g} µs/query, point select {th} thread(s), {m} | {fmt(v, '.1f')} µs "
                         f"| {check(None if v is None else v <= TARGET_CPU_US)}"
                         f"{'' if v is None or v <= TARGET_CPU_US else f' by {v - TARGET_CPU_US:.1f} µs'} |")
        for m, c in point(1):
            v = c["added_p50_us"]
            L.append(f"| ≤ {TARGET_ADDED_US_1:g} µs added at 1 thread (p50), {m} | {fmt(v, '.0f')} µs "
                     f"| {check(None if v is None else v <= TARGET_ADDED_US_1)}"
                     f"{'' if v is None or v <= TARGET_ADDED_US_1 else f' by {v - TARGET_ADDED_US_1:.0f} µs'} |")
    idle_mb = idle.get("hwm_kb", 0) / 1024 if idle.get("hwm_kb") else None
    L.append(f"| RSS ≤ {TARGET_RSS_IDLE_MB:g} MB idle (VmHWM) | {fmt(idle_mb, '.1f')} MB | "
             f"{check(None if idle_mb is None else idle_mb <= TARGET_RSS_IDLE_MB)} |")
    label = f"{max_th} threads" + ("" if max_th == 32 else " (32 not in --threads)")
    L.append(f"| RSS ≤ {TARGET_RSS_32_MB:g} MB under 32 threads (VmHWM) | {fmt(rss_load_mb, '.1f')} MB at {label} | "
             f"{check(None if rss_load_mb is None or max_th != 32 else rss_load_mb <= TARGET_RSS_32_MB)} |")
    v = median(s1)
    L.append(f"| ready ≤ {TARGET_READY_MS:g} ms after start (first `SELECT 1`) | {fmt(v, '.1f')} ms | "
             f"{check(None if v is None else v <= TARGET_READY_MS)}"
             f"{'' if v is None or v <= TARGET_READY_MS else f' by {v - TARGET_READY_MS:.1f} ms'} |")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def csv(kind):
    def parse(s: str):
        items = [x.strip() for x in s.split(",") if x.strip()]
        return [kind(x) for x in items]
    return parse


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Interleaved sysbench benchmark: direct MariaDB vs. Shardcar.")
    ap.add_argument("--seconds", type=int, default=20, help="sysbench --time per run (default 20)")
    ap.add_argument("--threads", type=csv(int), default=[1, 8, 32], help="comma list (default 1,8,32)")
    ap.add_argument("--tests", type=csv(str), default=["oltp_point_select", "oltp_read_only", "oltp_read_write"])
    ap.add_argument("--ps-modes", type=csv(str), default=["auto", "disable"], help="sysbench --db-ps-mode values")
    ap.add_argument("--repeat", type=int, default=2, help="number of interleaved sweeps (default 2)")
    ap.add_argument("--out", default="BENCHMARKS-run.md", help="Markdown report path (default BENCHMARKS-run.md)")
    ap.add_argument("--startup-runs", type=int, default=5, help="fresh processes for the start-up figure (default 5)")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of direct oltp_read_only before the sweep (default 5)")
    ap.add_argument("--binary", default=DEFAULT_BIN, help="shardcar binary (default target/release/shardcar)")
    ap.add_argument("--role", choices=["app", "db"], default="app",
                    help="which role of the sidecar to measure (default app)")
    ap.add_argument("--db-yaml", default="",
                    help="YAML appended to the sidecar config for --role db (e.g. a db: section)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, sysbench outputs) on exit")
    a = ap.parse_args(argv)
    for m in a.ps_modes:
        if m not in ("auto", "disable"):
            ap.error(f"--ps-modes: unknown mode {m!r} (auto, disable)")
    if a.seconds < 1 or a.repeat < 1 or not a.threads or not a.tests:
        ap.error("--seconds and --repeat must be >= 1; --threads and --tests not empty")
    return a


def environment(tools, binary) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
            mem = f"{kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, AttributeError):
        pass
    git = run_cmd(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"
    dirty = run_cmd(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem": mem,
        "kernel": platform.release(),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
        "mariadbd": run_cmd([tools["mariadbd"], "--version"], check=False).stdout.strip(),
        "sysbench": run_cmd([tools["sysbench"], "--version"], check=False).stdout.strip(),
        "git": git + (" + uncommitted changes in the tree" if dirty else ""),
        "binary": os.path.relpath(binary, REPO) if binary.startswith(REPO) else binary,
        "binary_mtime": datetime.datetime.fromtimestamp(os.path.getmtime(binary)).strftime("%Y-%m-%d %H:%M"),
        "cmdline": "python3 " + shlex.join([os.path.relpath(sys.argv[0], os.getcwd())] + sys.argv[1:]),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    tools = {n: which_or_debian(n) for n in ("mariadb-install-db", "mariadbd", "mariadb", "sysbench")}
    missing = [n for n, p in tools.items() if not p]
    if missing:
        print(MISSING_HELP.format(missing=", ".join(missing)), file=sys.stderr)
        return 2
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        print(f"missing: {binary}\nBuild it with:\n    cargo build --release -p shardcar", file=sys.stderr)
        return 2
    env = environment(tools, binary)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    root = tempfile.mkdtemp(prefix="shardcar-bench-")
    if not args.keep:
        PROCS.dirs.append(root)
    logdir = os.path.join(root, "runs")
    os.makedirs(logdir)
    started = time.monotonic()
    try:
        log(f"temp dir {root}; starting mariadbd")
        db = start_mariadb(tools, root)
        log(f"mariadbd on 127.0.0.1:{db.port}; sysbench prepare ({TABLES} x {TABLE_SIZE} rows)")
        run_cmd(sb_base(tools, db.port) + ["--threads=4", "oltp_read_write", "prepare"], timeout=1800)
        if args.warmup > 0:
            log(f"warm-up: {args.warmup}s direct oltp_read_only")
            run_cmd(sb_base(tools, db.port) + ["--threads=4", f"--time={args.warmup}", "oltp_read_only", "run"],
                    timeout=args.warmup + 120)

        factory = SidecarFactory(binary, root, db, args.role, args.db_yaml.replace("\\n", "\n"))
        log(f"start-up: {args.startup_runs} fresh sidecars to first SELECT 1, {args.startup_runs} to /ready")
        startup = measure_startup(factory, args.startup_runs)
        log("start-up ms (SELECT 1): " + ", ".join(f"{x:.1f}" for x in startup["select1_ms"]))

        sc, _ = factory.start()
        factory.wait_ready(sc)
        mysql_select1(sc.port, SB_USER, SB_PASSWORD)
        time.sleep(1.0)
        st = proc_status(sc.pid)
        idle = {"rss_kb": st.get("VmRSS"), "hwm_kb": st.get("VmHWM"), "threads": st.get("Threads")}
        log(f"sidecar pid {sc.pid} on 127.0.0.1:{sc.port}; idle VmRSS {idle['rss_kb']} kB, VmHWM {idle['hwm_kb']} kB")

        pairs: dict[tuple, list] = {(t, m, th): [] for t in args.tests for m in args.ps_modes for th in args.threads}
        total = len(pairs) * args.repeat
        k = 0
        for rep in range(1, args.repeat + 1):
            for test in args.tests:
                for mode in args.ps_modes:
                    for th in args.threads:
                        k += 1
                        tag = f"r{rep}-{test}-{mode}-t{th}"
                        d = run_sysbench(tools, test, db.port, th, args.seconds, mode, None, logdir, tag + "-direct")
                        s = run_sysbench(tools, test, sc.port, th, args.seconds, mode, sc, logdir, tag + "-sidecar")
                        pairs[(test, mode, th)].append((d, s))
                        ratio = f"{s.qps / d.qps:.2f}" if d.ok and s.ok and d.qps else "n/a"
                        log(f"[{k}/{total}] {tag}: direct {fmt(d.qps)} qps p50 {fmt(d.p50, '.3f')} ms | sidecar "
                            f"{fmt(s.qps)} qps p50 {fmt(s.p50, '.3f')} ms cpu {fmt(s.cpu_us_per_query, '.1f')} µs/q "
                            f"cs {fmt(s.vol_cs_per_query, '.2f')}/{fmt(s.invol_cs_per_query, '.3f')} "
                            f"hwm {fmt((s.hwm_kb or 0) / 1024, '.1f')} MB | ratio {ratio} | load {d.load1}"
                            + (f" | DIRECT FAILED: {d.failure}" if not d.ok else "")
                            + (f" | SIDECAR FAILED: {s.failure}" if not s.ok else ""))
                        if sc.proc.poll() is not None:
                            raise BenchError(f"the sidecar died during {tag} (exit {sc.proc.returncode}):\n{_tail(sc.log_path)}")

        results = {key: case_summary(v) for key, v in pairs.items()}
        report = build_report(args, env, results, startup, idle, time.monotonic() - started)
        print(report)
        with open(args.out, "w") as f:
            f.write(report + "\n")
        log(f"report written to {args.out}" + (f"; logs kept in {root}" if args.keep else ""))
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except BenchError as e:
        log(f"error: {e}")
        if not args.keep:
            log("re-run with --keep to keep logs")
        return 1
    finally:
        PROCS.cleanup()


if __name__ == "__main__":
    sys.exit(main())
