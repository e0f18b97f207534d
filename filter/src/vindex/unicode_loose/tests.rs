//! The unicode_loose vindexes against Vitess's own vectors
//! (`../testdata/unicode_loose_vectors.json`: the literal cases of
//! `unicodeloosemd5_test.go` and `unicodeloosexxhash_test.go`, the invalid inputs of
//! `unicode_test.go`, and the 28 texts of `unicode_hash_golden.json`).

use serde_json::Value as Json;

use super::*;

fn vectors() -> Json {
    serde_json::from_str(include_str!("../testdata/unicode_loose_vectors.json"))
        .expect("the vector file is JSON")
}

fn field<'a>(entry: &'a Json, name: &str) -> &'a str {
    entry[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {entry}"))
}

fn md5_hex(id: &Value) -> String {
    hex::encode(UnicodeLooseMd5.hash(id).unwrap())
}

fn xxhash_hex(id: &Value) -> String {
    hex::encode(UnicodeLooseXxhash.hash(id).unwrap())
}

#[test]
fn maps_the_vectors_of_vitess_map_tests() {
    let vectors = vectors();
    for (list, hash) in [
        ("md5", md5_hex as fn(&Value) -> String),
        ("xxhash", xxhash_hex),
    ] {
        let cases = vectors[list].as_array().unwrap();
        assert!(cases.len() >= 10, "{list}");
        for case in cases {
            let input = field(case, "input");
            assert_eq!(
                hash(&Value::varchar(input)),
                field(case, "ksid"),
                "{list} {input:?}"
            );
        }
        assert_eq!(hash(&Value::Null), field(&vectors["null_input"], list));
    }
}

#[test]
fn hashes_the_golden_texts_in_28_languages() {
    let vectors = vectors();
    let golden = vectors["golden"].as_array().unwrap();
    assert_eq!(golden.len(), 28);
    let mut wrong = Vec::new();
    for entry in golden {
        let input = Value::varchar(field(entry, "input"));
        if md5_hex(&input) != field(entry, "md5_ksid")
            || xxhash_hex(&input) != field(entry, "xxhash_ksid")
        {
            wrong.push(entry["index"].clone());
        }
    }
    assert!(wrong.is_empty(), "golden entries that differ: {wrong:?}");
}

#[test]
fn case_accents_and_combining_marks_share_a_key() {
    let key = loose_key(b"Test").unwrap();
    for same in [
        "TEST",
        "test",
        "T\u{e9}st",
        "Te\u{301}st",
        "Test   ",
        "\u{ff34}est",
    ] {
        assert_eq!(loose_key(same.as_bytes()).unwrap(), key, "{same:?}");
    }
    for different in ["Test\t", " Test", "Tests"] {
        assert_ne!(
            loose_key(different.as_bytes()).unwrap(),
            key,
            "{different:?}"
        );
    }
}

#[test]
fn invalid_utf8_is_refused_with_vitess_message() {
    for case in vectors()["errors"].as_array().unwrap() {
        let bytes = hex::decode(field(case, "input_hex")).unwrap();
        let err = UnicodeLooseMd5.hash(&Value::Bytes(bytes)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot normalize string containing invalid UTF-8: \""),
            "{err}"
        );
    }
    let vindex =
        crate::vindex::Vindex::create("unicode_loose_xxhash", "v", &Default::default()).unwrap();
    assert!(vindex.map(&[Value::Bytes(vec![b'a', 0xFF])]).is_err());
}

#[test]
fn unnormalized_marks_and_hangul_do_not_panic() {
    // Marks out of canonical order, a long run of marks, a contraction start followed by
    // marks (Cyrillic И + breve), and Hangul syllables.
    for text in [
        "a\u{301}\u{316}\u{301}\u{316}",
        &"e\u{301}"
            .repeat(2)
            .chars()
            .chain(std::iter::repeat_n('\u{301}', 40))
            .collect::<String>(),
        "\u{418}\u{316}\u{306}",
        "\u{d55c}\u{ad6d}\u{c5b4}",
        "\u{4e2d}\u{20000}\u{10ffff}",
    ] {
        assert!(loose_key(text.as_bytes()).is_ok(), "{text:?}");
    }
    // The reordered form equals the canonical one.
    assert_eq!(
        loose_key("a\u{301}\u{316}".as_bytes()).unwrap(),
        loose_key("a\u{316}\u{301}".as_bytes()).unwrap()
    );
}
