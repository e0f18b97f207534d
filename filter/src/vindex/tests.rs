//! Vitess's literal vectors for every vindex here, transcribed from its `*_test.go` files
//! (`go/vt/vtgate/vindexes`), plus the worked examples of VINDEXES.md. Go byte strings
//! such as `"\x16k@\xb4J\xbaK\xd6"` are written as hex.

use std::collections::BTreeMap;

use super::*;
use crate::key::{parse_shards, shard_for_keyspace_id};

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vindex(vindex_type: &str, pairs: &[(&str, &str)]) -> Vindex {
    Vindex::create(vindex_type, vindex_type, &params(pairs)).unwrap()
}

fn ksid(hex_text: &str) -> Destination {
    Destination::KeyspaceId(KeyspaceId::from_hex(hex_text).unwrap())
}

fn range(start: &str, end: &str) -> Destination {
    Destination::KeyRange(KeyRange::new(
        hex::decode(start).unwrap(),
        hex::decode(end).unwrap(),
    ))
}

fn ints(values: &[i64]) -> Vec<Value> {
    values.iter().map(|v| Value::Int(*v)).collect()
}

/// Checks `(input, want)` pairs one by one, so a failure names the input.
fn check_map(v: &Vindex, cases: &[(Value, Destination)]) -> usize {
    for (input, want) in cases {
        let got = v.map(std::slice::from_ref(input)).unwrap();
        assert_eq!(
            got,
            vec![want.clone()],
            "{} map of {input:?}",
            v.vindex_type()
        );
    }
    cases.len()
}

fn check_rows(v: &Vindex, cases: &[(Vec<Value>, Destination)]) -> usize {
    for (row, want) in cases {
        let got = v.map_rows(std::slice::from_ref(row)).unwrap();
        assert_eq!(
            got,
            vec![want.clone()],
            "{} map of {row:?}",
            v.vindex_type()
        );
    }
    cases.len()
}

// ---- hash ---------------------------------------------------------------------------

#[test]
fn hash_maps_vitess_vectors() {
    // hash_test.go TestHashMap (13 inputs).
    let v = vindex("hash", &[("Table", "t"), ("Column", "c")]);
    let n = check_map(
        &v,
        &[
            (Value::Int(1), ksid("166b40b44aba4bd6")),
            (Value::Int(2), ksid("06e7ea22ce92708f")),
            (Value::Int(3), ksid("4eb190c9a2fa169c")),
            (Value::Null, Destination::None),
            (Value::Int(4), ksid("d2fd8867d50d2dfe")),
            (Value::Int(5), ksid("70bb023c810ca87a")),
            (Value::Int(6), ksid("f098480ac4c4be71")),
            (Value::Int(0), ksid("8ca64de9c1b123a7")),
            (Value::Int(-1), ksid("355550b2150e2451")),
            (Value::Uint(u64::MAX), ksid("355550b2150e2451")),
            (Value::Int(i64::MAX), ksid("f77d48aadda1f1bb")),
            (Value::Uint(i64::MAX as u64), ksid("f77d48aadda1f1bb")),
            (Value::Int(i64::MIN), ksid("95f8a5e5dd31d900")),
        ],
    );
    assert_eq!(n, 13);
    assert_eq!(v.cost(), 1);
    assert_eq!(v.name(), "hash");
    assert!(v.is_unique() && !v.needs_lookup() && v.is_reversible());
    assert_eq!(
        v.unknown_params(),
        &["Column".to_string(), "Table".to_string()]
    );
}

#[test]
fn hash_convert_vectors_round_trip() {
    // The old hash_test.go TestConvert table (vhash / vunhash), duplicates dropped.
    let cases = [
        (1u64, "166b40b44aba4bd6"),
        (0, "8ca64de9c1b123a7"),
        (11, "aefc44491cfe474c"),
        (0x100000000000000, "0d9f279ba5d87260"),
        (0x800000000000000, "20b9e767b2fb1456"),
    ];
    for (n, want) in cases {
        assert_eq!(hex::encode(hash::vhash(n)), want, "vhash({n})");
        assert_eq!(hash::vunhash(&hex::decode(want).unwrap()).unwrap(), n);
    }
}

#[test]
fn hash_maps_text_and_bad_values_like_vitess() {
    let v = vindex("hash", &[]);
    check_map(
        &v,
        &[
            // Text goes through ToCastUint64.
            (Value::varchar("1"), ksid("166b40b44aba4bd6")),
            (Value::varchar("aa"), Destination::None),
            (Value::varchar("-1"), Destination::None),
            (Value::decimal("1.1"), Destination::None),
            (Value::hex_num("0x01").unwrap(), Destination::None),
        ],
    );
    assert_eq!(
        v.hash(&Value::varchar("aa")).unwrap_err().to_string(),
        r#"cannot parse uint64 from "aa""#
    );
}

#[test]
fn hash_reverse_maps_vitess_vectors() {
    // hash_test.go TestHashReverseMap and TestHashReverseMapNeg.
    let v = vindex("hash", &[]);
    let ksids: Vec<KeyspaceId> = [
        "166b40b44aba4bd6",
        "06e7ea22ce92708f",
        "4eb190c9a2fa169c",
        "d2fd8867d50d2dfe",
        "70bb023c810ca87a",
        "f098480ac4c4be71",
        "8ca64de9c1b123a7",
        "355550b2150e2451",
        "355550b2150e2451",
        "f77d48aadda1f1bb",
        "f77d48aadda1f1bb",
        "95f8a5e5dd31d900",
    ]
    .iter()
    .map(|h| KeyspaceId::from_hex(h).unwrap())
    .collect();
    let want: Vec<Value> = [
        1,
        2,
        3,
        4,
        5,
        6,
        0,
        u64::MAX,
        u64::MAX,
        i64::MAX as u64,
        i64::MAX as u64,
        i64::MIN as u64,
    ]
    .iter()
    .map(|n| Value::Uint(*n))
    .collect();
    assert_eq!(v.reverse_map(&ksids).unwrap(), want);
    let bad = KeyspaceId::from_hex("166b40b44aba4bd6166b40b44aba4bd6").unwrap();
    assert_eq!(
        v.reverse_map(&[bad]).unwrap_err().to_string(),
        "invalid keyspace id: 166b40b44aba4bd6166b40b44aba4bd6"
    );
}

#[test]
fn hash_worked_examples_route_to_vindexes_md_shards() {
    // VINDEXES.md §2: layout -40,40-80,80-c0,c0-.
    let v = vindex("hash", &[]);
    let shards = parse_shards(&["-40", "40-80", "80-c0", "c0-"]).unwrap();
    for (id, want_ksid, want_shard) in [
        (1, "166b40b44aba4bd6", "-40"),
        (4, "d2fd8867d50d2dfe", "c0-"),
    ] {
        let dest = v.map(&[Value::Int(id)]).unwrap();
        assert_eq!(dest, vec![ksid(want_ksid)]);
        let Destination::KeyspaceId(k) = &dest[0] else {
            panic!("not a keyspace id")
        };
        assert_eq!(
            shard_for_keyspace_id(&shards, k.as_bytes()).unwrap().name,
            want_shard
        );
        assert_eq!(dest[0].resolve(&shards).unwrap()[0].name, want_shard);
    }
}

// ---- xxhash -------------------------------------------------------------------------

#[test]
fn xxhash_maps_vitess_vectors() {
    // xxhash_test.go TestXXHashMap (10 inputs) and the Uint(1) of TestXXHashVerify.
    let v = vindex("xxhash", &[]);
    let n = check_map(
        &v,
        &[
            (Value::varchar("test1"), ksid("d01ab7e4d6978f0b")),
            (Value::varchar("test2"), ksid("87eb11714c0a0e89")),
            (
                Value::varchar("testaverylongvaluetomakesurethisworks"),
                ksid("81d8c38e0d850e6a"),
            ),
            (Value::Int(1), ksid("d46405367612b4b7")),
            (Value::Null, ksid("99e9d85137db46ef")),
            (Value::Int(-1), ksid("d8e2a6a7c8c7623d")),
            (Value::Uint(u64::MAX), ksid("477cfa8d6d8f1f8d")),
            (Value::Int(i64::MAX), ksid("b37eb01f7bffafd8")),
            (Value::Uint(i64::MAX as u64), ksid("b37eb01f7bffafd8")),
            (Value::Int(i64::MIN), ksid("102c27ddb26a609e")),
            (Value::Uint(1), ksid("d46405367612b4b7")),
        ],
    );
    assert_eq!(n, 11);
    assert_eq!(v.cost(), 1);
    assert!(!v.is_reversible());
}

#[test]
fn xxhash_hashes_decoded_hex_literals() {
    // xxhash_test.go TestXXHashVerify: x'9efa' and 0x9efa hash their decoded bytes.
    let v = vindex("xxhash", &[]);
    let want = ksid(&hex::encode(xxhash::vxxhash(&[0x9e, 0xfa])));
    check_map(
        &v,
        &[
            (Value::hex_val("x'9efa'").unwrap(), want.clone()),
            (Value::hex_num("0x9efa").unwrap(), want),
        ],
    );
}

#[test]
fn xxhash_reports_unknown_params() {
    // xxhash_test.go TestXXHashCreateVindex.
    assert!(vindex("xxhash", &[]).unknown_params().is_empty());
    assert_eq!(
        vindex("xxhash", &[("hello", "world")]).unknown_params(),
        &["hello".to_string()]
    );
}

// ---- numeric ------------------------------------------------------------------------

#[test]
fn numeric_maps_vitess_vectors() {
    // numeric_test.go TestNumericMap (9 inputs).
    let v = vindex("numeric", &[]);
    let n = check_map(
        &v,
        &[
            (Value::Int(1), ksid("0000000000000001")),
            (Value::Int(2), ksid("0000000000000002")),
            (Value::Int(3), ksid("0000000000000003")),
            (Value::decimal("1.1"), Destination::None),
            (Value::Int(4), ksid("0000000000000004")),
            (Value::Int(5), ksid("0000000000000005")),
            (Value::Int(6), ksid("0000000000000006")),
            (Value::Int(7), ksid("0000000000000007")),
            (Value::Int(8), ksid("0000000000000008")),
        ],
    );
    assert_eq!(n, 9);
    // Negative numbers have no keyspace id (VINDEXES.md §1), unlike hash.
    check_map(
        &v,
        &[
            (Value::Int(-1), Destination::None),
            (Value::varbinary(b"aa".to_vec()), Destination::None),
        ],
    );
    assert_eq!(v.cost(), 0);
}

#[test]
fn numeric_reverse_maps_vitess_vectors() {
    // numeric_test.go TestNumericReverseMap and TestNumericReverseMapBadData.
    let v = vindex("numeric", &[]);
    assert_eq!(
        v.reverse_map(&[KeyspaceId::from_hex("0000000000000001").unwrap()])
            .unwrap(),
        vec![Value::Uint(1)]
    );
    assert_eq!(
        v.reverse_map(&[KeyspaceId::new(b"aa".to_vec())])
            .unwrap_err()
            .to_string(),
        "Numeric.ReverseMap: length of keyspaceId is not 8: 2"
    );
}

// ---- reverse_bits -------------------------------------------------------------------

#[test]
fn reverse_bits_maps_vitess_vectors() {
    // reverse_bits_test.go TestReverseBitsMap (7 inputs).
    let v = vindex("reverse_bits", &[("Table", "t"), ("Column", "c")]);
    let n = check_map(
        &v,
        &[
            (Value::Int(1), ksid("8000000000000000")),
            (Value::Int(2), ksid("4000000000000000")),
            (Value::Int(3), ksid("c000000000000000")),
            (Value::Null, Destination::None),
            (Value::Int(4), ksid("2000000000000000")),
            (Value::Int(5), ksid("a000000000000000")),
            (Value::Int(6), ksid("6000000000000000")),
        ],
    );
    assert_eq!(n, 7);
    assert_eq!(v.cost(), 1);
}

#[test]
fn reverse_bits_reverse_maps_vitess_vectors() {
    // reverse_bits_test.go TestReverseBitsReverseMap and TestReverseBitsReverseMapNeg.
    let v = vindex("reverse_bits", &[]);
    assert_eq!(
        v.reverse_map(&[KeyspaceId::from_hex("8000000000000000").unwrap()])
            .unwrap(),
        vec![Value::Uint(1)]
    );
    assert_eq!(
        v.reverse_map(&[KeyspaceId::from_hex("80000000000000008000000000000000").unwrap()])
            .unwrap_err()
            .to_string(),
        "invalid keyspace id: 80000000000000008000000000000000"
    );
}

// ---- binary -------------------------------------------------------------------------

#[test]
fn binary_maps_vitess_vectors() {
    // binary_test.go TestBinaryMap (3 inputs).
    let v = vindex("binary", &[]);
    let n = check_map(
        &v,
        &[
            (Value::varchar("test1"), ksid(&hex::encode("test1"))),
            (Value::Null, ksid("")),
            (Value::varchar("test2"), ksid(&hex::encode("test2"))),
        ],
    );
    assert_eq!(n, 3);
    assert_eq!(v.cost(), 0);
    assert!(v.is_reversible());
}

#[test]
fn binary_reverse_maps_vitess_vectors() {
    // binary_test.go TestBinaryReverseMap.
    let v = vindex("binary", &[]);
    assert_eq!(
        v.reverse_map(&[KeyspaceId::from_hex("0000000000000001").unwrap()])
            .unwrap(),
        vec![Value::varbinary(vec![0, 0, 0, 0, 0, 0, 0, 1])]
    );
    assert_eq!(
        v.reverse_map(&[KeyspaceId::new(Vec::new())])
            .unwrap_err()
            .to_string(),
        "Binary.ReverseMap: keyspaceId is nil"
    );
}

// ---- binary_md5 ---------------------------------------------------------------------

#[test]
fn binary_md5_maps_vitess_vectors() {
    // binarymd5_test.go TestBinaryMD5Map (3 inputs) and TestSQLValue.
    let v = vindex("binary_md5", &[]);
    let n = check_map(
        &v,
        &[
            (
                Value::varbinary(b"Test".to_vec()),
                ksid("0cbc6611f5540bd0809a388dc95a615b"),
            ),
            (
                Value::varbinary(b"TEST".to_vec()),
                ksid("033bd94b1168d7e4f0d644c3c95e35bf"),
            ),
            (
                Value::varbinary(b"Test".to_vec()),
                ksid("0cbc6611f5540bd0809a388dc95a615b"),
            ),
            (
                Value::varchar("Test"),
                ksid("0cbc6611f5540bd0809a388dc95a615b"),
            ),
        ],
    );
    assert_eq!(n, 4);
    // md5("") for NULL (VINDEXES.md §1).
    check_map(
        &v,
        &[(Value::Null, ksid("d41d8cd98f00b204e9800998ecf8427e"))],
    );
    assert_eq!(v.cost(), 1);
}

// ---- null ---------------------------------------------------------------------------

#[test]
fn null_maps_everything_to_zero() {
    // null_test.go TestNullMap (8 inputs).
    let v = vindex("null", &[("Table", "t"), ("Column", "c")]);
    let mut inputs = ints(&[1, 2, 3, 4, 5, 6]);
    inputs.push(Value::varchar("1234567890123"));
    inputs.push(Value::Null);
    let got = v.map(&inputs).unwrap();
    assert_eq!(got, vec![ksid("00"); 8]);
    assert_eq!(v.cost(), 100);
    assert!(v.is_unique() && !v.needs_lookup());
}

// ---- multicol -----------------------------------------------------------------------

#[test]
fn multicol_maps_vitess_vectors() {
    // multicol_test.go TestMultiColMisc and TestMultiColMap (7 rows).
    let v = vindex("multicol", &[("column_count", "3")]);
    assert_eq!(v.cost(), 3);
    assert!(v.is_unique() && !v.needs_lookup() && v.is_partial() && v.is_multi_column());
    let n = check_rows(
        &v,
        &[
            (ints(&[1, 1, 1]), ksid("166b40166b40166b")),
            (ints(&[255, 1, 1]), ksid("254e88166b40166b")),
            (ints(&[256, 1, 1]), ksid("dd7c0b166b40166b")),
            (ints(&[1]), range("166b40", "166b41")),
            (ints(&[1, 1]), range("166b40166b40", "166b40166b41")),
            (
                vec![
                    Value::varbinary(b"abcd".to_vec()),
                    Value::Int(256),
                    Value::Int(256),
                ],
                Destination::None,
            ),
            (
                vec![
                    Value::Int(256),
                    Value::Int(256),
                    Value::varbinary(b"abcd".to_vec()),
                ],
                Destination::None,
            ),
        ],
    );
    assert_eq!(n, 7);
    // Too many values is Vitess's "[BUG] wrong number of column values", mapped to none.
    assert_eq!(
        v.map_rows(&[ints(&[1, 1, 1, 1])]).unwrap(),
        vec![Destination::None]
    );
    assert!(v.map(&ints(&[1])).is_err());
}

#[test]
fn multicol_splits_bytes_and_takes_column_vindexes() {
    // Default split: 3 columns → 3,3,2; 2 → 4,4; 5 → 2,2,2,1,1.
    let bytes = |pairs: &[(&str, &str)]| match vindex("multicol", pairs).kind() {
        VindexKind::MultiCol(m) => m.column_bytes().to_vec(),
        _ => unreachable!(),
    };
    assert_eq!(bytes(&[("column_count", "3")]), vec![3, 3, 2]);
    assert_eq!(bytes(&[("column_count", "2")]), vec![4, 4]);
    assert_eq!(bytes(&[("column_count", "5")]), vec![2, 2, 2, 1, 1]);
    assert_eq!(
        bytes(&[("column_count", "3"), ("column_bytes", "1,,")]),
        vec![1, 4, 3]
    );
    assert_eq!(
        bytes(&[("column_count", "3"), ("column_bytes", "1,3,4")]),
        vec![1, 3, 4]
    );

    let v = vindex(
        "multicol",
        &[
            ("column_count", "2"),
            ("column_bytes", "1,7"),
            ("column_vindex", "reverse_bits,xxhash"),
        ],
    );
    assert_eq!(v.cost(), 2);
    let xx = xxhash::vxxhash(b"test1");
    let want = format!("80{}", hex::encode(&xx[..7]));
    check_rows(
        &v,
        &[
            (vec![Value::Int(1), Value::varchar("test1")], ksid(&want)),
            (vec![Value::Int(1)], range("80", "81")),
            (vec![Value::Int(0xff)], range("ff", "")),
        ],
    );
    // A numeric column contributes its high byte: 00 for small numbers.
    let numeric_first = vindex(
        "multicol",
        &[("column_count", "2"), ("column_vindex", "numeric")],
    );
    assert_eq!(numeric_first.cost(), 1);
    check_rows(&numeric_first, &[(ints(&[5, 1]), ksid("00000000166b40b4"))]);
}

#[test]
fn multicol_param_errors_name_the_vindex_and_param() {
    let err = |pairs: &[(&str, &str)]| {
        Vindex::create("multicol", "mc", &params(pairs))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(&[]),
        "vindex mc (multicol): param column_count: number of columns not provided in the parameter 'column_count'"
    );
    assert_eq!(
        err(&[("column_count", "9")]),
        "vindex mc (multicol): param column_count: number of columns should be between 1 and 8 in the parameter 'column_count'"
    );
    assert_eq!(
        err(&[("column_count", "x")]),
        r#"vindex mc (multicol): param column_count: strconv.Atoi: parsing "x": invalid syntax"#
    );
    assert!(err(&[("column_count", "2"), ("column_bytes", "1,2,3")])
        .contains("number of column bytes provided are more than column count"));
    assert!(err(&[("column_count", "3"), ("column_bytes", "7")])
        .contains("column bytes count exceeds the keyspace id length"));
    assert!(
        err(&[("column_count", "1"), ("column_vindex", "hash,hash")])
            .contains("number of vindex function provided are more than column count")
    );
    assert!(err(&[("column_count", "1"), ("column_vindex", "null")])
        .contains("passed vindex 'null' is invalid"));
    assert!(
        err(&[("column_count", "1"), ("column_vindex", "nope")]).contains("param column_vindex")
    );
}

// ---- numeric_static_map -------------------------------------------------------------

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

#[test]
fn numeric_static_map_maps_vitess_vectors() {
    // numeric_static_map_test.go TestNumericStaticMapMap (10 inputs) with
    // testdata/numeric_static_map_test.json.
    let loader = files(&[(
        "testdata/numeric_static_map_test.json",
        "{\n\t\"1\": 1,\n\t\"3\": 2\n}\n",
    )]);
    let v = Vindex::create_with_files(
        "numeric_static_map",
        "numericStaticMap",
        &params(&[("json_path", "testdata/numeric_static_map_test.json")]),
        &loader,
    )
    .unwrap();
    assert_eq!(v.cost(), 1);
    let n = check_map(
        &v,
        &[
            (Value::Int(1), ksid("0000000000000001")),
            (Value::Int(2), ksid("0000000000000002")),
            (Value::Int(3), ksid("0000000000000002")),
            (Value::decimal("1.1"), Destination::None),
            (Value::Int(4), ksid("0000000000000004")),
            (Value::Int(5), ksid("0000000000000005")),
            (Value::Int(6), ksid("0000000000000006")),
            (Value::Int(7), ksid("0000000000000007")),
            (Value::Int(8), ksid("0000000000000008")),
            (Value::Null, Destination::None),
        ],
    );
    assert_eq!(n, 10);
}

#[test]
fn numeric_static_map_with_fallback_maps_vitess_vectors() {
    // numeric_static_map_test.go TestNumericStaticMapWithFallback (12 inputs).
    let v = vindex(
        "numeric_static_map",
        &[
            (
                "json",
                r#"{"1":2,"3":4,"4":5,"5":6,"6":7,"7":8,"8":9,"10":18446744073709551615}"#,
            ),
            ("fallback_type", "xxhash"),
        ],
    );
    assert!(v.unknown_params().is_empty());
    let n = check_map(
        &v,
        &[
            (Value::Int(1), ksid("0000000000000002")),
            (Value::Int(2), ksid("8b59801662b52160")),
            (Value::Int(3), ksid("0000000000000004")),
            (Value::decimal("1.1"), Destination::None),
            (Value::varchar("test1"), Destination::None),
            (Value::Int(4), ksid("0000000000000005")),
            (Value::Int(5), ksid("0000000000000006")),
            (Value::Int(6), ksid("0000000000000007")),
            (Value::Int(7), ksid("0000000000000008")),
            (Value::Int(8), ksid("0000000000000009")),
            (Value::Int(10), ksid("ffffffffffffffff")),
            (Value::Null, Destination::None),
        ],
    );
    assert_eq!(n, 12);
    // TestNumericStaticMapWithFallbackVerify: 11 is not in the map, so it is not ff…ff.
    assert_ne!(
        v.map(&[Value::Int(11)]).unwrap(),
        vec![ksid("ffffffffffffffff")]
    );
}

#[test]
fn numeric_static_map_create_errors_match_vitess() {
    // numeric_static_map_test.go TestNumericStaticMapCreateVindex / WithJsonVdx.
    let err = |pairs: &[(&str, &str)]| {
        Vindex::create("numeric_static_map", "nsm", &params(pairs))
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[]).contains(
        "NumericStaticMap: Could not find either `json_path` or `json` params in vschema"
    ));
    assert!(err(&[("json", "{}"), ("json_path", "/path/to/map.json")])
        .contains("NumericStaticMap: Found both `json` and `json_path` params in vschema"));
    assert!(err(&[("json_path", "/path/to/map.json")]).contains("param json_path"));
    assert!(err(&[("json", "{]")]).contains("param json"));
    assert!(err(&[("json", r#"{"1":2,"3":4,"5":6:8,"10":11}"#)]).contains("param json"));
    assert!(err(&[("json", r#"{"1":a}"#)]).contains("param json"));
    assert!(err(&[("json", r#"{"a":1}"#)])
        .contains(r#"strconv.ParseUint: parsing "a": invalid syntax"#));
    assert!(err(&[("json", "{}"), ("fallback_type", "not_found")])
        .contains(r#"vindexType "not_found" not found"#));
    let ok = vindex(
        "numeric_static_map",
        &[("json", "{}"), ("fallback_type", "binary")],
    );
    assert!(ok.unknown_params().is_empty());
    let with_unknown = vindex("numeric_static_map", &[("json", "{}"), ("hello", "world")]);
    assert_eq!(with_unknown.unknown_params(), &["hello".to_string()]);
    let json_only = vindex("numeric_static_map", &[("json", r#"{"1":2,"3":4,"5":6}"#)]);
    assert_eq!(json_only.cost(), 1);
    assert_eq!(
        json_only.map(&ints(&[1, 3, 5, 7])).unwrap(),
        vec![
            ksid("0000000000000002"),
            ksid("0000000000000004"),
            ksid("0000000000000006"),
            ksid("0000000000000007"),
        ]
    );
}

// ---- region_experimental ------------------------------------------------------------

fn region_vindex(region_bytes: &str) -> Vindex {
    vindex(
        "region_experimental",
        &[
            ("region_bytes", region_bytes),
            ("table", "t"),
            ("from", "f1,f2"),
            ("to", "toc"),
        ],
    )
}

#[test]
fn region_experimental_maps_vitess_vectors() {
    // region_experimental_test.go TestRegionExperimentalMap (6 rows). The single-column
    // row is a key range in current Vitess (partial vindex); the older test said none.
    let v = region_vindex("1");
    assert_eq!(v.cost(), 1);
    assert!(v.is_unique() && !v.needs_lookup() && v.is_partial());
    let n = check_rows(
        &v,
        &[
            (ints(&[1, 1]), ksid("01166b40b44aba4bd6")),
            (ints(&[255, 1]), ksid("ff166b40b44aba4bd6")),
            (ints(&[256, 1]), ksid("00166b40b44aba4bd6")),
            (ints(&[1]), range("01", "02")),
            (
                vec![Value::varbinary(b"abcd".to_vec()), Value::Int(256)],
                Destination::None,
            ),
            (
                vec![Value::Int(1), Value::varbinary(b"abcd".to_vec())],
                Destination::None,
            ),
        ],
    );
    assert_eq!(n, 6);
    assert_eq!(
        v.map_rows(&[ints(&[1, 1, 1])]).unwrap(),
        vec![Destination::None]
    );
    assert_eq!(
        v.unknown_params(),
        &["from".to_string(), "table".to_string(), "to".to_string()]
    );
}

#[test]
fn region_experimental_two_bytes_maps_vitess_vectors() {
    // region_experimental_test.go TestRegionExperimentalMapMulti2 (4 rows).
    let v = region_vindex("2");
    let n = check_rows(
        &v,
        &[
            (ints(&[1, 1]), ksid("0001166b40b44aba4bd6")),
            (ints(&[255, 1]), ksid("00ff166b40b44aba4bd6")),
            (ints(&[256, 1]), ksid("0100166b40b44aba4bd6")),
            (ints(&[0x10000, 1]), ksid("0000166b40b44aba4bd6")),
        ],
    );
    assert_eq!(n, 4);
}

#[test]
fn region_experimental_create_errors_match_vitess() {
    // region_experimental_test.go TestRegionExperimentalCreateErrors.
    let e = Vindex::create(
        "region_experimental",
        "region_experimental",
        &params(&[("region_bytes", "3")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.ends_with("region_bits must be 1 or 2: 3"), "{e}");
    let e = Vindex::create("region_experimental", "region_experimental", &Params::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("region_experimental missing region_bytes param"),
        "{e}"
    );
}

// ---- region_json --------------------------------------------------------------------

#[test]
fn region_json_prefixes_the_country_region_to_hash_of_the_id() {
    // Vitess has no region_json_test.go; these follow region_json.go with hash vectors.
    let loader = files(&[("regions.json", r#"{"US": 1, "DE": 255, "JP": 256}"#)]);
    let make = |rb: &str| {
        Vindex::create_with_files(
            "region_json",
            "rj",
            &params(&[("region_bytes", rb), ("region_map", "regions.json")]),
            &loader,
        )
        .unwrap()
    };
    let one = make("1");
    assert_eq!(one.cost(), 1);
    assert!(one.is_multi_column() && !one.is_partial());
    check_rows(
        &one,
        &[
            (
                vec![Value::Int(1), Value::varchar("US")],
                ksid("01166b40b44aba4bd6"),
            ),
            (
                vec![Value::Int(4), Value::varchar("DE")],
                ksid("ffd2fd8867d50d2dfe"),
            ),
            (
                vec![Value::Int(1), Value::varchar("JP")],
                ksid("00166b40b44aba4bd6"),
            ),
            (vec![Value::Int(1), Value::varchar("FR")], Destination::None),
            (
                vec![Value::varchar("x"), Value::varchar("US")],
                Destination::None,
            ),
            (vec![Value::Int(1)], Destination::None),
        ],
    );
    let two = make("2");
    check_rows(
        &two,
        &[(
            vec![Value::Int(1), Value::varchar("JP")],
            ksid("0100166b40b44aba4bd6"),
        )],
    );
    let err = |pairs: &[(&str, &str)]| {
        Vindex::create_with_files("region_json", "rj", &params(pairs), &loader)
            .unwrap_err()
            .to_string()
    };
    assert!(err(&[("region_bytes", "1")]).contains("param region_map"));
    assert!(err(&[("region_map", "regions.json")]).contains("param region_bytes"));
    assert!(
        err(&[("region_map", "regions.json"), ("region_bytes", "3")])
            .contains("region_bytes must be 1 or 2: 3")
    );
    assert!(
        err(&[("region_map", "missing.json"), ("region_bytes", "1")])
            .contains("no such file or directory")
    );
}

// ---- construction -------------------------------------------------------------------

#[test]
fn unknown_and_unsupported_types_are_refused_by_name() {
    let e = Vindex::create("nope", "v", &Params::new()).unwrap_err();
    assert_eq!(e.to_string(), r#"vindex v: vindexType "nope" not found"#);
    for t in [
        "lookup_unicodeloosemd5_hash",
        "lookup_unicodeloosemd5_hash_unique",
        "cfc",
    ] {
        let e = Vindex::create(t, "v", &Params::new()).unwrap_err();
        assert!(matches!(e, VindexError::NotSupported { .. }), "{t}");
        assert!(e.to_string().contains("not supported yet"), "{e}");
    }
}

#[test]
fn lookup_vindexes_take_their_table_params_and_map_only_through_the_table() {
    let e = Vindex::create("lookup_hash", "lk", &Params::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "vindex lk (lookup_hash): param table: lookup: missing table param"
    );
    let params = |extra: &[(&str, &str)]| -> Params {
        [("table", "ks.t"), ("from", " a , b "), ("to", "ksid")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let e = Vindex::create("lookup", "lk", &params(&[("write_only", "yes")])).unwrap_err();
    assert!(
        e.to_string()
            .contains("write_only value must be 'true' or 'false'"),
        "{e}"
    );
    for (t, unique, cost) in [
        ("lookup", false, 20),
        ("lookup_unique", true, 10),
        ("lookup_hash", false, 20),
        ("lookup_hash_unique", true, 10),
        ("consistent_lookup", false, 20),
        ("consistent_lookup_unique", true, 10),
    ] {
        let v = Vindex::create(
            t,
            "lk",
            &params(&[("ignore_nulls", "true"), ("batch_lookup", "1")]),
        )
        .unwrap();
        assert_eq!(
            (v.vindex_type(), v.is_unique(), v.cost()),
            (t, unique, cost)
        );
        assert!(v.needs_lookup() && v.unknown_params().is_empty());
        assert!(matches!(
            v.map(&[Value::Int(1)]),
            Err(VindexError::NeedsLookup { .. })
        ));
        let l = v.lookup().unwrap();
        assert_eq!(
            (l.table(), l.from_columns(), l.to_column()),
            ("ks.t", &["a".to_string(), "b".to_string()][..], "ksid")
        );
        assert!(l.ignores_nulls() && !l.is_write_only());
        assert_eq!(l.is_consistent(), t.starts_with("consistent"));
    }
    // The hashed form stores vunhash(ksid) and maps it back with hash.
    let h = Vindex::create("lookup_hash", "lk", &params(&[])).unwrap();
    let l = h.lookup().unwrap();
    let ksid = KeyspaceId::new(hex::decode("166b40b44aba4bd6").unwrap());
    assert_eq!(l.to_value(&ksid).unwrap(), Value::Uint(1));
    assert_eq!(l.keyspace_id(Some(b"1")), Some(ksid.clone()));
    assert_eq!(l.keyspace_id(Some(b"x")), None);
    assert_eq!(l.keyspace_id(None), None);
    // The plain form stores the keyspace id itself.
    let p = Vindex::create("lookup_unique", "lk", &params(&[])).unwrap();
    let l = p.lookup().unwrap();
    assert_eq!(
        l.to_value(&ksid).unwrap(),
        Value::HexVal(ksid.as_bytes().to_vec())
    );
    assert_eq!(l.keyspace_id(Some(ksid.as_bytes())), Some(ksid));
}

#[test]
fn single_and_multi_column_calls_are_checked() {
    let h = vindex("hash", &[]);
    assert_eq!(
        h.map_rows(&[ints(&[1])]).unwrap(),
        vec![ksid("166b40b44aba4bd6")]
    );
    assert!(matches!(
        h.map_rows(&[ints(&[1, 2])]),
        Err(VindexError::WrongArity { .. })
    ));
    assert!(h.hash(&Value::Int(1)).is_ok());
    assert!(matches!(
        vindex("null", &[]).hash(&Value::Int(1)),
        Err(VindexError::NotHashing { .. })
    ));
    assert!(matches!(
        vindex("xxhash", &[]).reverse_map(&[KeyspaceId::new(vec![1])]),
        Err(VindexError::NotReversible { .. })
    ));
}
