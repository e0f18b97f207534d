"""PyMySQL compatibility scenarios (text protocol; PyMySQL interpolates parameters client-side).

Usage: pymysql_compat.py HOST PORT USER PASSWORD DB  -> canonical JSON on stdout.
"""

import datetime
import decimal

import pymysql
from pymysql.constants import CLIENT

import common


def main():
    a = common.parse_args(__doc__)
    conn = pymysql.connect(
        host=a.host, port=a.port, user=a.user, password=a.password, database=a.db,
        charset="utf8mb4", client_flag=CLIENT.MULTI_STATEMENTS,
        max_allowed_packet=64 * 1024 * 1024, autocommit=True,
    )

    def query(sql, params=None):
        def run():
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return common.fetch_result(cur)
        return run

    def multi(sql):
        def run():
            sets = []
            with conn.cursor() as cur:
                cur.execute(sql)
                while True:
                    sets.append(common.fetch_result(cur))
                    if not cur.nextset():
                        break
            return sets
        return run

    def script(statements):
        def run():
            out = []
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
                    out.append(common.fetch_result(cur))
            return out
        return run

    big = common.big_param()
    scenarios = [(n, e, query(sql)) for n, sql, e in common.TEXT_QUERIES]
    scenarios += [
        ("params_select", False, query(
            "SELECT %s AS i, %s AS s, %s AS b, %s AS d, %s AS dt, %s AS n, %s AS f",
            (-42, "\u00e7a va \U0001F680", b"\x00\x01\xfe\xff", decimal.Decimal("-12345.678900"),
             datetime.datetime(2021, 12, 31, 23, 59, 58, 123456), None, 0.25))),
        ("params_types_where", False, query("SELECT * FROM types WHERE id >= %s ORDER BY id", (2,))),
        ("multi_statements", False, multi("SELECT 1 AS a; SELECT 'two' AS b, 2.5 AS c; DO 1; SELECT NULL AS n")),
        ("multi_statements_error_second", True, multi("SELECT 1 AS a; SELECT * FROM no_such_table_compat; SELECT 3")),
        ("after_multi_error", False, query("SELECT 'still here' AS s")),
        ("call_procedure", False, multi("CALL multi_rs()")),
        ("dml_temporary", False, script([
            ("CREATE TEMPORARY TABLE tmp_compat (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), b LONGBLOB) ENGINE=InnoDB", None),
            ("INSERT INTO tmp_compat (v) VALUES (%s), (%s), (%s)", ("a", "\u00e9", None)),
            ("UPDATE tmp_compat SET v = CONCAT(COALESCE(v, ''), '!') WHERE id > 1", None),
            ("SELECT id, v FROM tmp_compat ORDER BY id", None),
        ])),
        ("transactions", False, script([
            ("BEGIN", None),
            ("INSERT INTO tmp_compat (v) VALUES ('rolled back')", None),
            ("SELECT @@in_transaction AS t", None),
            ("ROLLBACK", None),
            ("SELECT COUNT(*) AS c, @@in_transaction AS t FROM tmp_compat WHERE v = 'rolled back'", None),
            ("START TRANSACTION", None),
            ("INSERT INTO tmp_compat (v) VALUES ('committed')", None),
            ("COMMIT", None),
            ("SELECT COUNT(*) AS c FROM tmp_compat WHERE v = 'committed'", None),
            ("SET autocommit = 0", None),
            ("INSERT INTO tmp_compat (v) VALUES ('implicit')", None),
            ("SELECT @@in_transaction AS t, @@autocommit AS a", None),
            ("ROLLBACK", None),
            ("SELECT COUNT(*) AS c FROM tmp_compat WHERE v = 'implicit'", None),
            ("SET autocommit = 1", None),
        ])),
        ("big_param_over_16mib", False, script([
            ("INSERT INTO tmp_compat (v, b) VALUES ('big', %s)", (big,)),
            ("SELECT id, LENGTH(b) AS len, SHA2(b, 256) AS sha, b FROM tmp_compat WHERE v = 'big'", None),
        ])),
        ("ping_and_select_db", False, lambda: [conn.ping(reconnect=False), conn.select_db(a.db), "ok"]),
    ]
    common.run_scenarios(scenarios)
    conn.close()


if __name__ == "__main__":
    main()
