"""mysql-connector-python compatibility scenarios in pure-Python mode (use_pure=True): text
protocol (plain cursor) and server-side prepared statements (cursor(prepared=True), i.e.
COM_STMT_PREPARE/EXECUTE with the binary protocol).

Usage: connector_compat.py HOST PORT USER PASSWORD DB  -> canonical JSON on stdout.
"""

import datetime
import decimal

import mysql.connector
from mysql.connector.constants import ClientFlag

import common


def main():
    a = common.parse_args(__doc__)
    conn = mysql.connector.connect(
        host=a.host, port=a.port, user=a.user, password=a.password, database=a.db,
        use_pure=True, charset="utf8mb4", collation="utf8mb4_general_ci",
        client_flags=[ClientFlag.MULTI_STATEMENTS, ClientFlag.MULTI_RESULTS],
        autocommit=True, ssl_disabled=True,
    )
    assert not hasattr(conn, "_cmysql") or conn._cmysql is None, "must run in pure-Python mode"

    def query(sql, params=None, prepared=False):
        def run():
            cur = conn.cursor(prepared=prepared)
            try:
                cur.execute(sql, params)
                return common.fetch_result(cur)
            finally:
                cur.close()
        return run

    def multi(sql):
        def run():
            sets = []
            cur = conn.cursor()
            try:
                cur.execute(sql)
                while True:
                    sets.append(common.fetch_result(cur))
                    if not cur.nextset():
                        break
            finally:
                cur.close()
            return sets
        return run

    def script(statements, prepared=False):
        def run():
            out = []
            cur = conn.cursor(prepared=prepared)
            try:
                for sql, params in statements:
                    cur.execute(sql, params)
                    out.append(common.fetch_result(cur))
            finally:
                cur.close()
            return out
        return run

    params = (-42, "\u00e7a va \U0001F680", b"\x00\x01\xfe\xff", decimal.Decimal("-12345.678900"),
              datetime.datetime(2021, 12, 31, 23, 59, 58, 123456), None, 0.25,
              18446744073709551615, datetime.date(1999, 1, 2), datetime.timedelta(hours=-5, microseconds=7))
    select_params = "SELECT %s AS i, %s AS s, %s AS b, %s AS d, %s AS dt, %s AS n, %s AS f, %s AS u, %s AS da, %s AS td"
    big = common.big_param()

    scenarios = [("text_" + n, e, query(sql)) for n, sql, e in common.TEXT_QUERIES]
    # mysql-connector's pure-Python binary row parser misreads YEAR values (even direct to
    # MariaDB: every later column is shifted, IndexError), so prepared statements read YEAR as an
    # integer expression; the text scenarios keep `SELECT *`.
    star = ("SELECT id, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, f, d, dt, tm, dtm, ts, "
            "CAST(yr AS UNSIGNED) AS yr, c, vc, bn, vb, tx, bl, js, b1, b64, en, st FROM types")

    def no_year(sql):
        return sql.replace("SELECT * FROM types", star)

    scenarios += [("prepared_" + n, e, query(no_year(sql), prepared=True)) for n, sql, e in common.TEXT_QUERIES
                  if n not in ("error_syntax", "show_warnings")]
    scenarios += [
        ("prepared_error_syntax", True, query("SELEKT ?", (1,), prepared=True)),
        ("text_params_select", False, query(select_params, params)),
        ("prepared_params_select", False, query(select_params.replace("%s", "?"), params, prepared=True)),
        ("prepared_types_where", False, query(no_year("SELECT * FROM types WHERE id >= ? ORDER BY id"), (2,), prepared=True)),
        ("prepared_types_each_id", False, script([(no_year("SELECT * FROM types WHERE id = ?"), (i,)) for i in range(1, 6)], prepared=True)),
        ("multi_statements", False, multi("SELECT 1 AS a; SELECT 'two' AS b, 2.5 AS c; DO 1; SELECT NULL AS n")),
        ("call_procedure_text", False, multi("CALL multi_rs()")),
        ("after_call", False, query("SELECT 'still here' AS s")),
        ("dml_temporary", False, script([
            ("CREATE TEMPORARY TABLE tmp_compat (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20), b LONGBLOB) ENGINE=InnoDB", None),
            ("INSERT INTO tmp_compat (v) VALUES (%s), (%s), (%s)", ("a", "\u00e9", None)),
            ("UPDATE tmp_compat SET v = CONCAT(COALESCE(v, ''), '!') WHERE id > 1", None),
            ("SELECT id, v FROM tmp_compat ORDER BY id", None),
        ])),
        ("dml_prepared", False, script([
            ("INSERT INTO tmp_compat (v) VALUES (?)", ("prep",)),
            ("UPDATE tmp_compat SET v = ? WHERE v = ?", ("prep2", "prep")),
            ("SELECT id, v FROM tmp_compat WHERE v = ?", ("prep2",)),
            ("DELETE FROM tmp_compat WHERE v = ?", ("prep2",)),
        ], prepared=True)),
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
        ("big_param_over_16mib_prepared", False, script([
            ("INSERT INTO tmp_compat (v, b) VALUES ('big', ?)", (big,)),
            ("SELECT id, LENGTH(b) AS len, SHA2(b, 256) AS sha, b FROM tmp_compat WHERE v = ?", ("big",)),
        ], prepared=True)),
        ("ping_reset_and_cmd_init_db", False, lambda: [conn.ping(reconnect=False), conn.cmd_init_db(a.db)["status_flag"], "ok"]),
    ]
    common.run_scenarios(scenarios)
    conn.close()


if __name__ == "__main__":
    main()
