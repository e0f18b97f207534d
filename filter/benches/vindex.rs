//! Micro-benchmarks of the vindexes a point select pays for: `hash` and `xxhash` mapping
//! one value to a keyspace id, and routing that id to one of four shards; and
//! `unicode_loose_md5`, which collates text before hashing it.

// A benchmark whose set-up fails has nothing to measure: panicking is how it reports.
#![allow(clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardcar_filter::key::{parse_shards, shard_for_keyspace_id};
use shardcar_filter::vindex::{Destination, Params, Value, Vindex};

fn bench_vindexes(c: &mut Criterion) {
    let params = Params::new();
    let hash = Vindex::create("hash", "hash", &params).expect("hash vindex");
    let xxhash = Vindex::create("xxhash", "xxhash", &params).expect("xxhash vindex");
    let one_int = [Value::Int(123_456_789)];
    let one_str = [Value::varchar("user-123456789@example.com")];
    let loose = Vindex::create("unicode_loose_md5", "loose", &params).expect("loose vindex");
    let accented = [Value::varchar("Zoë Ångström-Müller")];

    c.bench_function("vindex/hash_map_one_int", |b| {
        b.iter(|| hash.map(black_box(&one_int)))
    });
    c.bench_function("vindex/xxhash_map_one_int", |b| {
        b.iter(|| xxhash.map(black_box(&one_int)))
    });
    c.bench_function("vindex/xxhash_map_one_varchar", |b| {
        b.iter(|| xxhash.map(black_box(&one_str)))
    });

    c.bench_function("vindex/unicode_loose_md5_map_one_varchar", |b| {
        b.iter(|| loose.map(black_box(&one_str)))
    });
    c.bench_function("vindex/unicode_loose_md5_map_one_accented", |b| {
        b.iter(|| loose.map(black_box(&accented)))
    });

    let shards = parse_shards(&["-40", "40-80", "80-c0", "c0-"]).expect("shards");
    c.bench_function("vindex/hash_map_and_route_4_shards", |b| {
        b.iter(|| {
            let dest = hash.map(black_box(&one_int)).expect("map");
            match &dest[0] {
                Destination::KeyspaceId(id) => {
                    shard_for_keyspace_id(&shards, id.as_bytes()).map(|s| s.name.len())
                }
                _ => Ok(0),
            }
        })
    });
}

criterion_group!(benches, bench_vindexes);
criterion_main!(benches);
