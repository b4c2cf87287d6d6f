//! CopySplitter: framing, escapes, CSV quoting, header, end marker, and a
//! property test that random rows with random chunking come back per shard
//! in order.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::data::planner::tests::map;

fn spec(format: CopyFormat) -> CopySpec {
    CopySpec {
        table: "orders".into(),
        group: 0,
        key_type: KeyType::Int8,
        key_column: "customer_id".into(),
        columns: vec!["note".into(), "customer_id".into(), "total".into()],
        format,
    }
}

fn shard_of(k: Option<i64>) -> usize {
    let key = k.map_or(KeyValue::Null, KeyValue::Int);
    map().shard_for(0, &key)
}

/// Runs the splitter over chunks; returns (dest, bytes) items.
fn split(format: CopyFormat, chunks: &[&[u8]]) -> Result<Vec<(CopyDest, Vec<u8>)>, RouteError> {
    let mut s = CopySplitter::new(&spec(format), &[], &map())?;
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, &mut |d, b| out.push((d, b.to_vec())))?;
    }
    s.finish(&mut |d, b| out.push((d, b.to_vec())))?;
    Ok(out)
}

#[test]
fn text_rows_route_by_key_column() {
    let data = b"a\t1\t10\nb\\tc\t2\t20\nx\t\\N\t0\n";
    let out = split(CopyFormat::text(), &[data]).unwrap();
    assert_eq!(
        out,
        vec![
            (CopyDest::Shard(shard_of(Some(1))), b"a\t1\t10\n".to_vec()),
            (
                CopyDest::Shard(shard_of(Some(2))),
                b"b\\tc\t2\t20\n".to_vec()
            ),
            (CopyDest::Shard(shard_of(None)), b"x\t\\N\t0\n".to_vec()),
        ]
    );
}

#[test]
fn rows_spanning_chunks_and_escapes_at_chunk_edges() {
    let data: &[u8] = b"line\\\none\t7\t1\r\nq\t\\x37\t2\n";
    // Every split point, including between a backslash and what it escapes.
    for cut in 0..=data.len() {
        let out = split(CopyFormat::text(), &[&data[..cut], &data[cut..]]).unwrap();
        assert_eq!(out.len(), 2, "cut {cut}");
        assert_eq!(
            out[0],
            (
                CopyDest::Shard(shard_of(Some(7))),
                b"line\\\none\t7\t1\r\n".to_vec()
            )
        );
        assert_eq!(
            out[1],
            (
                CopyDest::Shard(shard_of(Some(7))),
                b"q\t\\x37\t2\n".to_vec()
            )
        );
    }
}

#[test]
fn key_escapes_are_decoded() {
    // \x34\x32 is "42"; \062 is "2".
    let out = split(CopyFormat::text(), &[b"n\t\\x34\\x32\t1\nm\t\\062\t1\n"]).unwrap();
    assert_eq!(out[0].0, CopyDest::Shard(shard_of(Some(42))));
    assert_eq!(out[1].0, CopyDest::Shard(shard_of(Some(2))));
    let e = split(CopyFormat::text(), &[b"n\t\\101\t1\n"]).unwrap_err();
    assert_eq!(e.sqlstate, "22P02");
    assert!(e.message.contains("COPY row 1"), "{}", e.message);
}

#[test]
fn end_marker_header_and_last_line() {
    let mut f = CopyFormat::text();
    f.header = true;
    let out = split(
        f,
        &[b"note\tcustomer_id\ttotal\n", b"a\t3\t1\n\\.\nignored\tx\n"],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            (CopyDest::All, b"note\tcustomer_id\ttotal\n".to_vec()),
            (CopyDest::Shard(shard_of(Some(3))), b"a\t3\t1\n".to_vec()),
        ]
    );
    // A last row without a newline gets one.
    let out = split(CopyFormat::text(), &[b"a\t5\t1"]).unwrap();
    assert_eq!(
        out,
        vec![(CopyDest::Shard(shard_of(Some(5))), b"a\t5\t1\n".to_vec())]
    );
}

#[test]
fn missing_key_field_is_an_error() {
    let e = split(CopyFormat::text(), &[b"only-one-field\n"]).unwrap_err();
    assert_eq!(e.sqlstate, "22P04");
    assert!(e.message.contains("customer_id"));
    let e = split(CopyFormat::csv(), &[b"\"unterminated,1\n"]).unwrap_err();
    assert_eq!(e.sqlstate, "22P04");
}

#[test]
fn csv_quoting() {
    let data = b"\"a,b\",1,x\n\"multi\nline \"\"q\"\"\",2,y\n,,z\n\"\",\"3\",w\n";
    let out = split(CopyFormat::csv(), &[data]).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(
        out[0],
        (
            CopyDest::Shard(shard_of(Some(1))),
            b"\"a,b\",1,x\n".to_vec()
        )
    );
    assert_eq!(
        out[1],
        (
            CopyDest::Shard(shard_of(Some(2))),
            b"\"multi\nline \"\"q\"\"\",2,y\n".to_vec()
        )
    );
    // Unquoted empty is NULL; quoted "3" is 3.
    assert_eq!(out[2].0, CopyDest::Shard(shard_of(None)));
    assert_eq!(out[3].0, CopyDest::Shard(shard_of(Some(3))));
    // A quoted empty key is the empty string: not a valid bigint.
    let e = split(CopyFormat::csv(), &[b"a,\"\",1\n"]).unwrap_err();
    assert_eq!(e.sqlstate, "22P02");
    // A custom escape character.
    let mut f = CopyFormat::csv();
    f.escape = b'\\';
    let out = split(f, &[b"\"x\\\"y\n,z\",4,1\n"]).unwrap();
    assert_eq!(
        out,
        vec![(
            CopyDest::Shard(shard_of(Some(4))),
            b"\"x\\\"y\n,z\",4,1\n".to_vec()
        )]
    );
}

#[test]
fn column_order_from_the_session() {
    let mut sp = spec(CopyFormat::text());
    sp.columns.clear();
    let cols = ["customer_id".to_string(), "note".to_string()];
    let mut s = CopySplitter::new(&sp, &cols, &map()).unwrap();
    let mut out = Vec::new();
    s.feed(b"9\tx\n", &mut |d, _| out.push(d)).unwrap();
    assert_eq!(out, vec![CopyDest::Shard(shard_of(Some(9)))]);
    assert_eq!(s.rows(), 1);
    let e = CopySplitter::new(&sp, &["note".to_string()], &map())
        .err()
        .unwrap();
    assert_eq!(e.sqlstate, "0A000");
}

// ---- property test ----

fn text_escape(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

fn csv_quote(s: &str) -> String {
    if s.is_empty() || s.contains([',', '"', '\n', '\r']) || s == "\\." {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn serialize(rows: &[(String, Option<i64>, String)], csv: bool) -> Vec<Vec<u8>> {
    rows.iter()
        .map(|(a, k, b)| {
            let line = if csv {
                let key = k.map(|k| k.to_string()).unwrap_or_default();
                format!("{},{},{}\n", csv_quote(a), key, csv_quote(b))
            } else {
                let key = k.map(|k| k.to_string()).unwrap_or_else(|| "\\N".into());
                format!("{}\t{}\t{}\n", text_escape(a), key, text_escape(b))
            };
            line.into_bytes()
        })
        .collect()
}

fn field() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-c,\"\\\\\t\n\r .N]{0,8}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_rows_split_back_per_shard_in_order(
        rows in proptest::collection::vec((field(), proptest::option::of(-1000i64..1000), field()), 0..30),
        csv in any::<bool>(),
        header in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let lines = serialize(&rows, csv);
        let mut data: Vec<u8> = Vec::new();
        let head = if csv { b"note,customer_id,total\n".to_vec() } else { b"note\tcustomer_id\ttotal\n".to_vec() };
        if header {
            data.extend_from_slice(&head);
        }
        for l in &lines {
            data.extend_from_slice(l);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        let mut format = if csv { CopyFormat::csv() } else { CopyFormat::text() };
        format.header = header;
        let out = split(format, &chunks).unwrap();

        let mut want: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        for ((_, k, _), l) in rows.iter().zip(&lines) {
            want.entry(shard_of(*k)).or_default().extend_from_slice(l);
        }
        let mut got: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut headers = Vec::new();
        for (d, b) in out {
            match d {
                CopyDest::Shard(s) => got.entry(s).or_default().extend_from_slice(&b),
                CopyDest::All => headers.push(b),
            }
        }
        prop_assert_eq!(got, want);
        if header {
            prop_assert_eq!(headers, vec![head]);
        } else {
            prop_assert!(headers.is_empty());
        }
    }
}

/// A binary COPY header (no extension unless `ext`).
fn binary_header(ext: &[u8]) -> Vec<u8> {
    let mut h = crate::data::planner::copy_binary::SIGNATURE.to_vec();
    h.extend(0i32.to_be_bytes());
    h.extend((ext.len() as i32).to_be_bytes());
    h.extend_from_slice(ext);
    h
}

/// A binary tuple (note text, customer_id as int8 of `width` bytes, total).
fn binary_tuple(note: &[u8], key: Option<i64>, width: usize, total: Option<&[u8]>) -> Vec<u8> {
    let mut t = 3i16.to_be_bytes().to_vec();
    t.extend((note.len() as i32).to_be_bytes());
    t.extend_from_slice(note);
    match key {
        Some(k) => {
            let b = k.to_be_bytes();
            t.extend((width as i32).to_be_bytes());
            t.extend_from_slice(&b[8 - width..]);
        }
        None => t.extend((-1i32).to_be_bytes()),
    }
    match total {
        Some(b) => {
            t.extend((b.len() as i32).to_be_bytes());
            t.extend_from_slice(b);
        }
        None => t.extend((-1i32).to_be_bytes()),
    }
    t
}

#[test]
fn binary_rows_route_by_key_field_with_header_and_trailer_everywhere() {
    let h = binary_header(b"xy");
    let a = binary_tuple(b"a", Some(1), 8, Some(b"10"));
    let b = binary_tuple(b"", None, 8, None);
    let c = binary_tuple(b"ccc", Some(2), 4, Some(b""));
    let data = [h.clone(), a.clone(), b.clone(), c.clone(), vec![0xff, 0xff]].concat();
    let out = split(CopyFormat::binary(), &[&data]).unwrap();
    assert_eq!(
        out,
        vec![
            (CopyDest::All, h),
            (CopyDest::Shard(shard_of(Some(1))), a),
            (CopyDest::Shard(shard_of(None)), b),
            (CopyDest::Shard(shard_of(Some(2))), c),
            (CopyDest::All, vec![0xff, 0xff]),
        ]
    );
    // Data after the trailer, a cut-off row, a wrong field count.
    let after = [data.clone(), vec![0]].concat();
    assert!(split(CopyFormat::binary(), &[&after]).is_err());
    let cut = &data[..data.len() - 5];
    assert!(split(CopyFormat::binary(), &[cut]).is_err());
    let two = [binary_header(b""), 2i16.to_be_bytes().to_vec()].concat();
    assert!(split(CopyFormat::binary(), &[&two]).is_err());
    assert!(split(CopyFormat::binary(), &[b"not binary at all"]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random binary rows (keys of every integer width and NULL, fields of
    /// any bytes), cut into random payloads: each shard gets the header,
    /// exactly its rows in order, byte for byte, and the trailer.
    #[test]
    fn random_binary_rows_split_back_per_shard_in_order(
        rows in proptest::collection::vec((
            proptest::collection::vec(any::<u8>(), 0..12),
            proptest::option::of(-40_000i64..40_000),
            prop_oneof![Just(2usize), Just(4), Just(8)],
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..6)),
        ), 0..25),
        ext in proptest::collection::vec(any::<u8>(), 0..4),
        trailer in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..10),
    ) {
        let head = binary_header(&ext);
        let tuples: Vec<Vec<u8>> = rows
            .iter()
            .map(|(n, k, w, t)| {
                // Keys that fit the width (int2 keys stay within i16).
                let k = k.map(|k| if *w == 2 { k.clamp(-32768, 32767) } else { k });
                binary_tuple(n, k, *w, t.as_deref())
            })
            .collect();
        let mut data = head.clone();
        for t in &tuples {
            data.extend_from_slice(t);
        }
        if trailer {
            data.extend_from_slice(&[0xff, 0xff]);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        points.sort();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&data[last..p]);
            last = p;
        }
        chunks.push(&data[last..]);
        let out = split(CopyFormat::binary(), &chunks).unwrap();

        let mut want: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        for ((_, k, w, _), t) in rows.iter().zip(&tuples) {
            let k = k.map(|k| if *w == 2 { k.clamp(-32768, 32767) } else { k });
            want.entry(shard_of(k)).or_default().extend_from_slice(t);
        }
        let mut got: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        let mut every = Vec::new();
        for (d, b) in out {
            match d {
                CopyDest::Shard(s) => got.entry(s).or_default().extend_from_slice(&b),
                CopyDest::All => every.push(b),
            }
        }
        prop_assert_eq!(got, want);
        let mut expect_every = vec![head];
        if trailer {
            expect_every.push(vec![0xff, 0xff]);
        }
        prop_assert_eq!(every, expect_every);
    }
}
