//! Micro-benchmarks of the result-set codec: decoding a 1,000-row, 5-column result set
//! as text and as binary rows, encoding it, decoding one column definition, and the
//! packet assembler splitting 64 KiB of small packets. Each case is small so the whole
//! suite runs quickly on a 2-core CI machine.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardcar_filter::protocol::column::ColumnDefinition;
use shardcar_filter::protocol::constants::{capabilities, column_type, status};
use shardcar_filter::protocol::packet::{write_packet, PacketAssembler};
use shardcar_filter::protocol::resultset::{
    decode_text_row_into, encode_result_set, Event, ResultSetDecoder, RowFormat,
};
use shardcar_filter::protocol::value::Value;

const CAPS: u32 = capabilities::PROTOCOL_41 | capabilities::TRANSACTIONS;
const ROWS: usize = 1000;

fn columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::new("id", column_type::LONGLONG),
        ColumnDefinition::new("k", column_type::LONG),
        ColumnDefinition::new("c", column_type::VAR_STRING),
        ColumnDefinition::new("pad", column_type::VAR_STRING),
        ColumnDefinition::new("at", column_type::DATETIME),
    ]
}

/// Rows shaped like sysbench's `sbtest` table plus a timestamp.
fn rows() -> Vec<Vec<Value>> {
    (0..ROWS)
        .map(|i| {
            vec![
                Value::Int(i as i64),
                Value::Int((i * 7919 % 100_000) as i64),
                Value::Bytes(format!("{:011}-{:011}-{:011}", i, i * 3, i * 7).into_bytes()),
                if i % 10 == 0 {
                    Value::Null
                } else {
                    Value::Bytes(format!("{:011}-{:011}", i * 11, i * 13).into_bytes())
                },
                Value::DateTime {
                    year: 2024,
                    month: 1 + (i % 12) as u8,
                    day: 1 + (i % 28) as u8,
                    hour: (i % 24) as u8,
                    minute: (i % 60) as u8,
                    second: (i % 60) as u8,
                    micros: 0,
                },
            ]
        })
        .collect()
}

/// The logical payloads of an encoded result set.
fn payloads(format: RowFormat) -> Vec<Vec<u8>> {
    let mut wire = Vec::new();
    let mut seq = 1;
    let _ = encode_result_set(
        &mut wire,
        &mut seq,
        CAPS,
        format,
        &columns(),
        &rows(),
        status::AUTOCOMMIT,
    );
    let mut a = PacketAssembler::new(1 << 24);
    a.extend(&wire);
    let mut out = Vec::new();
    while let Ok(Some(p)) = a.next_packet() {
        out.push(p.payload);
    }
    out
}

fn decode_result_set(c: &mut Criterion) {
    let mut group = c.benchmark_group("resultset_decode_1000x5");
    group.throughput(Throughput::Elements(ROWS as u64));
    let text = payloads(RowFormat::Text);
    group.bench_function("text_cells", |b| {
        b.iter(|| {
            let mut d = ResultSetDecoder::new(CAPS, RowFormat::Text);
            let mut cells = Vec::new();
            let mut n = 0usize;
            for p in &text {
                if let Ok(Some(Event::Row(row))) = d.feed(p) {
                    if decode_text_row_into(row, 5, &mut cells).is_ok() {
                        n += cells.len();
                    }
                }
            }
            black_box(n)
        })
    });
    group.bench_function("text_values", |b| {
        b.iter(|| {
            let mut d = ResultSetDecoder::new(CAPS, RowFormat::Text);
            let mut n = 0usize;
            for p in &text {
                if let Ok(Some(Event::Row(row))) = d.feed(p) {
                    n += d.values(row).map(|v| v.len()).unwrap_or(0);
                }
            }
            black_box(n)
        })
    });
    let binary = payloads(RowFormat::Binary);
    group.bench_function("binary_values", |b| {
        b.iter(|| {
            let mut d = ResultSetDecoder::new(CAPS, RowFormat::Binary);
            let mut n = 0usize;
            for p in &binary {
                if let Ok(Some(Event::Row(row))) = d.feed(p) {
                    n += d.values(row).map(|v| v.len()).unwrap_or(0);
                }
            }
            black_box(n)
        })
    });
    group.finish();
}

fn encode_result_sets(c: &mut Criterion) {
    let mut group = c.benchmark_group("resultset_encode_1000x5");
    group.throughput(Throughput::Elements(ROWS as u64));
    let cols = columns();
    let rows = rows();
    for (name, format) in [("text", RowFormat::Text), ("binary", RowFormat::Binary)] {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(128 * 1024);
            b.iter(|| {
                out.clear();
                let mut seq = 1;
                let _ = encode_result_set(
                    &mut out,
                    &mut seq,
                    CAPS,
                    format,
                    &cols,
                    &rows,
                    status::AUTOCOMMIT,
                );
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode_column_definition(c: &mut Criterion) {
    let mut col = ColumnDefinition::new("customer_name", column_type::VAR_STRING);
    col.schema = b"commerce".to_vec();
    col.table = b"customer".to_vec();
    col.org_table = b"customer".to_vec();
    let bytes = col.encode();
    c.bench_function("column_definition_decode", |b| {
        b.iter(|| black_box(ColumnDefinition::decode(black_box(&bytes)).is_ok()))
    });
}

fn assemble_small_packets(c: &mut Criterion) {
    // 64 KiB of 60-byte payloads.
    let mut wire = Vec::new();
    let mut seq = 0u8;
    let payload = [0x42u8; 60];
    while wire.len() < 64 * 1024 {
        write_packet(&mut wire, &mut seq, &payload);
        seq = 0;
    }
    let mut group = c.benchmark_group("packet_assembler");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("split_64k_small_packets", |b| {
        b.iter(|| {
            let mut a = PacketAssembler::new(1 << 24);
            a.extend(&wire);
            let mut n = 0usize;
            while let Ok(Some(p)) = a.next_packet() {
                n += p.payload.len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = decode_result_set, encode_result_sets, decode_column_definition, assemble_small_packets
}
criterion_main!(benches);
