use super::pins::{Outcome, PinReason, Pins};
use super::rules::{
    glob, ActionName, BuiltinAction, BuiltinRules, Decision, MatchConfig, RuleConfig, RuleSet,
    Subject,
};
use super::statement::{
    analyze, substitute_session_functions, with_limit, Kind, Limit, SessionValues,
};
use super::vars::{parse_set, SessionVars, SetEffect};
use crate::protocol::constants::status;

#[test]
fn kinds_from_leading_words() {
    for (sql, kind) in [
        ("select 1", Kind::Select),
        ("/* c */ SELECT 1", Kind::Select),
        ("(SELECT 1) UNION (SELECT 2)", Kind::Select),
        ("WITH a AS (SELECT 1) SELECT * FROM a", Kind::Select),
        (
            "WITH a AS (SELECT 1), b AS (SELECT 2) UPDATE t SET x = 1",
            Kind::Update,
        ),
        ("insert into t values (1)", Kind::Insert),
        ("START TRANSACTION READ ONLY", Kind::Begin),
        ("begin", Kind::Begin),
        ("ROLLBACK TO SAVEPOINT a", Kind::Savepoint),
        ("rollback", Kind::Rollback),
        ("LOCK TABLES t WRITE", Kind::LockTables),
        ("unlock tables", Kind::UnlockTables),
        ("CREATE TABLE t (a int)", Kind::Ddl),
        ("DROP PREPARE s", Kind::Deallocate),
        ("truncate t", Kind::Ddl),
        ("DESC t", Kind::Show),
        ("XA START 'x'", Kind::Xa),
        ("kill query 5", Kind::Kill),
        ("GRANT ALL ON *.* TO x", Kind::Other),
    ] {
        assert_eq!(analyze(sql).kind, kind, "{sql}");
    }
}

#[test]
fn session_effects_are_found_outside_strings_and_comments() {
    let st = analyze("SELECT GET_LOCK('a', 1)");
    assert!(st.effects.named_lock);
    assert!(
        !analyze("SELECT 'GET_LOCK(1)' /* GET_LOCK( */")
            .effects
            .named_lock
    );
    assert!(analyze("SELECT @a := 1").effects.sets_user_variable);
    assert!(
        analyze("SELECT id INTO @x FROM t")
            .effects
            .sets_user_variable
    );
    assert!(!analyze("SELECT @a, @@sql_mode").effects.sets_user_variable);
    assert!(
        analyze("CREATE TEMPORARY TABLE t (a int)")
            .effects
            .temporary_table
    );
    assert!(
        analyze("select SQL_CALC_FOUND_ROWS * from t")
            .effects
            .calc_found_rows
    );
    assert!(analyze("SELECT last_insert_id()").effects.session_functions);
    assert!(
        !analyze("SELECT last_insert_id()")
            .effects
            .sets_last_insert_id
    );
    assert!(
        analyze("UPDATE t SET id = LAST_INSERT_ID(id + 1)")
            .effects
            .sets_last_insert_id
    );
    assert!(analyze("XA BEGIN 'x'").effects.xa_open);
    assert!(analyze("xa commit 'x'").effects.xa_close);
    assert!(analyze("HANDLER t OPEN").effects.handler_open);
    assert!(
        analyze("FLUSH TABLES WITH READ LOCK")
            .effects
            .global_read_lock
    );
    assert!(analyze("SELECT 1; SELECT 2").effects.multi);
    assert!(!analyze("SELECT 1;").effects.multi);
}

#[test]
fn where_limit_and_tables() {
    let st = analyze("DELETE FROM t WHERE id IN (SELECT id FROM u)");
    assert!(st.has_where);
    assert_eq!(st.tables, vec!["t", "u"]);
    let st = analyze("DELETE FROM t");
    assert!(!st.has_where);
    // A WHERE inside a subquery is not the statement's.
    assert!(!analyze("UPDATE t SET a = (SELECT max(b) FROM u WHERE c = 1)").has_where);
    let st = analyze("SELECT * FROM db.a x, `b` y JOIN c ON c.i = x.i WHERE 1 LIMIT 10, 20");
    assert_eq!(st.tables, vec!["a", "b", "c"]);
    assert_eq!(st.limit, Limit::Rows(20));
    assert_eq!(
        analyze("SELECT * FROM t LIMIT 5 OFFSET 3").limit,
        Limit::Rows(5)
    );
    assert_eq!(analyze("SELECT * FROM t LIMIT ?").limit, Limit::Unknown);
    assert_eq!(analyze("SELECT * FROM t").limit, Limit::None);
    assert_eq!(analyze("UPDATE IGNORE t SET a = 1").tables, vec!["t"]);
    assert_eq!(
        analyze("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2").tables,
        vec!["t"]
    );
}

#[test]
fn row_limit_goes_before_locking_clauses_and_not_into_other_statements() {
    let add = |sql: &str| analyze(sql).limit_at.map(|at| with_limit(sql, at, 11));
    assert_eq!(
        add("SELECT * FROM t WHERE a = 1").as_deref(),
        Some("SELECT * FROM t WHERE a = 1 LIMIT 11")
    );
    assert_eq!(
        add("SELECT * FROM t FOR UPDATE").as_deref(),
        Some("SELECT * FROM t LIMIT 11 FOR UPDATE")
    );
    assert_eq!(
        add("select * from t lock in share mode").as_deref(),
        Some("select * from t LIMIT 11 lock in share mode")
    );
    assert_eq!(
        add("SELECT * FROM t FOR SYSTEM_TIME ALL").as_deref(),
        Some("SELECT * FROM t FOR SYSTEM_TIME ALL LIMIT 11")
    );
    assert_eq!(
        add("SELECT 1 -- c").as_deref(),
        Some("SELECT 1 LIMIT 11 -- c")
    );
    assert_eq!(add("SELECT 1;").as_deref(), Some("SELECT 1 LIMIT 11;"));
    assert_eq!(add("SELECT * FROM t LIMIT 5"), None);
    assert_eq!(add("SELECT a INTO @x FROM t"), None);
    assert_eq!(add("SELECT 1; SELECT 2"), None);
    assert_eq!(add("UPDATE t SET a = 1"), None);
    assert_eq!(add("SELECT (1"), None);
}

#[test]
fn hints_give_a_statement_timeout() {
    assert_eq!(
        analyze("SELECT /*+ MAX_EXECUTION_TIME(1500) */ * FROM t").max_execution_ms,
        Some(1500)
    );
    assert_eq!(
        analyze("UPDATE t SET a = 1 /* shardcar: timeout_ms=20 */").max_execution_ms,
        Some(20)
    );
    assert_eq!(analyze("SELECT 1").max_execution_ms, None);
}

#[test]
fn session_functions_are_replaced_by_tracked_values() {
    let v = SessionValues {
        last_insert_id: Some(42),
        row_count: Some(-1),
        found_rows: Some(7),
        connection_id: Some(9),
    };
    assert_eq!(
        substitute_session_functions(
            "SELECT LAST_INSERT_ID(), row_count ( ), FOUND_ROWS(), CONNECTION_ID(), 'LAST_INSERT_ID()'",
            &v
        )
        .as_deref(),
        Some("SELECT 42, -1, 7, 9, 'LAST_INSERT_ID()'")
    );
    let server_found_rows = SessionValues {
        found_rows: None,
        ..v
    };
    assert_eq!(
        substitute_session_functions("SELECT FOUND_ROWS(), CONNECTION_ID()", &server_found_rows)
            .as_deref(),
        Some("SELECT FOUND_ROWS(), 9")
    );
    assert_eq!(
        substitute_session_functions("SELECT LAST_INSERT_ID(5)", &v),
        None
    );
    assert_eq!(substitute_session_functions("SELECT 1", &v), None);
}

#[test]
fn set_statements_split_into_replayable_assignments() {
    let SetEffect::Session(a) =
        parse_set("SET sql_mode = 'ANSI', @@session.time_zone = '+00:00', NAMES utf8mb4")
    else {
        panic!("expected session assignments");
    };
    let names: Vec<&str> = a.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["sql_mode", "time_zone", "names"]);
    assert_eq!(parse_set("SET @x = 1"), SetEffect::UserVariable);
    assert_eq!(parse_set("SET a = 1, @x = 2"), SetEffect::UserVariable);
    assert_eq!(
        parse_set("SET GLOBAL max_connections = 10"),
        SetEffect::Stateless
    );
    assert_eq!(parse_set("SET @@global.x = 1"), SetEffect::Untracked);
    assert_eq!(parse_set("SET GLOBAL a = 1, b = 2"), SetEffect::Untracked);
    assert_eq!(
        parse_set("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        SetEffect::NextTransaction
    );
    assert!(matches!(
        parse_set("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        SetEffect::Session(_)
    ));
    assert_eq!(
        parse_set("SET STATEMENT max_statement_time=1 FOR SELECT 1"),
        SetEffect::Stateless
    );
    assert_eq!(parse_set("SET sql_mode = @m"), SetEffect::Untracked);
    assert_eq!(parse_set("SET a = 1; SET b = 2"), SetEffect::Untracked);
}

#[test]
fn session_vars_keep_the_latest_assignment_per_variable() {
    let mut vars = SessionVars::default();
    assert_eq!(vars.key(), 0);
    let assign = |v: &mut SessionVars, sql: &str| {
        let SetEffect::Session(a) = parse_set(sql) else {
            panic!("{sql}")
        };
        v.apply(&a).map_err(|_| ())
    };
    assign(&mut vars, "SET sql_mode = 'ANSI'").unwrap();
    assign(&mut vars, "SET autocommit = 0, sql_select_limit = 100").unwrap();
    assign(&mut vars, "SET sql_mode = 'TRADITIONAL'").unwrap();
    assert_eq!(
        vars.replay().as_deref(),
        Some("SET autocommit = 0, sql_select_limit = 100, sql_mode = 'TRADITIONAL'")
    );
    assert_eq!(vars.value("sql_select_limit"), Some("100"));
    let key = vars.key();
    assert_ne!(key, 0);
    // Relative assignments stack instead of replacing.
    assign(
        &mut vars,
        "SET sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')",
    )
    .unwrap();
    assert!(vars
        .replay()
        .unwrap()
        .contains("'TRADITIONAL', sql_mode = CONCAT"));
    assert_ne!(vars.key(), key);
    for i in 0..200 {
        if assign(&mut vars, &format!("SET v{i} = 1")).is_err() {
            assert!(vars.assignments().len() <= super::vars::MAX_TRACKED);
            return;
        }
    }
    panic!("the tracker must refuse to grow without bound");
}

fn outcome(status: u16) -> Outcome {
    Outcome {
        status,
        warnings: 0,
        failed: false,
    }
}

#[test]
fn pins_follow_transactions_locks_and_sticky_state() {
    let mut pins = Pins::default();
    let run = |pins: &mut Pins, sql: &str, status: u16| {
        let st = analyze(sql);
        let set = (st.kind == Kind::Set).then(|| parse_set(sql));
        pins.after_query(&st, set.as_ref(), outcome(status));
    };
    run(&mut pins, "SELECT 1", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), None);
    run(&mut pins, "BEGIN", status::IN_TRANS | status::AUTOCOMMIT);
    assert_eq!(pins.reason(), Some(PinReason::Transaction));
    run(&mut pins, "COMMIT", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), None);
    run(&mut pins, "LOCK TABLES t READ", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), Some(PinReason::LockedTables));
    run(&mut pins, "UNLOCK TABLES", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), None);
    run(
        &mut pins,
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        status::AUTOCOMMIT,
    );
    assert_eq!(pins.reason(), Some(PinReason::NextTransaction));
    run(&mut pins, "BEGIN", status::IN_TRANS);
    run(&mut pins, "COMMIT", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), None);
    // The next statement only: warnings.
    pins.after_query(
        &analyze("INSERT IGNORE INTO t VALUES (1)"),
        None,
        Outcome {
            status: status::AUTOCOMMIT,
            warnings: 1,
            failed: false,
        },
    );
    assert_eq!(pins.reason(), Some(PinReason::NextStatement));
    run(&mut pins, "SHOW WARNINGS", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), None);
    // A failed GET_LOCK statement does not pin; a successful one pins for good.
    pins.after_query(
        &analyze("SELECT GET_LOCK('a', 0)"),
        None,
        Outcome {
            failed: true,
            ..outcome(status::AUTOCOMMIT)
        },
    );
    assert_eq!(pins.reason(), None);
    pins.prepared();
    assert_eq!(pins.reason(), Some(PinReason::PreparedStatement));
    pins.closed();
    run(&mut pins, "SET @x = 1", status::AUTOCOMMIT);
    assert_eq!(pins.reason(), Some(PinReason::UserVariable));
    run(&mut pins, "COMMIT", status::AUTOCOMMIT);
    assert!(pins.reason().is_some_and(PinReason::sticky));
}

fn rule(name: &str, action: ActionName, m: MatchConfig) -> RuleConfig {
    RuleConfig {
        name: name.to_owned(),
        matches: m,
        action,
        ..Default::default()
    }
}

const APP: Subject = Subject {
    user: "app",
    client: "10.0.0.7",
};

#[test]
fn builtin_rules_deny_updates_and_deletes_without_where() {
    let rules = RuleSet::compile(&BuiltinRules::default(), &[]).unwrap();
    let eval = |sql: &str| rules.evaluate(APP, sql, &analyze(sql), 0).action;
    assert!(
        matches!(eval("DELETE FROM t"), Decision::Deny { rule, .. } if rule == "builtin:delete_without_where")
    );
    assert!(matches!(eval("update t set a = 1"), Decision::Deny { .. }));
    assert_eq!(eval("DELETE FROM t WHERE id = 1"), Decision::Run);
    assert_eq!(eval("SELECT * FROM t"), Decision::Run);
    let builtin = BuiltinRules {
        ddl: BuiltinAction::Deny,
        unbounded_select: BuiltinAction::Deny,
        exempt_users: vec!["migr*".to_owned()],
        ..Default::default()
    };
    let rules = RuleSet::compile(&builtin, &[]).unwrap();
    let st = analyze("DROP TABLE t");
    assert!(matches!(
        rules.evaluate(APP, "DROP TABLE t", &st, 0).action,
        Decision::Deny { .. }
    ));
    let migrate = Subject {
        user: "migrator",
        client: "x",
    };
    assert_eq!(
        rules.evaluate(migrate, "DROP TABLE t", &st, 0).action,
        Decision::Run
    );
    let sql = "SELECT * FROM t";
    assert!(matches!(
        rules.evaluate(APP, sql, &analyze(sql), 0).action,
        Decision::Deny { .. }
    ));
    let sql = "SELECT * FROM t LIMIT 10";
    assert_eq!(
        rules.evaluate(APP, sql, &analyze(sql), 0).action,
        Decision::Run
    );
}

#[test]
fn configured_rules_match_in_order() {
    let rules = RuleSet::compile(
        &BuiltinRules::default(),
        &[
            rule(
                "ops-may",
                ActionName::Allow,
                MatchConfig {
                    users: vec!["ops".to_owned()],
                    ..Default::default()
                },
            ),
            rule(
                "audit-salaries",
                ActionName::Log,
                MatchConfig {
                    tables: vec!["Salaries".to_owned()],
                    ..Default::default()
                },
            ),
            rule(
                "no-salaries-from-10",
                ActionName::Deny,
                MatchConfig {
                    clients: vec!["10.*".to_owned()],
                    tables: vec!["salaries".to_owned()],
                    statements: vec!["select".to_owned()],
                    ..Default::default()
                },
            ),
            RuleConfig {
                pattern: Some(r"SLEEP\(\d+\)".to_owned()),
                replacement: Some("SLEEP(0)".to_owned()),
                ..rule("no-sleep", ActionName::Rewrite, MatchConfig::default())
            },
            rule(
                "fp",
                ActionName::Deny,
                MatchConfig {
                    fingerprints: vec!["SELECT * FROM big WHERE x = 1".to_owned()],
                    ..Default::default()
                },
            ),
        ],
    )
    .unwrap();
    let sql = "SELECT * FROM salaries s JOIN people p ON p.id = s.id";
    let v = rules.evaluate(APP, sql, &analyze(sql), 0);
    assert_eq!(v.logged, vec!["audit-salaries"]);
    assert!(matches!(v.action, Decision::Deny { ref rule, .. } if rule == "no-salaries-from-10"));
    let ops = Subject {
        user: "ops",
        client: "10.0.0.1",
    };
    assert_eq!(
        rules.evaluate(ops, sql, &analyze(sql), 0).action,
        Decision::Run
    );
    let sql = "SELECT SLEEP(100)";
    let v = rules.evaluate(APP, sql, &analyze(sql), 0);
    assert_eq!(v.rewritten.as_deref(), Some("SELECT SLEEP(0)"));
    let sql = "select * from big where x = 42";
    assert!(
        matches!(rules.evaluate(APP, sql, &analyze(sql), 0).action, Decision::Deny { ref rule, .. } if rule == "fp")
    );
}

#[test]
fn rate_limit_rules_refill_with_time() {
    let rules = RuleSet::compile(
        &BuiltinRules::default(),
        &[RuleConfig {
            per_second: Some(2.0),
            burst: Some(2),
            ..rule(
                "slow-report",
                ActionName::RateLimit,
                MatchConfig {
                    regex: Some("report".to_owned()),
                    ..Default::default()
                },
            )
        }],
    )
    .unwrap();
    let sql = "SELECT * FROM report";
    let st = analyze(sql);
    assert_eq!(rules.evaluate(APP, sql, &st, 1000).action, Decision::Run);
    assert_eq!(rules.evaluate(APP, sql, &st, 1000).action, Decision::Run);
    assert!(matches!(
        rules.evaluate(APP, sql, &st, 1000).action,
        Decision::RateLimited { .. }
    ));
    assert_eq!(rules.evaluate(APP, sql, &st, 1500).action, Decision::Run);
}

#[test]
fn bad_rules_name_the_rule_and_field() {
    let e = RuleSet::compile(
        &BuiltinRules::default(),
        &[rule(
            "r",
            ActionName::Deny,
            MatchConfig {
                statements: vec!["selec".to_owned()],
                ..Default::default()
            },
        )],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string().split(':').next(),
        Some("rules[0] (r).match.statements")
    );
    let e = RuleSet::compile(
        &BuiltinRules::default(),
        &[rule("r", ActionName::RateLimit, MatchConfig::default())],
    )
    .unwrap_err();
    assert_eq!(e.field, "per_second");
}

#[test]
fn globs() {
    assert!(glob("*", "anything"));
    assert!(glob("app-*", "app-1"));
    assert!(glob("*-ro", "x-ro"));
    assert!(glob("a*b*c", "aXXbYYc"));
    assert!(!glob("a*b*c", "aXXbYY"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
}

#[test]
fn hot_row_keys_name_the_table_and_the_where_clause() {
    use super::hotrow::row_key;
    let key = |sql: &str| row_key(sql, &analyze(sql));
    assert_eq!(
        key("UPDATE counters SET n = n + 1 WHERE id = 7").as_deref(),
        Some("counters: id = 7")
    );
    assert_eq!(
        key("update `Counters` set n = 2 where ID = 7 limit 1").as_deref(),
        Some("counters: id = 7")
    );
    assert_eq!(
        key("SELECT n FROM counters WHERE id = 7 FOR UPDATE").as_deref(),
        Some("counters: id = 7")
    );
    assert_eq!(
        key("SELECT n FROM counters WHERE id = 7 LOCK IN SHARE MODE").as_deref(),
        Some("counters: id = 7")
    );
    assert_eq!(key("SELECT n FROM counters WHERE id = 7"), None);
    assert_eq!(key("UPDATE counters SET n = 1"), None);
    assert_eq!(key("DELETE FROM a WHERE id IN (SELECT id FROM b)"), None);
    assert_eq!(key("INSERT INTO counters VALUES (1)"), None);
}

#[test]
fn nondeterministic_calls_are_flagged() {
    assert!(analyze("SELECT RAND()").effects.nondeterministic);
    assert!(analyze("select uuid()").effects.nondeterministic);
    assert!(
        !analyze("SELECT SLEEP(1), 'RAND()'")
            .effects
            .nondeterministic
    );
}

#[test]
fn every_statement_of_a_multi_statement_text_meets_the_rules() {
    use super::rules::{BuiltinAction, BuiltinRules, Decision, RuleSet, Subject};
    use super::statement::split_statements;
    assert_eq!(
        split_statements("SELECT ';' ; DROP TABLE t; /* ; */ SELECT (1;2) ;"),
        vec!["SELECT ';'", "DROP TABLE t", "/* ; */ SELECT (1;2)"]
    );
    let rules = RuleSet::compile(
        &BuiltinRules {
            ddl: BuiltinAction::Deny,
            ..BuiltinRules::default()
        },
        &[],
    )
    .expect("rules");
    let who = Subject {
        user: "app",
        client: "10.0.0.1",
    };
    let text = "SELECT 1; DROP TABLE t";
    let verdict = rules.evaluate_each(who, text, &analyze(text), 0);
    assert!(
        matches!(&verdict.action, Decision::Deny { rule, .. } if rule == "builtin:ddl"),
        "{verdict:?}"
    );
    let text = "SELECT 1; UPDATE t SET a = 1 WHERE id = 2";
    assert_eq!(
        rules.evaluate_each(who, text, &analyze(text), 0).action,
        Decision::Run
    );
    let text = "SELECT 1; DELETE FROM t";
    assert!(matches!(
        rules.evaluate_each(who, text, &analyze(text), 0).action,
        Decision::Deny { .. }
    ));
}
