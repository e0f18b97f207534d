//! Planner tests over a 4-shard `user` keyspace and an unsharded `main` keyspace.

use std::collections::BTreeMap;

use super::*;
use crate::vindex::NoFiles;
use crate::vschema::SrvVSchema;

const VSCHEMA: &str = r#"{
  "keyspaces": {
    "user": {
      "sharded": true,
      "vindexes": {"hash": {"type": "hash"}},
      "tables": {
        "customers": {"column_vindexes": [{"column": "id", "name": "hash"}],
                      "auto_increment": {"column": "id", "sequence": "customer_seq"}},
        "orders": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
        "countries": {"type": "reference"}
      }
    },
    "main": {"tables": {"products": {}, "customer_seq": {"type": "sequence"}}}
  }
}"#;

pub(crate) fn schema() -> RoutingSchema {
    let vschema = SrvVSchema::from_json(VSCHEMA).unwrap_or_default();
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
}

#[test]
fn lookup_vindexes_load_reads_scatter_and_owner_writes_are_refused() {
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
    assert!(
        matches!(plan(&s, "SELECT id FROM customers WHERE name = 'x'", &ctx),
        Ok(Plan::Route(ref r)) if r.shards.len() == 2)
    );
    assert!(
        matches!(plan(&s, "SELECT id FROM customers WHERE id = 1", &ctx),
        Ok(Plan::Route(ref r)) if r.shards.len() == 1)
    );
    for dml in [
        "INSERT INTO customers (id, name) VALUES (1, 'x')",
        "UPDATE customers SET name = 'y' WHERE id = 1",
        "DELETE FROM customers WHERE id = 1",
    ] {
        assert!(
            matches!(plan(&s, dml, &ctx), Err(PlanError::Unsupported(ref m)) if m.contains("name_idx")),
            "{dml}"
        );
    }
}
