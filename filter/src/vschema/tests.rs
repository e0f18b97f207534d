//! Tests of parsing, validation and lookup against Vitess's own VSchema documents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use super::*;

const PLANNER_SCHEMA: &str = include_str!("testdata/planner_schema.json");
const CUSTOMER_SHARDED: &str = include_str!("testdata/customer_sharded.json");
const DEMO_PRODUCT: &str = include_str!("testdata/demo_product.json");
const DEMO_CUSTOMER: &str = include_str!("testdata/demo_customer.json");

/// Vitess's planner tests register test-only vindex types; declare them like Vitess does.
fn planner_test_types() -> VindexTypes {
    let lookup_no_params = VindexKind {
        required_params: &[],
        ..VindexKind::LOOKUP_NON_UNIQUE
    };
    VindexTypes::vitess()
        .with("hash_test", VindexKind::FUNCTIONAL_UNIQUE)
        .with("lookup_test", lookup_no_params)
        .with("name_lkp_test", lookup_no_params)
        .with("costly", lookup_no_params)
        .with("unq_lkp_test", VindexKind::LOOKUP_UNIQUE)
        .with(
            "multiCol_test",
            VindexKind {
                required_params: &[],
                ..VindexKind::MULTI_COLUMN
            },
        )
}

fn demo() -> SrvVSchema {
    let mut keyspaces = BTreeMap::new();
    keyspaces.insert(
        "product".to_owned(),
        Keyspace::from_json(DEMO_PRODUCT).unwrap(),
    );
    keyspaces.insert(
        "customer".to_owned(),
        Keyspace::from_json(DEMO_CUSTOMER).unwrap(),
    );
    SrvVSchema {
        keyspaces,
        ..SrvVSchema::default()
    }
}

fn keyspace_error(json: &str) -> String {
    let ks = Keyspace::from_json(json).unwrap();
    ks.validate("ks", &VindexTypes::vitess())
        .unwrap_err()
        .to_string()
}

fn srv_error(json: &str) -> String {
    let srv = SrvVSchema::from_json(json).unwrap();
    srv.validate(&VindexTypes::vitess())
        .unwrap_err()
        .to_string()
}

#[test]
fn demo_customer_keyspace_parses_to_every_field() {
    let ks = Keyspace::from_json(DEMO_CUSTOMER).unwrap();
    assert!(ks.sharded);
    assert_eq!(ks.vindexes.len(), 5);
    let lookup = &ks.vindexes["corder_keyspace_idx"];
    assert_eq!(lookup.type_, "consistent_lookup_unique");
    assert_eq!(lookup.owner, "corder");
    assert_eq!(lookup.params["table"], "product.corder_keyspace_idx");
    assert_eq!(lookup.params["from"], "corder_id");
    assert_eq!(lookup.params["to"], "keyspace_id");
    let corder = &ks.tables["corder"];
    assert_eq!(corder.type_, TableType::Normal);
    assert_eq!(corder.column_vindexes.len(), 3);
    assert_eq!(
        corder.column_vindexes[0].column.as_deref(),
        Some("customer_id")
    );
    assert_eq!(corder.column_vindexes[2].column, None);
    assert_eq!(corder.column_vindexes[2].columns, ["oname", "corder_id"]);
    assert_eq!(
        corder.auto_increment,
        Some(AutoIncrement {
            column: "corder_id".to_owned(),
            sequence: "product.corder_seq".to_owned(),
        })
    );
    assert_eq!(corder.primary_vindex().unwrap().name, "xxhash");
    assert_eq!(ks.foreign_key_mode, ForeignKeyMode::Unspecified);
    ks.validate("customer", &VindexTypes::vitess()).unwrap();
}

#[test]
fn demo_product_keyspace_parses_sequences_of_an_unsharded_keyspace() {
    let ks = Keyspace::from_json(DEMO_PRODUCT).unwrap();
    assert!(!ks.sharded);
    assert_eq!(ks.tables["customer_seq"].type_, TableType::Sequence);
    assert_eq!(ks.tables["product"], Table::default());
    ks.validate("product", &VindexTypes::vitess()).unwrap();
}

#[test]
fn demo_srv_vschema_is_valid_and_resolves_qualified_sequences() {
    let srv = demo();
    assert_eq!(srv.validate_all(&VindexTypes::vitess()), vec![]);
    let corder = srv.find_table("corder", None).unwrap();
    assert_eq!(corder.keyspace, "customer");
    assert!(corder.sharded());
    let primary = corder.primary_vindex().unwrap();
    assert_eq!(primary.name, "xxhash");
    assert_eq!(primary.columns, ["customer_id"]);
    assert_eq!(primary.vindex.type_, "xxhash");
    let seq = srv.find_table("product.customer_seq", None).unwrap();
    assert_eq!(seq.table_type(), TableType::Sequence);
    assert!(!seq.sharded());
    assert_eq!(seq.primary_vindex(), None);
}

#[test]
fn local_example_customer_keyspace_is_valid_alone_but_needs_its_sequences_elsewhere() {
    let ks = Keyspace::from_json(CUSTOMER_SHARDED).unwrap();
    assert_eq!(ks.vindexes["hash"].type_, "xxhash");
    ks.validate("customer", &VindexTypes::vitess()).unwrap();
    let mut srv = SrvVSchema::default();
    srv.keyspaces.insert("customer".to_owned(), ks);
    assert_eq!(
        srv.validate(&VindexTypes::vitess()).unwrap_err().to_string(),
        "keyspace customer: table corder: cannot resolve sequence order_seq: table order_seq not found"
    );
    let commerce = Keyspace::from_json(
        r#"{"tables": {"customer_seq": {"type": "sequence"}, "order_seq": {"type": "sequence"}}}"#,
    )
    .unwrap();
    srv.keyspaces.insert("commerce".to_owned(), commerce);
    srv.validate(&VindexTypes::vitess()).unwrap();
}

#[test]
fn planner_schema_parses_proto_and_camel_names_in_one_file() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    assert_eq!(srv.keyspaces.len(), 7);
    assert_eq!(srv.routing_rules.rules.len(), 8);
    assert_eq!(srv.routing_rules.rules[6].to_tables, Vec::<String>::new());
    let t1 = &srv.keyspaces["zlookup_unique"].tables["t1"];
    assert_eq!(t1.column_vindexes.len(), 3, "columnVindexes spelling");
    let user = &srv.keyspaces["user"];
    assert_eq!(
        user.tables["user"].columns[0].type_.as_deref(),
        Some("INT16")
    );
    assert_eq!(user.tables["user"].columns[1].type_, None);
    assert!(user.tables["authoritative"].column_list_authoritative);
    assert_eq!(user.tables["pin_test"].pinned.as_deref(), Some("80"));
    assert_eq!(user.tables["ref"].type_, TableType::Reference);
    assert_eq!(
        user.tables["ref_with_source"].source.as_deref(),
        Some("main.source_of_ref")
    );
    // An enum name protojson does not know (the old FK_MANAGED) is discarded, not an error.
    assert_eq!(
        srv.keyspaces["sharded_fk_allow"].foreign_key_mode,
        ForeignKeyMode::Unspecified
    );
}

#[test]
fn planner_schema_validation_rejects_only_its_unqualified_reference_source() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let errors = srv.validate_all(&planner_test_types());
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "keyspace user: invalid source \"global_ref\" for reference table: global_ref; \
          invalid table name: global_ref, it must be of the qualified form \
          <keyspace_name>.<table_name> (dots are not allowed in either name)"
        ]
    );
}

#[test]
fn planner_schema_without_test_types_names_the_unknown_vindex_type() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let err = srv.validate(&VindexTypes::vitess()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keyspace second_user: vindex hash_dup: vindexType \"hash_test\" not found"
    );
    assert_eq!(err.keyspace(), Some("second_user"));
}

#[test]
fn find_table_applies_routing_rules_before_keyspaces() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let t = srv.find_table("route1", None).unwrap();
    assert_eq!((t.keyspace, t.name), ("user", "user"));
    let t = srv.find_table("second_user.user", None).unwrap();
    assert_eq!((t.keyspace, t.name), ("user", "user"));
    let t = srv.find_table("user", Some("second_user")).unwrap();
    assert_eq!((t.keyspace, t.name), ("user", "user"));
    let t = srv.find_table("user.rerouted_ref", None).unwrap();
    assert_eq!((t.keyspace, t.name), ("user", "ref"));
    let t = srv.find_table("route2", None).unwrap();
    assert_eq!((t.keyspace, t.name), ("main", "unsharded"));
}

#[test]
fn find_table_reports_disabled_and_broken_routing_rules() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    assert_eq!(
        srv.find_table("disabled", None).unwrap_err().to_string(),
        "table disabled has been disabled"
    );
    assert_eq!(
        srv.find_table("bad_table", None).unwrap_err().to_string(),
        "routing rule bad_table: Unknown database 'noks' in vschema"
    );
}

#[test]
fn routing_rules_with_a_tablet_type_apply_only_to_that_tablet_type() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let t = srv
        .find_routed_table(None, "primary_redirect", TabletType::Primary)
        .unwrap();
    assert_eq!((t.keyspace, t.name), ("user", "user"));
    assert_eq!(
        srv.find_routed_table(None, "primary_redirect", TabletType::Replica)
            .unwrap_err(),
        FindTableError::NotFound {
            table: "primary_redirect".to_owned()
        }
    );
}

#[test]
fn unqualified_names_resolve_through_global_routing() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let t = srv.find_table("unsharded", None).unwrap();
    assert_eq!(t.keyspace, "main");
    assert!(t.table.is_some());
    // A reference table yields to its own source in another keyspace.
    let t = srv.find_table("ambiguous_ref_with_source", None).unwrap();
    assert_eq!(t.keyspace, "main");
    let t = srv.find_table("music", None).unwrap();
    assert_eq!(t.keyspace, "user");
    assert_eq!(t.primary_vindex().unwrap().name, "user_index");
    assert_eq!(
        srv.find_table("nowhere", None).unwrap_err().to_string(),
        "table nowhere not found"
    );
    let t = srv.find_table("dual", None).unwrap();
    assert_eq!((t.keyspace, t.table_type()), ("main", TableType::Reference));
}

#[test]
fn qualified_names_serve_undeclared_tables_only_from_unsharded_keyspaces() {
    let srv = SrvVSchema::from_json(PLANNER_SCHEMA).unwrap();
    let t = srv.find_table("main.not_declared", None).unwrap();
    assert_eq!(
        (t.keyspace, t.name, t.table),
        ("main", "not_declared", None)
    );
    assert_eq!(
        srv.find_table("user.not_declared", None).unwrap_err(),
        FindTableError::NotFound {
            table: "not_declared".to_owned()
        }
    );
    assert_eq!(
        srv.find_table("noks.t", None).unwrap_err().to_string(),
        "Unknown database 'noks' in vschema"
    );
    assert_eq!(srv.is_sharded("user"), Some(true));
    assert_eq!(srv.is_sharded("main"), Some(false));
    assert_eq!(srv.is_sharded("noks"), None);
}

#[test]
fn a_table_in_two_keyspaces_is_ambiguous_unless_one_requires_explicit_routing() {
    let json = r#"{"keyspaces": {
        "a": {"tables": {"t": {}}},
        "b": {"tables": {"t": {}}},
        "c": {"requireExplicitRouting": true, "tables": {"u": {}, "t": {}}},
        "d": {"tables": {"u": {}}}
    }}"#;
    let srv = SrvVSchema::from_json(json).unwrap();
    assert_eq!(
        srv.find_table("t", None).unwrap_err().to_string(),
        "ambiguous table reference: t"
    );
    assert_eq!(srv.find_table("a.t", None).unwrap().keyspace, "a");
    assert_eq!(srv.find_table("t", Some("b")).unwrap().keyspace, "b");
    assert_eq!(srv.find_table("u", None).unwrap().keyspace, "d");
    assert_eq!(srv.find_table("c.u", None).unwrap().keyspace, "c");
}

#[test]
fn a_single_unsharded_keyspace_serves_every_unqualified_name() {
    let srv = SrvVSchema::from_json(r#"{"keyspaces": {"main": {}}}"#).unwrap();
    assert_eq!(srv.find_table("anything", None).unwrap().keyspace, "main");
}

#[test]
fn a_number_as_a_vindex_param_is_an_error_naming_keyspace_vindex_and_param() {
    let json = r#"{"keyspaces": {"user": {"sharded": true, "vindexes": {
        "lkp": {"type": "lookup", "params": {"table": "t", "from": "c", "to": 5}}}}}}"#;
    let err = SrvVSchema::from_json(json).unwrap_err();
    let VSchemaError::Json { message, line, .. } = &err else {
        panic!("not a JSON error: {err}");
    };
    assert_eq!(
        message,
        "keyspace user: vindex lkp: param to must be a string, got number 5"
    );
    assert_eq!(*line, 2);
    let err = Keyspace::from_json(r#"{"vindexes": {"v": {"params": {"x": true}}}}"#).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("vindex v: param x must be a string, got boolean true"),
        "{err}"
    );
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let json = r#"{"keyspaces": {"ks": {"sharded": true, "extra": {"a": [1]},
        "vindexes": {"h": {"type": "hash", "what": 1}},
        "tables": {"t": {"column_vindexes": [{"column": "id", "name": "h", "x": null}],
                         "columns": [{"name": "id", "type": "INT64", "zzz": 2}],
                         "future": "field"}}}},
        "mirror_rules": {"rules": [{"from_table": "a", "to_table": "b", "percent": 50}]},
        "unknown": 1}"#;
    let srv = SrvVSchema::from_json(json).unwrap();
    let ks = &srv.keyspaces["ks"];
    assert_eq!(ks.tables["t"].columns[0].type_.as_deref(), Some("INT64"));
    assert_eq!(srv.mirror_rules.rules[0].percent, 50.0);
    srv.validate(&VindexTypes::vitess()).unwrap();
}

#[test]
fn null_means_the_default_for_every_field() {
    let json = r#"{"sharded": null, "vindexes": null, "require_explicit_routing": null,
        "foreign_key_mode": null, "multi_tenant_spec": null,
        "tables": {"t": {"type": null, "column_vindexes": null, "auto_increment": null,
                         "columns": [{"name": "c", "type": null, "size": null, "nullable": null}],
                         "pinned": null, "source": null}}}"#;
    let ks = Keyspace::from_json(json).unwrap();
    assert!(!ks.sharded);
    assert_eq!(ks.tables["t"].type_, TableType::Normal);
    assert_eq!(ks.tables["t"].columns[0].nullable, None);
    assert_eq!(ks.tables["t"].columns[0].size, 0);
}

#[test]
fn camel_case_names_parse_like_proto_names() {
    let camel = r#"{"sharded": true, "requireExplicitRouting": true, "foreignKeyMode": "managed",
        "multiTenantSpec": {"tenantIdColumnName": "tenant_id", "tenantIdColumnType": "INT64"},
        "vindexes": {"h": {"type": "hash"}},
        "tables": {"t": {"columnVindexes": [{"column": "id", "name": "h"}],
            "autoIncrement": {"column": "id", "sequence": "s.seq"},
            "columns": [{"name": "x", "collationName": "utf8mb4_bin", "size": "10", "nullable": true}],
            "columnListAuthoritative": true}}}"#;
    let proto = r#"{"sharded": true, "require_explicit_routing": true, "foreign_key_mode": 3,
        "multi_tenant_spec": {"tenant_id_column_name": "tenant_id", "tenant_id_column_type": "INT64"},
        "vindexes": {"h": {"type": "hash"}},
        "tables": {"t": {"column_vindexes": [{"column": "id", "name": "h"}],
            "auto_increment": {"column": "id", "sequence": "s.seq"},
            "columns": [{"name": "x", "collation_name": "utf8mb4_bin", "size": 10, "nullable": true}],
            "column_list_authoritative": true}}}"#;
    let a = Keyspace::from_json(camel).unwrap();
    let b = Keyspace::from_json(proto).unwrap();
    assert_eq!(a, b);
    assert!(a.require_explicit_routing);
    assert_eq!(a.foreign_key_mode, ForeignKeyMode::Managed);
    assert_eq!(a.tables["t"].columns[0].size, 10);
    assert_eq!(a.tables["t"].columns[0].nullable, Some(true));
}

#[test]
fn srv_vschema_parses_every_rule_set_in_both_spellings() {
    let json = r#"{"routingRules": {"rules": [{"fromTable": "t", "toTables": ["ks.t"]}]},
        "shardRoutingRules": {"rules": [{"fromKeyspace": "a", "toKeyspace": "b", "shard": "-80"}]},
        "keyspace_routing_rules": {"rules": [{"from_keyspace": "a", "to_keyspace": "b"}]},
        "keyspaces": {"ks": {}}}"#;
    let srv = SrvVSchema::from_json(json).unwrap();
    assert_eq!(srv.routing_rules.rules[0].to_tables, ["ks.t"]);
    assert_eq!(srv.shard_routing_rules.rules[0].shard, "-80");
    assert_eq!(srv.keyspace_routing_rules.rules[0].to_keyspace, "b");
}

#[test]
fn giving_a_field_in_both_spellings_is_an_error() {
    let err =
        Keyspace::from_json(r#"{"tables": {"t": {"column_vindexes": [], "columnVindexes": []}}}"#)
            .unwrap_err();
    assert!(
        err.to_string().contains("table t: duplicate field"),
        "{err}"
    );
}

#[test]
fn malformed_json_reports_its_position() {
    let err = Keyspace::from_json("{\n  \"sharded\": tru }").unwrap_err();
    let VSchemaError::Json { line, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(line, 2);
    let err = Keyspace::from_json(r#"{"sharded": "yes"}"#).unwrap_err();
    assert!(err.to_string().contains("expected a boolean"), "{err}");
}

#[test]
fn primary_vindex_must_be_unique() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"stln": {"type": "lookup", "params": {"table": "l", "from": "c", "to": "k"}}},
                "tables": {"t1": {"column_vindexes": [{"column": "c1", "name": "stln"}]}}}"#
        ),
        "keyspace ks: primary vindex stln is not Unique for table t1"
    );
}

#[test]
fn primary_vindex_cannot_be_owned_by_its_table() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"stlu": {"type": "lookup_unique", "owner": "t1", "params": {"table": "l", "from": "c", "to": "k"}}},
                "tables": {"t1": {"column_vindexes": [{"column": "c1", "name": "stlu"}]}}}"#
        ),
        "keyspace ks: primary vindex stlu cannot be owned for table t1"
    );
}

#[test]
fn a_column_vindex_naming_a_missing_vindex_is_rejected() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "tables": {"users": {"column_vindexes": [{"column": "user_id", "name": "hash_x"}]}}}"#
        ),
        "keyspace ks: table users: column vindex user_id: vindex hash_x not found"
    );
}

#[test]
fn column_and_columns_are_exclusive_and_one_is_required() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"h": {"type": "hash"}},
                "tables": {"t": {"column_vindexes": [{"column": "a", "columns": ["b"], "name": "h"}]}}}"#
        ),
        "keyspace ks: can't use column and columns at the same time in vindex (h) and table (t)"
    );
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"h": {"type": "hash"}},
                "tables": {"t": {"column_vindexes": [{"name": "h"}]}}}"#
        ),
        "keyspace ks: must specify at least one column for vindex (h) and table (t)"
    );
}

#[test]
fn a_multi_column_vindex_must_be_primary() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"h": {"type": "hash"}, "mc": {"type": "multicol", "params": {"column_count": "2"}}},
                "tables": {"t": {"column_vindexes": [{"column": "a", "name": "h"}, {"columns": ["a", "b"], "name": "mc"}]}}}"#
        ),
        "keyspace ks: multi-column vindex mc should be a primary vindex for table t"
    );
}

#[test]
fn unknown_vindex_types_and_missing_lookup_params_are_rejected() {
    assert_eq!(
        keyspace_error(r#"{"sharded": true, "vindexes": {"v": {"type": "hashh"}}}"#),
        "keyspace ks: vindex v: vindexType \"hashh\" not found"
    );
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"v": {"type": "lookup_hash", "params": {"table": "l", "from": "c"}}}}"#
        ),
        "keyspace ks: vindex v: lookup_hash vindex requires param to"
    );
}

#[test]
fn a_lookup_owner_must_be_a_table_of_the_keyspace() {
    assert_eq!(
        keyspace_error(
            r#"{"sharded": true, "vindexes": {"v": {"type": "lookup", "owner": "ghost", "params": {"table": "l", "from": "c", "to": "k"}}}}"#
        ),
        "keyspace ks: vindex v: owner table ghost not found"
    );
}

#[test]
fn an_unsharded_keyspace_ignores_vindexes() {
    let ks = Keyspace::from_json(
        r#"{"vindexes": {"v": {"type": "nonsense"}},
            "tables": {"t": {"column_vindexes": [{"column": "a", "name": "missing"}]}}}"#,
    )
    .unwrap();
    ks.validate("ks", &VindexTypes::vitess()).unwrap();
}

#[test]
fn table_types_pins_and_primary_vindexes_are_checked() {
    assert_eq!(
        keyspace_error(r#"{"tables": {"t": {"type": "Sequence"}}}"#),
        "keyspace ks: table t: unidentified table type Sequence"
    );
    assert_eq!(
        keyspace_error(r#"{"sharded": true, "tables": {"seq": {"type": "sequence"}}}"#),
        "keyspace ks: sequence table has to be in an unsharded keyspace or must be pinned: seq"
    );
    let pinned = Keyspace::from_json(
        r#"{"sharded": true, "tables": {"seq": {"type": "sequence", "pinned": "80"}}}"#,
    )
    .unwrap();
    pinned.validate("ks", &VindexTypes::vitess()).unwrap();
    assert!(
        keyspace_error(r#"{"sharded": true, "tables": {"t": {"pinned": "8g"}}}"#)
            .starts_with("keyspace ks: table t: could not decode the keyspace id for pin \"8g\"")
    );
    assert_eq!(
        keyspace_error(r#"{"sharded": true, "tables": {"t": {}}}"#),
        "keyspace ks: missing primary col vindex for table: t"
    );
}

#[test]
fn duplicate_column_names_are_rejected_case_insensitively() {
    assert_eq!(
        keyspace_error(r#"{"tables": {"t": {"columns": [{"name": "a"}, {"name": "A"}]}}}"#),
        "keyspace ks: duplicate column name 'A' for table: t"
    );
}

#[test]
fn reference_sources_must_name_a_plain_table_of_another_keyspace() {
    let base = |source: &str| {
        format!(
            r#"{{"keyspaces": {{"main": {{"tables": {{"src": {{}}, "seq": {{"type": "sequence"}}, "r": {{"type": "reference", "source": "other.x"}}}}}},
                "user": {{"sharded": true, "tables": {{"ref": {{"type": "reference", "source": "{source}"}}}}}}}}}}"#
        )
    };
    srv_error_ok(&base("main.src"));
    let srv_error = |json: &str| user_error(json);
    assert_eq!(
        srv_error(&base("user.src")),
        "keyspace user: invalid source \"user.src\" for reference table: ref; source \"user.src\" may not reference a table in the same keyspace as table: ref"
    );
    assert_eq!(
        srv_error(&base("nope.src")),
        "keyspace user: invalid source \"nope.src\" for reference table: ref; source \"nope.src\" references a non-existent keyspace \"nope\""
    );
    assert!(srv_error(&base("main.gone")).contains("is not present in the VSchema of keyspace"));
    assert!(srv_error(&base("main.seq")).contains("may not reference a table of type \"sequence\""));
    assert!(srv_error(&base("main.r")).contains("reference chaining is not allowed"));
}

/// The first error about keyspace `user`.
fn user_error(json: &str) -> String {
    let srv = SrvVSchema::from_json(json).unwrap();
    let errors = srv.validate_all(&VindexTypes::vitess());
    let first = errors.iter().find(|e| e.keyspace() == Some("user"));
    first.map(ToString::to_string).unwrap_or_default()
}

fn srv_error_ok(json: &str) {
    let srv = SrvVSchema::from_json(json).unwrap();
    let errors = srv.validate_all(&VindexTypes::vitess());
    // main.r's own source is dangling; only keyspace user is under test here.
    assert!(
        errors.iter().all(|e| e.keyspace() == Some("main")),
        "{errors:?}"
    );
}

#[test]
fn routing_rules_must_have_one_qualified_target_and_unique_sources() {
    let rules = |rules: &str| {
        format!(r#"{{"routing_rules": {{"rules": [{rules}]}}, "keyspaces": {{"ks": {{}}}}}}"#)
    };
    assert_eq!(
        srv_error(&rules(
            r#"{"from_table": "t", "to_tables": ["a.t", "b.t"]}"#
        )),
        "routing rule t: table t has more than one target: [\"a.t\", \"b.t\"]"
    );
    assert_eq!(
        srv_error(&rules(r#"{"from_table": "t", "to_tables": ["t"]}"#)),
        "routing rule t: invalid table name: t, it must be of the qualified form <keyspace_name>.<table_name> (dots are not allowed in either name)"
    );
    assert_eq!(
        srv_error(&rules(
            r#"{"from_table": "t", "to_tables": ["ks.t@replica"]}"#
        )),
        "routing rule t: target ks.t@replica must not carry a tablet type"
    );
    assert_eq!(
        srv_error(&rules(
            r#"{"from_table": "t", "to_tables": ["ks.t"]}, {"from_table": "t", "to_tables": ["ks.u"]}"#
        )),
        "routing rule t: duplicate rule for entry t"
    );
    assert_eq!(
        srv_error(&rules(r#"{"from_table": "a.b.c", "to_tables": []}"#)),
        "routing rule a.b.c: invalid from_table: more than one '.'"
    );
    assert_eq!(
        srv_error(&rules(r#"{"from_table": "t@master", "to_tables": []}"#)),
        "routing rule t@master: unknown tablet type @master (expected @primary, @replica or @rdonly)"
    );
}

#[test]
fn sequences_resolve_qualified_or_through_global_routing() {
    let json = |seq: &str| {
        format!(
            r#"{{"keyspaces": {{"u1": {{"tables": {{"seq": {{"type": "sequence"}}}}}},
                "u2": {{"tables": {{"seq": {{"type": "sequence"}}}}}},
                "s": {{"sharded": true, "vindexes": {{"h": {{"type": "hash"}}}},
                      "tables": {{"t": {{"column_vindexes": [{{"column": "id", "name": "h"}}],
                                       "auto_increment": {{"column": "id", "sequence": "{seq}"}}}}}}}}}}}}"#
        )
    };
    SrvVSchema::from_json(&json("u1.seq"))
        .unwrap()
        .validate(&VindexTypes::vitess())
        .unwrap();
    assert_eq!(
        srv_error(&json("seq")),
        "keyspace s: table t: cannot resolve sequence seq: ambiguous table reference: seq"
    );
    assert_eq!(
        srv_error(&json("nope.seq")),
        "keyspace s: table t: cannot resolve sequence nope.seq: Unknown database 'nope' in vschema"
    );
}
