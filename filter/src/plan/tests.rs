//! Planner tests over a 4-shard `user` keyspace and an unsharded `main` keyspace.

use std::collections::BTreeMap;

use super::*;
use crate::vindex::NoFiles;
use crate::vschema::SrvVSchema;

const VSCHEMA: &str = r#"{
  "keyspaces": {
    "user": {
      "sharded": true,
      "vindexes": {
        "hash": {"type": "hash"},
        "accounts_email": {"type": "lookup_unique", "owner": "accounts",
                           "params": {"table": "main.accounts_email_idx", "from": "email", "to": "keyspace_id"}}
      },
      "tables": {
        "accounts": {"column_vindexes": [{"column": "id", "name": "hash"},
                                         {"column": "email", "name": "accounts_email"}]},
        "customers": {"column_vindexes": [{"column": "id", "name": "hash"}],
                      "auto_increment": {"column": "id", "sequence": "customer_seq"}},
        "orders": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
        "countries": {"type": "reference"}
      }
    },
    "main": {"tables": {"products": {}, "accounts_email_idx": {}, "customer_seq": {"type": "sequence"}}}
  }
}"#;

pub(crate) fn schema() -> RoutingSchema {
    schema_of(VSCHEMA)
}

fn schema_of(json: &str) -> RoutingSchema {
    let vschema = SrvVSchema::from_json(json).unwrap_or_default();
    let mut shards = BTreeMap::new();
    shards.insert(
        "user".to_string(),
        ["-40", "40-80", "80-c0", "c0-"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    shards.insert("main".to_string(), vec!["0".to_string()]);
    match RoutingSchema::build(vschema, &shards, &NoFiles) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn route(sql: &str) -> Route {
    match plan(&schema(), sql, &PlanContext::default()) {
        Ok(Plan::Route(r)) => r,
        other => panic!("{sql}: {other:?}"),
    }
}

fn materialized(sql: &str) -> Materialize {
    match plan(&schema(), sql, &PlanContext::default()) {
        Ok(Plan::Materialize(m)) => m,
        other => panic!("{sql}: expected a materialization, got {other:?}"),
    }
}

fn refused(sql: &str) -> String {
    match plan(&schema(), sql, &PlanContext::default()) {
        Err(PlanError::Unsupported(m)) => m,
        other => panic!("{sql}: expected a 1235 refusal, got {other:?}"),
    }
}

#[test]
fn point_select_goes_to_one_shard_unchanged() {
    // hash(1) = 166b40b44aba4bd6 -> -40
    let r = route("SELECT name FROM customers WHERE id = 1");
    assert_eq!(r.shards, vec![0]);
    assert!(r.is_passthrough());
    let r = route("select * from orders o where o.customer_id = 1 and qty > 3");
    assert_eq!(r.shards, vec![0]);
}

#[test]
fn in_lists_reach_their_shards_and_others_scatter() {
    let r = route("SELECT name FROM customers WHERE id IN (1, 2, 3)");
    assert!(r.shards.len() > 1 && r.shards.len() <= 3, "{r:?}");
    let r = route("SELECT name FROM customers WHERE city = 'Paris'");
    assert_eq!(r.shards, vec![0, 1, 2, 3]);
    assert!(r.merge.is_none());
}

/// The shard `customers` row `id` lives on.
fn shard_of_id(id: u32) -> usize {
    route(&format!("SELECT name FROM customers WHERE id = {id}")).shards[0]
}

/// The ids in the IN-list of each of `route`'s shard statements.
fn shard_ids(route: &Route) -> BTreeMap<usize, Vec<u32>> {
    route
        .shard_queries
        .iter()
        .map(|(shard, q)| {
            let list = q
                .split_once(" IN (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map_or("", |(list, _)| list);
            let ids = list.split(", ").filter_map(|v| v.parse().ok()).collect();
            (*shard, ids)
        })
        .collect()
}

#[test]
fn in_lists_are_cut_per_shard() {
    let ids: Vec<u32> = (1..=12).collect();
    let list = ids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut expected: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for &id in &ids {
        expected.entry(shard_of_id(id)).or_default().push(id);
    }
    let read = route(&format!(
        "SELECT name FROM customers WHERE city <> 'x' AND id IN ({list}) ORDER BY name"
    ));
    assert_eq!(read.shards, expected.keys().copied().collect::<Vec<_>>());
    assert_eq!(shard_ids(&read), expected);
    assert!(read
        .shard_queries
        .iter()
        .all(|(_, q)| q.contains("city <> 'x'")));
    // The per-shard statements are cut from the scatter rewrite (AVG as SUM and COUNT).
    let agg = route(&format!(
        "SELECT AVG(balance) FROM customers WHERE (id IN ({list}))"
    ));
    assert_eq!(shard_ids(&agg), expected);
    assert!(agg
        .shard_queries
        .iter()
        .all(|(_, q)| q.contains("SUM(balance)")));
    for write in [
        format!("UPDATE customers SET name = 'n' WHERE id IN ({list})"),
        format!("DELETE FROM orders WHERE customer_id IN ({list}) AND qty > 1"),
    ] {
        let r = route(&write);
        assert!(r.write);
        assert_eq!(shard_ids(&r), expected, "{write}");
    }
    // Not cut: an IN-list under OR, on another column, with a placeholder, or a join.
    for whole in [
        format!("SELECT name FROM customers WHERE id IN ({list}) OR city = 'x'"),
        format!("SELECT name FROM customers WHERE id IN ({list}) OR id = 13"),
        format!("SELECT name FROM customers WHERE balance IN ({list})"),
        format!("SELECT c.name FROM customers c JOIN orders o ON c.id = o.customer_id WHERE c.id IN ({list})"),
    ] {
        let r = route(&whole);
        assert!(r.shard_queries.is_empty(), "{whole}: {r:?}");
    }
}

#[test]
fn unsharded_and_reference_tables_pass_whole() {
    let r = route("SELECT p.name, COUNT(*) FROM products p GROUP BY p.name ORDER BY 2 LIMIT 3");
    assert_eq!((r.keyspace.as_str(), r.shards.clone()), ("main", vec![0]));
    let r = route("SELECT * FROM countries ORDER BY name");
    assert_eq!((r.keyspace.as_str(), r.shards.clone()), ("user", vec![0]));
}

#[test]
fn scatter_aggregates_are_rewritten() {
    let r = route(
        "SELECT city, COUNT(*), AVG(balance) FROM customers GROUP BY city ORDER BY city LIMIT 5",
    );
    let q = r.query.unwrap_or_default();
    assert!(q.contains("SUM(balance) AS `AVG(balance)`"), "{q}");
    assert!(q.contains("WEIGHT_STRING(city)"), "{q}");
    assert!(!q.contains("LIMIT"), "{q}");
    let m = r.merge.unwrap_or_default();
    assert!(m.aggregated);
    assert_eq!(m.limit, Some(5));
}

#[test]
fn scatter_limit_pushes_offset_plus_count() {
    let r = route("SELECT id FROM customers ORDER BY name, id LIMIT 10 OFFSET 5");
    let q = r.query.unwrap_or_default();
    assert!(q.ends_with("LIMIT 15"), "{q}");
}

#[test]
fn co_located_joins_and_refused_ones() {
    let r = route("SELECT c.name, o.qty FROM customers c JOIN orders o ON c.id = o.customer_id WHERE c.id = 1");
    assert_eq!(r.shards, vec![0]);
    let r = route("SELECT c.name, o.qty FROM customers c JOIN orders o ON c.id = o.customer_id");
    assert_eq!(r.shards.len(), 4);
    let m = materialized("SELECT c.name FROM customers c JOIN orders o ON c.name = o.note WHERE o.qty > 3 AND c.id > 1");
    assert_eq!(m.inner, "SELECT * FROM orders AS o WHERE o.qty > 3");
    let m = materialized("SELECT o.qty FROM orders o JOIN products p ON o.product_id = p.id");
    assert_eq!(m.inner, "SELECT * FROM products AS p");
}

#[test]
fn subqueries_follow_co_location() {
    let r = route("SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)");
    assert_eq!(r.shards.len(), 4);
    let m = materialized(
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE qty > 3)",
    );
    assert_eq!(m.inner, "SELECT customer_id FROM orders WHERE qty > 3");
    let outer = m.outer_sql(&[], &[]);
    assert!(outer.contains("IN (SELECT  FROM DUAL WHERE 0)"), "{outer}");
    materialized("SELECT * FROM countries WHERE code IN (SELECT country_code FROM customers)");
    // Correlated on a non-vindex column: cannot run alone, cannot be pushed down.
    refused(
        "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.note = c.name)",
    );
}

#[test]
fn window_functions_and_distinct_aggregates_are_computed_on_materialized_rows() {
    let m = materialized(
        "SELECT id, ROW_NUMBER() OVER (ORDER BY id) FROM customers WHERE city = 'Nice'",
    );
    assert_eq!(m.inner, "SELECT * FROM customers WHERE city = 'Nice'");
    let m = materialized("SELECT COUNT(DISTINCT city) FROM customers");
    assert_eq!(m.inner, "SELECT * FROM customers");
    let m = materialized("SELECT city FROM customers UNION SELECT name FROM countries");
    assert_eq!(m.inner, "SELECT city FROM customers");
}

#[test]
fn strings_survive_a_rewrite_byte_for_byte() {
    let r = route(r"SELECT COUNT(*) FROM customers WHERE name = 'O''Brien\\x' AND city <> 'a\'b'");
    let q = r.query.unwrap_or_default();
    assert!(q.contains(r"'O''Brien\\x'"), "{q}");
    assert!(q.contains(r"'a\'b'"), "{q}");
}

#[test]
fn inserts_split_per_shard_and_wait_for_sequences() {
    let s = schema();
    let ctx = PlanContext::default();
    let Ok(Plan::Insert(mut p)) = plan(
        &s,
        "INSERT INTO customers (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        &ctx,
    ) else {
        panic!("insert plan");
    };
    assert!(p.sequence.is_none());
    let stmts = p.shard_statements(&s).unwrap_or_default();
    assert!(stmts.len() >= 2);
    let rows: usize = stmts.iter().map(|(_, q)| q.matches('(').count() - 1).sum();
    assert_eq!(rows, 3);
    let Ok(Plan::Insert(mut q)) =
        plan(&s, "INSERT INTO customers (name) VALUES ('x'), ('y')", &ctx)
    else {
        panic!("insert plan");
    };
    assert_eq!(
        q.sequence.as_ref().map(|n| (n.keyspace.as_str(), n.count)),
        Some(("main", 2))
    );
    assert_eq!(q.fill_sequence(100), Some(100));
    let stmts = q.shard_statements(&s).unwrap_or_default();
    let all: String = stmts.iter().map(|(_, q)| q.clone()).collect();
    assert!(all.contains("100") && all.contains("101"), "{all}");
    assert_eq!(p.fill_sequence(1), None, "explicit ids need no sequence");
}

#[test]
fn dml_refusals() {
    refused("UPDATE customers SET id = id + 1 WHERE id = 5");
    refused("UPDATE orders SET qty = 1 WHERE qty > 3 LIMIT 2");
    let r = route("DELETE FROM orders WHERE customer_id IN (1, 2)");
    assert!(r.write);
    let r = route("UPDATE countries SET name = 'x' WHERE code = 'FR'");
    assert!(r.replicated && r.shards.len() == 4);
}

#[test]
fn session_statements() {
    let s = schema();
    let ctx = PlanContext::default();
    assert!(matches!(
        plan(&s, "begin", &ctx),
        Ok(Plan::Transaction(Transaction::Begin))
    ));
    assert!(matches!(
        plan(&s, "SET autocommit = 0", &ctx),
        Ok(Plan::Set {
            autocommit: Some(false)
        })
    ));
    assert_eq!(
        plan(&s, "SET @@session.transaction_mode = 'TWOPC';", &ctx),
        Ok(Plan::TransactionMode("twopc".into()))
    );
    assert_eq!(
        plan(&s, "set transaction_mode=multi", &ctx),
        Ok(Plan::TransactionMode("multi".into()))
    );
    assert!(matches!(
        plan(&s, "SET transaction_mode = 'twopc', autocommit = 0", &ctx),
        Err(PlanError::Unsupported(_))
    ));
    assert!(matches!(
        plan(&s, "SET autocommit = 0, transaction_mode = 'single'", &ctx),
        Err(PlanError::Unsupported(_))
    ));
    assert!(matches!(plan(&s, "USE user", &ctx), Ok(Plan::Use(_))));
    assert!(matches!(
        plan(&s, "USE nope", &ctx),
        Err(PlanError::UnknownKeyspace(_))
    ));
    assert!(matches!(
        plan(&s, "SELEC 1", &ctx),
        Ok(Plan::Route(_)) | Err(_)
    ));
    assert!(matches!(
        plan(&s, "SELECT FROM WHERE", &ctx),
        Err(PlanError::Syntax(_))
    ));
}

#[test]
fn prepared_parameters_route_point_selects() {
    let s = schema();
    let ctx = PlanContext::default();
    let r = plan_with_params(
        &s,
        "SELECT name FROM customers WHERE id = ?",
        &ctx,
        &[Value::Int(1)],
    );
    assert!(
        matches!(r, Ok(Plan::Route(ref r)) if r.shards == vec![0]),
        "{r:?}"
    );
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let unions = vec!["SELECT 1"; 5000].join(" UNION ");
    refused(&unions);
    let parens = format!("SELECT {}1{}", "(".repeat(10000), ")".repeat(10000));
    refused(&parens);
}

#[test]
fn vindex_functions_answer_like_vitess() {
    let s = schema();
    let ctx = PlanContext {
        default_keyspace: Some("user"),
    };
    let Ok(Plan::Answer { columns, rows }) = plan(
        &s,
        "SELECT id, keyspace_id, range_start, range_end, hex_keyspace_id, shard FROM hash WHERE id IN (1, 2)",
        &ctx,
    ) else {
        panic!("vindex function");
    };
    assert_eq!(columns.len(), 6);
    // Vitess: hash(1) = 166b40b44aba4bd6 in -40, hash(2) = 06e7ea22ce92708f in -40.
    assert_eq!(rows[0][4].as_deref(), Some(&b"166b40b44aba4bd6"[..]));
    assert_eq!(rows[0][5].as_deref(), Some(&b"-40"[..]));
    assert_eq!(rows[1][4].as_deref(), Some(&b"06e7ea22ce92708f"[..]));
    assert!(matches!(
        plan(
            &s,
            "SELECT shard FROM user.hash WHERE id = 3",
            &PlanContext::default()
        ),
        Ok(Plan::Answer { .. })
    ));
    assert!(matches!(
        plan(&s, "SELECT shard FROM hash", &ctx),
        Err(PlanError::Unsupported(_))
    ));
}

#[test]
fn session_functions_are_answered_by_the_sidecar() {
    let s = schema();
    let ctx = PlanContext::default();
    assert!(matches!(
        plan(&s, "SELECT LAST_INSERT_ID()", &ctx),
        Ok(Plan::SessionValue { function: SessionFunction::LastInsertId, ref column }) if column == "LAST_INSERT_ID()"
    ));
    assert!(matches!(
        plan(&s, "select database() as db", &ctx),
        Ok(Plan::SessionValue { function: SessionFunction::Database, ref column }) if column == "db"
    ));
    for (sql, name) in [
        ("SELECT @@transaction_mode", "@@transaction_mode"),
        (
            "select @@session.transaction_mode",
            "@@session.transaction_mode",
        ),
        ("SELECT @@TRANSACTION_MODE AS m", "m"),
    ] {
        assert!(
            matches!(
                plan(&s, sql, &ctx),
                Ok(Plan::SessionValue { function: SessionFunction::TransactionMode, ref column }) if column == name
            ),
            "{sql}: {:?}",
            plan(&s, sql, &ctx)
        );
    }
}

fn insert_sqls(before: &[crate::plan::LookupInsert]) -> Vec<String> {
    before.iter().map(|i| i.sql.clone()).collect()
}

fn hex_ksid(id: u64) -> String {
    let v = crate::vindex::Vindex::create("hash", "h", &Default::default())
        .and_then(|h| h.hash(&Value::Uint(id)));
    match v {
        Ok(k) => k.to_hex(),
        Err(e) => panic!("{e}"),
    }
}

fn ksid_row(id: u64) -> merge::Row {
    vec![Some(hex::decode(hex_ksid(id)).unwrap_or_default())]
}

#[test]
fn a_lookup_vindex_narrows_a_scatter_to_the_shards_its_table_names() {
    let s = schema();
    let mut r = route("SELECT * FROM accounts WHERE email = 'a@x.io'");
    assert_eq!(r.shards, vec![0, 1, 2, 3]);
    let step = r
        .lookup
        .clone()
        .unwrap_or_else(|| panic!("no lookup step: {r:?}"));
    assert_eq!(
        step.query,
        "SELECT keyspace_id FROM main.accounts_email_idx WHERE email IN ('a@x.io')"
    );
    // hash(1) is in -40; hash(4) = d2fd8867d50d2dfe in c0-.
    let found = step.shards(&s, &[ksid_row(1), ksid_row(4), vec![None]]);
    assert_eq!(found, Ok([0, 3].into_iter().collect()));
    r.narrow(&[3].into_iter().collect());
    assert_eq!(r.shards, vec![3]);
    assert!(r.is_passthrough(), "{r:?}");
    // Nothing found: one shard answers the empty result.
    let mut r = route("SELECT count(*) FROM accounts WHERE email IN ('a', 'b')");
    assert!(r
        .lookup
        .as_ref()
        .is_some_and(|l| l.query.ends_with("IN ('a', 'b')")));
    r.narrow(&Default::default());
    assert_eq!(r.shards, vec![0]);
    // The primary vindex wins; other predicates do not use the lookup.
    assert!(route("SELECT * FROM accounts WHERE id = 1 AND email = 'a'")
        .lookup
        .is_none());
    assert!(route("SELECT * FROM accounts WHERE email > 'a'")
        .lookup
        .is_none());
    assert!(route("DELETE FROM orders WHERE qty = 3").lookup.is_none());
    let u = route("UPDATE accounts SET name = 'n' WHERE email = 'a'");
    assert!(u.lookup.is_some() && u.owner_rows.is_none(), "{u:?}");
    // A co-located join narrows by a lookup column of any of its tables, pinned in WHERE.
    let j = route(
        "SELECT a.id, o.id FROM orders o JOIN accounts a ON o.customer_id = a.id WHERE o.qty > 1 AND a.email = 'a@x.io'",
    );
    assert!(
        j.lookup
            .as_ref()
            .is_some_and(|l| l.query.ends_with("IN ('a@x.io')")),
        "{j:?}"
    );
    for unpinned in [
        // In the ON clause of an outer join the value does not filter the result.
        "SELECT o.id FROM orders o LEFT JOIN accounts a ON o.customer_id = a.id AND a.email = 'x'",
        // Unqualified in a join: whose column it is is not known here.
        "SELECT o.id FROM orders o JOIN accounts a ON o.customer_id = a.id WHERE email = 'x'",
        // Under OR with another table's predicate.
        "SELECT o.id FROM orders o JOIN accounts a ON o.customer_id = a.id WHERE a.email = 'x' OR o.qty = 1",
    ] {
        assert!(route(unpinned).lookup.is_none(), "{unpinned}");
    }
}

/// The INSERT `sql` planned over `s`: its per-shard statements and lookup writes.
fn insert_statements(s: &RoutingSchema, sql: &str) -> (Vec<(usize, String)>, LookupWrites) {
    match plan(s, sql, &PlanContext::default()) {
        Ok(Plan::Insert(p)) => match p.statements(s) {
            Ok(out) => out,
            Err(e) => panic!("{sql}: {e}"),
        },
        other => panic!("{sql}: not an insert plan: {other:?}"),
    }
}

#[test]
fn consistent_lookups_can_take_an_orphan_row_over() {
    let s = schema_of(&VSCHEMA.replace("\"lookup_unique\"", "\"consistent_lookup_unique\""));
    let (_, w) = insert_statements(
        &s,
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x.io'), (4, NULL)",
    );
    let [insert] = w.before.as_slice() else {
        panic!("{w:?}")
    };
    // One takeover per non-NULL value.
    let [t] = insert.takeovers.as_slice() else {
        panic!("{insert:?}")
    };
    assert_eq!(
        t.lock,
        "SELECT keyspace_id FROM main.accounts_email_idx WHERE email = 'a@x.io' FOR UPDATE"
    );
    assert_eq!(
        t.owner,
        "SELECT email FROM accounts WHERE email = 'a@x.io' FOR UPDATE"
    );
    let ksid = hex_ksid(1);
    assert_eq!(
        t.update,
        format!(
            "UPDATE main.accounts_email_idx SET keyspace_id = X'{ksid}' WHERE email = 'a@x.io'"
        )
    );
    assert_eq!(
        t.insert,
        format!(
            "INSERT INTO main.accounts_email_idx (email, keyspace_id) VALUES ('a@x.io', X'{ksid}')"
        )
    );
    let bytes = hex::decode(&ksid).unwrap_or_default();
    assert!(t.points_here(Some(&bytes)) && !t.points_here(Some(b"other")));
    // A statement that repeats a value, and INSERT IGNORE, never take over.
    let (_, w) = insert_statements(
        &s,
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x.io'), (4, 'a@x.io')",
    );
    assert!(w.before[0].takeovers.is_empty());
    let (_, w) = insert_statements(
        &s,
        "INSERT IGNORE INTO accounts (id, email) VALUES (1, 'a@x.io')",
    );
    assert!(w.before[0].takeovers.is_empty());
    // Plain lookups report a duplicate.
    let (_, w) = insert_statements(
        &schema(),
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x.io')",
    );
    assert!(w.before[0].takeovers.is_empty());
}

#[test]
fn inserts_into_an_owner_table_write_its_lookup_rows_first() {
    let s = schema();
    let (_, w) = insert_statements(
        &s,
        "INSERT INTO accounts (id, email) VALUES (1, 'a@x.io'), (4, NULL)",
    );
    assert_eq!(
        insert_sqls(&w.before),
        vec![format!(
            "INSERT INTO main.accounts_email_idx (email, keyspace_id) VALUES ('a@x.io', X'{}'), (NULL, X'{}')",
            hex_ksid(1),
            hex_ksid(4)
        )]
    );
    assert_eq!(
        w.undo,
        vec![format!(
            "DELETE FROM main.accounts_email_idx WHERE (email = 'a@x.io' AND keyspace_id = X'{}') OR (email IS NULL AND keyspace_id = X'{}')",
            hex_ksid(1),
            hex_ksid(4)
        )]
    );
    let (_, w) = insert_statements(
        &s,
        "INSERT IGNORE INTO accounts (id, email) VALUES (1, 'a')",
    );
    assert!(w.before[0]
        .sql
        .starts_with("INSERT IGNORE INTO main.accounts_email_idx"));
    assert!(w.undo.is_empty());
    // Under IGNORE each non-NULL value of a unique lookup is checked to name its own row
    // (a duplicate's row is skipped).
    let sql = "INSERT IGNORE INTO accounts (id, email) VALUES (1, 'a'), (2, NULL), (4, 'd')";
    let (_, w) = insert_statements(&s, sql);
    assert_eq!(
        w.before[0].verify,
        vec![
            (
                0,
                format!(
                    "SELECT email FROM main.accounts_email_idx WHERE email = 'a' AND keyspace_id = X'{}'",
                    hex_ksid(1)
                )
            ),
            (
                2,
                format!(
                    "SELECT email FROM main.accounts_email_idx WHERE email = 'd' AND keyspace_id = X'{}'",
                    hex_ksid(4)
                )
            ),
        ]
    );
    let Ok(Plan::Insert(mut p)) = plan(&s, sql, &PlanContext::default()) else {
        panic!("insert plan");
    };
    assert_eq!(p.drop_rows(&[0, 2].into_iter().collect()), 1);
    let shards = p.statements(&s).map(|(st, _)| st).unwrap_or_default();
    assert_eq!(shards.len(), 1, "{shards:?}");
    assert!(shards[0].1.ends_with("VALUES (2, NULL)"), "{shards:?}");
    // A lookup column left out is written as NULL, with its lookup row.
    let (statements, w) = insert_statements(&s, "INSERT INTO accounts (id) VALUES (1)");
    assert_eq!(
        statements,
        vec![(
            0,
            "INSERT INTO accounts (id, email) VALUES (1, NULL)".to_string()
        )]
    );
    assert!(w.before[0].sql.contains("(NULL, X'"));
    assert!(refused(
        "INSERT INTO accounts (id, email) VALUES (1, 'a') ON DUPLICATE KEY UPDATE email = 'b'"
    )
    .contains("lookup vindex column email"));
}

#[test]
fn updates_and_deletes_of_an_owner_table_read_its_rows_to_keep_the_lookup() {
    use crate::protocol::column::ColumnDefinition;
    use crate::protocol::constants::column_type;
    let s = schema();
    let columns = [
        ColumnDefinition::new("id", column_type::LONGLONG),
        ColumnDefinition::new("email", column_type::VAR_STRING),
    ];
    let rows: Vec<merge::Row> = vec![
        vec![Some(b"1".to_vec()), Some(b"a@x.io".to_vec())],
        vec![Some(b"4".to_vec()), None],
    ];
    let d = route("DELETE FROM accounts WHERE name = 'n'");
    let o = d.owner_rows.clone().unwrap_or_else(|| panic!("{d:?}"));
    assert_eq!(o.select, "SELECT id, email FROM accounts WHERE name = 'n'");
    assert_eq!(o.read(false), o.select);
    assert_eq!(
        o.read(true),
        "SELECT id, email FROM accounts WHERE name = 'n' FOR UPDATE"
    );
    assert!(
        matches!(
            plan(&s, &o.read(true), &PlanContext::default()),
            Ok(Plan::Route(_))
        ),
        "the locking read scatters like the plain one"
    );
    let w = o.writes(&s, &columns, &rows).unwrap_or_default();
    assert!(w.before.is_empty());
    assert_eq!(
        w.after,
        vec![format!(
            "DELETE FROM main.accounts_email_idx WHERE (email = 'a@x.io' AND keyspace_id = X'{}') OR (email IS NULL AND keyspace_id = X'{}')",
            hex_ksid(1),
            hex_ksid(4)
        )]
    );
    let u = route("UPDATE accounts SET email = 'a@x.io', name = 'm' WHERE id IN (1, 4)");
    let o = u.owner_rows.clone().unwrap_or_else(|| panic!("{u:?}"));
    let w = o.writes(&s, &columns, &rows).unwrap_or_default();
    // Row 1 keeps its value: nothing to do for it.
    assert_eq!(
        insert_sqls(&w.before),
        vec![format!(
            "INSERT INTO main.accounts_email_idx (email, keyspace_id) VALUES ('a@x.io', X'{}')",
            hex_ksid(4)
        )]
    );
    assert_eq!(
        w.after,
        vec![format!(
            "DELETE FROM main.accounts_email_idx WHERE (email IS NULL AND keyspace_id = X'{}')",
            hex_ksid(4)
        )]
    );
    // An expression of the row's own columns is read with the rows, after the lookup
    // column: each row's new value is its third cell.
    let u = route("UPDATE accounts SET email = concat(email, 'x') WHERE id IN (1, 4)");
    let o = u.owner_rows.clone().unwrap_or_else(|| panic!("{u:?}"));
    assert_eq!(
        o.select,
        "SELECT id, email, concat(email, 'x') FROM accounts WHERE id IN (1, 4)"
    );
    let mut read = columns.to_vec();
    read.push(ColumnDefinition::new("new", column_type::VAR_STRING));
    let rows_read: Vec<merge::Row> = vec![
        vec![
            Some(b"1".to_vec()),
            Some(b"a@x.io".to_vec()),
            Some(b"a@x.iox".to_vec()),
        ],
        vec![Some(b"4".to_vec()), None, None],
    ];
    let w = o.writes(&s, &read, &rows_read).unwrap_or_default();
    assert_eq!(
        insert_sqls(&w.before),
        vec![format!(
            "INSERT INTO main.accounts_email_idx (email, keyspace_id) VALUES ('a@x.iox', X'{}')",
            hex_ksid(1)
        )]
    );
    // Row 4 stays NULL: only row 1's old row goes.
    assert_eq!(
        w.after,
        vec![format!(
            "DELETE FROM main.accounts_email_idx WHERE (email = 'a@x.io' AND keyspace_id = X'{}')",
            hex_ksid(1)
        )]
    );
    for (sql, why) in [
        (
            "UPDATE accounts SET email = concat(email, rand())",
            "can change",
        ),
        (
            "UPDATE accounts SET name = 'n', email = name",
            "sets before it",
        ),
        (
            "UPDATE accounts SET email = (SELECT MAX(name) FROM accounts)",
            "subquery",
        ),
    ] {
        assert!(refused(sql).contains(why), "{sql}: {}", refused(sql));
    }
    // A column the UPDATE sets after the lookup column is still read as it was.
    assert!(
        route("UPDATE accounts SET email = name, name = 'n' WHERE id = 1")
            .owner_rows
            .is_some()
    );
    assert!(refused("DELETE FROM accounts WHERE id > 3 LIMIT 2").contains("LIMIT"));
    assert!(route("UPDATE accounts SET name = 'x' WHERE id = 1")
        .owner_rows
        .is_none());
}

#[test]
fn lookup_hash_stores_the_unhashed_id() {
    let json = r#"{"keyspaces": {"user": {"sharded": true,
      "vindexes": {"hash": {"type": "hash"},
                   "name_idx": {"type": "lookup_hash_unique", "owner": "customers",
                                "params": {"table": "main.name_idx", "from": "name", "to": "id"}}},
      "tables": {"customers": {"column_vindexes": [{"column": "id", "name": "hash"},
                                                   {"column": "name", "name": "name_idx"}]}}},
      "main": {"tables": {"name_idx": {}}}}}"#;
    let vschema = SrvVSchema::from_json(json).unwrap_or_default();
    let mut shards = BTreeMap::new();
    shards.insert(
        "user".to_string(),
        vec!["-80".to_string(), "80-".to_string()],
    );
    shards.insert("main".to_string(), vec!["0".to_string()]);
    let s = match RoutingSchema::build(vschema, &shards, &NoFiles) {
        Ok(s) => s,
        Err(e) => panic!("a VSchema with a lookup vindex loads: {e}"),
    };
    let ctx = PlanContext::default();
    assert_eq!(
        insert_sqls(
            &insert_statements(&s, "INSERT INTO customers (id, name) VALUES (4, 'x')")
                .1
                .before
        ),
        vec!["INSERT INTO main.name_idx (name, id) VALUES ('x', 4)".to_string()]
    );
    let Ok(Plan::Route(r)) = plan(&s, "SELECT id FROM customers WHERE name = 'x'", &ctx) else {
        panic!("not a route");
    };
    let step = r.lookup.unwrap_or_else(|| panic!("no lookup step"));
    assert_eq!(
        step.query,
        "SELECT id FROM main.name_idx WHERE name IN ('x')"
    );
    // hash(4) = d2fd8867d50d2dfe: the second shard.
    assert_eq!(
        step.shards(&s, &[vec![Some(b"4".to_vec())]]),
        Ok([1].into_iter().collect())
    );
}

#[test]
fn the_mod_operator_is_read_as_percent() {
    let s = schema();
    let ctx = PlanContext::default();
    let Ok(Plan::Route(r)) = plan(
        &s,
        "SELECT id, qty MOD 3, MOD(qty, 2) FROM orders WHERE customer_id = 10",
        &ctx,
    ) else {
        panic!("MOD as an operator plans");
    };
    assert_eq!(r.shards.len(), 1);
    // A scatter rewrite prints it as %.
    let Ok(Plan::Route(r)) = plan(&s, "SELECT SUM(qty mod 3) FROM orders", &ctx) else {
        panic!("scatter with MOD plans");
    };
    let sql = r.query.unwrap_or_default();
    assert!(sql.contains("qty % 3"), "{sql}");
    // A statement that does not parse either way keeps its first error.
    let bad = plan(&s, "SELECT qty MOD 3 FROM orders WHERE", &ctx);
    assert!(matches!(&bad, Err(PlanError::Syntax(_))), "{bad:?}");
}
