//! Our port of Postgres's extended hash functions against a live Postgres 15:
//! for many keys of every supported key type, `hash_key` must equal what the
//! server computes, both with the raw functions (`hashint8extended`, ... with
//! the partition seed) and with the exact SQL the rebalancer uses
//! (`sql_hash_expr`, `sql_interval_predicate`) on real columns.

mod common;

use rand::{rngs::StdRng, Rng, SeedableRng};
use shardproxy::data::router::hash::HASH_PARTITION_SEED_SQL;
use shardproxy::data::router::{
    hash_key, sql_hash_expr, sql_interval_predicate, HashInterval, KeyType, KeyValue,
};

const N: usize = 10_000;

fn seed() -> i64 {
    HASH_PARTITION_SEED_SQL
}

/// Integers: extremes, the int2/int4 boundaries, small values, random values.
fn int_keys(rng: &mut StdRng, min: i64, max: i64) -> Vec<i64> {
    let mut v: Vec<i64> = vec![
        0,
        1,
        -1,
        min,
        max,
        min + 1,
        max - 1,
        i16::MIN as i64,
        i16::MAX as i64,
        i32::MIN as i64,
        i32::MAX as i64,
        i32::MIN as i64 - 1,
        i32::MAX as i64 + 1,
        1 << 32,
        -(1 << 32),
    ]
    .into_iter()
    .filter(|x| (min..=max).contains(x))
    .collect();
    v.extend(-500..500);
    while v.len() < N + 1000 {
        v.push(rng.gen_range(min..=max));
    }
    v
}

/// Strings: empty, every length 0..=64 (all lookup3 tails and several
/// blocks), multi-byte UTF-8, long strings, random mixes.
fn text_keys(rng: &mut StdRng) -> Vec<String> {
    let alphabet: Vec<char> =
        "abcXYZ019 _-'\"\\é日本語🎉ß€\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}"
            .chars()
            .collect();
    let mut v: Vec<String> = vec![
        String::new(),
        " ".into(),
        "a".into(),
        "42".into(),
        "alice".into(),
        "日本".into(),
        "🎉".into(),
    ];
    for len in 0..=64 {
        v.push("x".repeat(len));
        v.push("é".repeat(len));
    }
    v.push("long".repeat(1000));
    while v.len() < N + 500 {
        let len = rng.gen_range(0..40);
        v.push(
            (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect(),
        );
    }
    v
}

fn uuid_keys(rng: &mut StdRng) -> Vec<[u8; 16]> {
    let mut v = vec![[0u8; 16], [0xff; 16]];
    while v.len() < N + 100 {
        v.push(rng.gen());
    }
    v
}

fn uuid_text(u: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*u).hyphenated().to_string()
}

/// Runs a query returning one bigint per input row, in input order.
async fn hashes(
    c: &tokio_postgres::Client,
    sql: &str,
    p: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Vec<u64> {
    c.query(sql, &[p, &seed()])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect()
}

fn check(kind: &str, ours: &[Option<u64>], theirs: &[u64], show: impl Fn(usize) -> String) {
    assert_eq!(ours.len(), theirs.len(), "{kind}: row count");
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(
            *o,
            Some(*t),
            "{kind}: key {} hashes to {o:x?} here, {t:#x} in Postgres",
            show(i)
        );
    }
}

/// Creates `t_<name>(n, k)`, fills it from `$1` (a text array cast to the
/// column type) and returns `sql_hash_expr(k)` per row in input order.
async fn column_hashes(c: &tokio_postgres::Client, t: KeyType, keys: &[String]) -> Vec<u64> {
    let table = format!("t_{}", t.name());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (n bigint, k {})",
        t.name()
    ))
    .await
    .unwrap();
    c.execute(
        &format!(
            "INSERT INTO {table} SELECT n, x::{} FROM unnest($1::text[]) WITH ORDINALITY u(x, n)",
            t.name()
        ),
        &[&keys],
    )
    .await
    .unwrap();
    let sql = format!(
        "SELECT {} FROM {table} ORDER BY n",
        sql_hash_expr("\"k\"", t)
    );
    c.query(&sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn hash_key_matches_postgres_for_every_key_type() {
    let cluster = common::temp_cluster();
    let c = common::connect(&cluster.url("postgres")).await;
    let mut rng = StdRng::seed_from_u64(0x5eed);

    // int2: every value.
    let i2: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    let ours: Vec<Option<u64>> = i2
        .iter()
        .map(|&v| hash_key(&KeyValue::Int(v as i64)))
        .collect();
    let q =
        "SELECT hashint2extended(x, $2) FROM unnest($1::int2[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("int2", &ours, &hashes(&c, q, &i2).await, |i| {
        i2[i].to_string()
    });

    // int4.
    let i4: Vec<i32> = int_keys(&mut rng, i32::MIN as i64, i32::MAX as i64)
        .into_iter()
        .map(|v| v as i32)
        .collect();
    let ours: Vec<Option<u64>> = i4
        .iter()
        .map(|&v| hash_key(&KeyValue::Int(v as i64)))
        .collect();
    let q =
        "SELECT hashint4extended(x, $2) FROM unnest($1::int4[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("int4", &ours, &hashes(&c, q, &i4).await, |i| {
        i4[i].to_string()
    });

    // int8.
    let i8s = int_keys(&mut rng, i64::MIN, i64::MAX);
    let ours: Vec<Option<u64>> = i8s.iter().map(|&v| hash_key(&KeyValue::Int(v))).collect();
    let q =
        "SELECT hashint8extended(x, $2) FROM unnest($1::int8[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("int8", &ours, &hashes(&c, q, &i8s).await, |i| {
        i8s[i].to_string()
    });

    // text and varchar.
    let texts = text_keys(&mut rng);
    let ours: Vec<Option<u64>> = texts.iter().map(|s| hash_key(&KeyValue::Text(s))).collect();
    let q =
        "SELECT hashtextextended(x, $2) FROM unnest($1::text[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("text", &ours, &hashes(&c, q, &texts).await, |i| {
        format!("{:?}", texts[i])
    });
    let q = "SELECT hashtextextended(x::varchar, $2) FROM unnest($1::text[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("varchar", &ours, &hashes(&c, q, &texts).await, |i| {
        format!("{:?}", texts[i])
    });

    // uuid.
    let uuids = uuid_keys(&mut rng);
    let utext: Vec<String> = uuids.iter().map(uuid_text).collect();
    let ours: Vec<Option<u64>> = uuids
        .iter()
        .map(|u| hash_key(&KeyValue::Uuid(*u)))
        .collect();
    let q = "SELECT uuid_hash_extended(x::uuid, $2) FROM unnest($1::text[]) WITH ORDINALITY u(x, n) ORDER BY n";
    check("uuid", &ours, &hashes(&c, q, &utext).await, |i| {
        utext[i].clone()
    });

    // The rebalancer's SQL on real columns of every key type, with keys
    // parsed the way the router parses them.
    let cases: Vec<(KeyType, Vec<String>)> = vec![
        (KeyType::Int2, i2.iter().map(|v| v.to_string()).collect()),
        (KeyType::Int4, i4.iter().map(|v| v.to_string()).collect()),
        (KeyType::Int8, i8s.iter().map(|v| v.to_string()).collect()),
        (KeyType::Text, texts.clone()),
        (KeyType::Varchar, texts.clone()),
        (KeyType::Uuid, utext.clone()),
    ];
    for (t, keys) in &cases {
        let ours: Vec<Option<u64>> = keys
            .iter()
            .map(|k| hash_key(&t.from_text(k).unwrap()))
            .collect();
        let theirs = column_hashes(&c, *t, keys).await;
        check(&format!("sql_hash_expr {t}"), &ours, &theirs, |i| {
            format!("{:?}", keys[i])
        });
    }

    // sql_interval_predicate selects exactly the rows whose hash we place in
    // the interval: ordinary, crossing 2^63, wrapping through 0, whole circle.
    c.batch_execute("INSERT INTO t_bigint VALUES (-1, NULL)")
        .await
        .unwrap();
    let hs: Vec<u64> = i8s
        .iter()
        .map(|&v| hash_key(&KeyValue::Int(v)).unwrap())
        .collect();
    let top = 1u64 << 63;
    let intervals = [
        (1000, u64::MAX / 3),
        (top - (1 << 60), top + (1 << 60)),
        (u64::MAX - (1 << 61), 1 << 61),
        (u64::MAX - 10, 5),
        (top, top - 1),
        (42, 42),
    ];
    for (lo, hi) in intervals {
        let iv = HashInterval { lo, hi, shard: 0 };
        let pred = sql_interval_predicate("k", KeyType::Int8, &iv);
        let want =
            hs.iter().filter(|&&h| iv.contains(h)).count() as i64 + i64::from(iv.contains(0));
        let got: i64 = c
            .query_one(&format!("SELECT count(*) FROM t_bigint WHERE {pred}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(got, want, "interval ({lo:#x}, {hi:#x}]: {pred}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn vnode_points_are_computable_in_sql() {
    let cluster = common::temp_cluster();
    let c = common::connect(&cluster.url("postgres")).await;
    let ours: Vec<u64> = shardproxy::data::router::ring::vnode_points("s0", 100).collect();
    let names: Vec<String> = (0..100).map(|i| format!("s0#{i}")).collect();
    let q =
        "SELECT hashtextextended(x, $2) FROM unnest($1::text[]) WITH ORDINALITY u(x, n) ORDER BY n";
    let theirs = hashes(&c, q, &names).await;
    assert_eq!(ours, theirs);
    // Keys sent as text, int2, int4 or int8 by a client hash the same in Postgres too.
    let row = c
        .query_one(
            "SELECT hashint2extended(42::int2, $1), hashint4extended(42, $1), hashint8extended(42, $1)",
            &[&seed()],
        )
        .await
        .unwrap();
    let want = hash_key(&KeyValue::Int(42)).unwrap() as i64;
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (want, want, want)
    );
}
