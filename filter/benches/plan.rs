//! Micro-benchmarks of planning a sysbench-style point select on a 4-shard keyspace: a
//! plan-cache hit (lex, look up, map the vindex literal) against a cold plan (full
//! sqlparser parse and routing), plus a scatter ORDER BY ... LIMIT plan.

// A benchmark whose set-up fails has nothing to measure: panicking is how it reports.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardcar_filter::plan::cache::{self, PlanCache};
use shardcar_filter::plan::{plan, PlanContext, RoutingSchema};
use shardcar_filter::vindex::NoFiles;
use shardcar_filter::vschema::SrvVSchema;

const VSCHEMA: &str = r#"{"keyspaces": {"sbtest": {"sharded": true,
  "vindexes": {"hash": {"type": "hash"}},
  "tables": {"sbtest1": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}}}"#;

fn bench_plans(c: &mut Criterion) {
    let vschema = SrvVSchema::from_json(VSCHEMA).expect("vschema");
    let mut shards = BTreeMap::new();
    shards.insert(
        "sbtest".to_string(),
        ["-40", "40-80", "80-c0", "c0-"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let schema = RoutingSchema::build(vschema, &shards, &NoFiles).expect("schema");
    let ctx = PlanContext {
        default_keyspace: Some("sbtest"),
    };
    let point = "SELECT c FROM sbtest1 WHERE id=5012";

    c.bench_function("plan/point_select_cold", |b| {
        b.iter(|| plan(&schema, black_box(point), &ctx).expect("plan"))
    });

    let mut cache = PlanCache::new(1000);
    let (key, _) = cache::key(ctx.default_keyspace, point).expect("key");
    let template = cache::template(&schema, &key, &ctx);
    assert!(template.is_some());
    cache.insert(key, template);
    c.bench_function("plan/point_select_cache_hit", |b| {
        b.iter(|| {
            let (key, literals) = cache::key(ctx.default_keyspace, black_box(point)).expect("key");
            let t = cache.get(&key).and_then(Option::as_ref).expect("hit");
            t.route(&schema, &literals).expect("route")
        })
    });

    let scatter = "SELECT id, k, c FROM sbtest1 WHERE k > 100 ORDER BY c, id LIMIT 10";
    c.bench_function("plan/scatter_order_by_limit_cold", |b| {
        b.iter(|| plan(&schema, black_box(scatter), &ctx).expect("plan"))
    });
}

criterion_group!(benches, bench_plans);
criterion_main!(benches);
