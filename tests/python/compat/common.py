"""Shared pieces of the Python compatibility scripts.

Each driver script connects with the arguments HOST PORT USER PASSWORD DB, runs the fixed
scenario list below and prints one canonical JSON document on stdout. The Rust test
(`tests/tests/compat.rs`) runs a script twice, direct to MariaDB and through the sidecar, and
asserts the two documents are identical. Everything printed must therefore be deterministic
for a given server state: no connection ids, no timings, no server version.

The database DB must already hold the `types` and `big` tables and the `multi_rs`
procedure (created by the Rust test from `tests/data/compat_types.sql`). Scenarios that write
use TEMPORARY tables, so the direct and the sidecar runs cannot see each other's rows.
"""

import argparse
import datetime
import decimal
import hashlib
import json
import sys
import traceback

BIG_PARAM_LEN = 17 * 1024 * 1024 + 7  # more than one 16 MiB packet, client to server


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    for name in ("host", "port", "user", "password", "db"):
        p.add_argument(name)
    args = p.parse_args()
    args.port = int(args.port)
    return args


def _digest(kind, data):
    return "%s[%d]sha256:%s" % (kind, len(data), hashlib.sha256(data).hexdigest())


def render(v):
    """A deterministic, JSON-friendly rendering of one value a driver returned."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return "float:" + repr(v)
    if isinstance(v, decimal.Decimal):
        return "decimal:" + str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return _digest("bytes", b) if len(b) > 256 else "hex:" + b.hex()
    if isinstance(v, str):
        return _digest("str", v.encode("utf-8")) if len(v) > 256 else v
    if isinstance(v, datetime.datetime):
        return "datetime:" + v.isoformat()
    if isinstance(v, datetime.date):
        return "date:" + v.isoformat()
    if isinstance(v, datetime.time):
        return "time:" + v.isoformat()
    if isinstance(v, datetime.timedelta):
        micros = (v.days * 86400 + v.seconds) * 1_000_000 + v.microseconds
        return "timedelta_us:%d" % micros
    if isinstance(v, (set, frozenset)):
        return ["set"] + sorted(render(x) for x in v)
    if isinstance(v, (list, tuple)):
        return [render(x) for x in v]
    if isinstance(v, dict):
        return {str(k): render(x) for k, x in v.items()}
    return "%s:%r" % (type(v).__name__, v)


def fetch_result(cursor):
    """Description, rows, rowcount and lastrowid of the cursor's current result."""
    out = {}
    if cursor.description is not None:
        out["columns"] = [render(list(d)) for d in cursor.description]
        out["rows"] = [render(list(r)) for r in cursor.fetchall()]
    out["rowcount"] = cursor.rowcount
    out["lastrowid"] = cursor.lastrowid
    return out


def big_param():
    # Not uniform, so a reordered or truncated packet shows up in the digest.
    chunk = bytes(range(256)) * 4
    data = (chunk * (BIG_PARAM_LEN // len(chunk) + 1))[:BIG_PARAM_LEN]
    return data


TEXT_QUERIES = [
    ("types_all", "SELECT * FROM types ORDER BY id", False),
    ("types_nulls_only", "SELECT * FROM types WHERE ti IS NULL ORDER BY id", False),
    ("big_blob_over_16mib", "SELECT id, LENGTH(b) AS len, SHA2(b, 256) AS sha, b FROM big ORDER BY id", False),
    (
        "expressions",
        "SELECT 1 AS one, NULL AS n, _utf8mb4'h\u00e9llo w\u00f6rld \U0001F600' AS s, "
        "CAST(1.50 AS DECIMAL(10,2)) AS d, 18446744073709551615 AS umax, "
        "-9223372036854775808 AS imin, X'00FF10' AS bin, 1e308 AS dbl, "
        "DATE'2024-02-29' AS dt, TIME'-01:02:03.5' AS tm, b'101' AS bits",
        False,
    ),
    ("error_missing_table", "SELECT * FROM no_such_table_compat", True),
    ("error_syntax", "SELEKT 1", True),
    ("warning_cast", "SELECT CAST('12abc' AS SIGNED) AS v", False),
    ("show_warnings", "SHOW WARNINGS", False),
    ("empty_result", "SELECT id FROM types WHERE id < 0", False),
    ("in_transaction_initial", "SELECT @@in_transaction AS t, @@autocommit AS a", False),
]


def error_of(exc):
    errno = getattr(exc, "errno", None)
    if errno is None and getattr(exc, "args", None):
        errno = exc.args[0] if isinstance(exc.args[0], int) else None
    sqlstate = getattr(exc, "sqlstate", None)
    msg = getattr(exc, "msg", None)
    if msg is None and len(getattr(exc, "args", ())) > 1:
        msg = exc.args[1]
    return {"class": type(exc).__name__, "errno": errno, "sqlstate": sqlstate, "msg": str(msg)}


def run_scenarios(scenarios):
    """`scenarios` is a list of (name, expect_error, callable). Prints the JSON document."""
    results = []
    for name, expect_error, fn in scenarios:
        entry = {"name": name, "expect_error": expect_error}
        try:
            entry["result"] = fn()
        except Exception as exc:  # the error itself is part of the compared output
            entry["error"] = error_of(exc)
            if not expect_error:
                entry["traceback_class"] = type(exc).__name__
                sys.stderr.write("scenario %s failed:\n%s\n" % (name, traceback.format_exc()))
        results.append(entry)
    json.dump(results, sys.stdout, sort_keys=True, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")
