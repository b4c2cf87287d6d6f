//! resolve / resolve_stmt: keys to shards with Bind parameters.

use super::*;
use crate::data::router::KeyValue;

fn route(sql: &str, params: &Params<'_>) -> Result<Route, RouteError> {
    resolve_stmt(&plan1(sql), params, &map())
}

#[test]
fn int_key_lands_on_one_shard_whatever_its_form() {
    let m = map();
    let expect = Route::Shard(m.shard_for(0, &KeyValue::Int(42)));
    let by_param = "SELECT * FROM orders WHERE customer_id = $1";
    assert_eq!(
        route(
            "SELECT * FROM orders WHERE customer_id = 42",
            &Params::none()
        ),
        Ok(expect.clone())
    );
    assert_eq!(
        route(
            "SELECT * FROM orders WHERE customer_id = '42'",
            &Params::none()
        ),
        Ok(expect.clone())
    );
    let text = Params {
        values: smallvec::smallvec![Some(&b"42"[..])],
        formats: smallvec::smallvec![],
    };
    assert_eq!(route(by_param, &text), Ok(expect.clone()));
    let int2 = 42i16.to_be_bytes();
    let int4 = 42i32.to_be_bytes();
    let int8 = 42i64.to_be_bytes();
    for bin in [&int2[..], &int4[..], &int8[..]] {
        let p = Params {
            values: smallvec::smallvec![Some(bin)],
            formats: smallvec::smallvec![1],
        };
        assert_eq!(
            route(by_param, &p),
            Ok(expect.clone()),
            "{} bytes",
            bin.len()
        );
    }
    // Per-parameter formats: $1 text, $2 binary.
    let p = Params {
        values: smallvec::smallvec![Some(&b"x"[..]), Some(&int4[..])],
        formats: smallvec::smallvec![0, 1],
    };
    assert_eq!(
        route("UPDATE orders SET note = $1 WHERE customer_id = $2", &p),
        Ok(expect.clone())
    );
    // items has an int4 key in the same group: same shard for 42.
    assert_eq!(
        route(
            "SELECT * FROM items WHERE customer_id = 42",
            &Params::none()
        ),
        Ok(expect)
    );
}

#[test]
fn several_keys_give_sorted_shards() {
    let m = map();
    let shard = |k: i64| m.shard_for(0, &KeyValue::Int(k));
    let b = (2..).find(|&k| shard(k) != shard(1)).unwrap();
    let sql = format!("SELECT * FROM orders WHERE customer_id IN ({b}, 1, {b})");
    let mut want = vec![shard(1), shard(b)];
    want.sort();
    assert_eq!(route(&sql, &Params::none()), Ok(Route::Shards(want)));
    let c = (b + 1..).find(|&k| shard(k) == shard(1)).unwrap();
    let sql = format!("SELECT * FROM orders WHERE customer_id IN (1, {c})");
    assert_eq!(route(&sql, &Params::none()), Ok(Route::Shard(shard(1))));
    let sql = format!("INSERT INTO orders (customer_id) VALUES (1), ({c})");
    assert_eq!(route(&sql, &Params::none()), Ok(Route::Shard(shard(1))));
}

#[test]
fn keys_on_several_shards_refuse_what_cannot_merge() {
    let m = map();
    let shard = |k: i64| m.shard_for(0, &KeyValue::Int(k));
    let b = (2..).find(|&k| shard(k) != shard(1)).unwrap();
    let c = (b + 1..).find(|&k| shard(k) == shard(1)).unwrap();
    let window = |k: i64| {
        format!("SELECT id, rank() OVER (ORDER BY id) FROM orders WHERE customer_id IN (1, {k})")
    };
    let e = route(&window(b), &Params::none()).unwrap_err();
    assert_eq!(e.sqlstate, "0A000");
    assert!(
        e.message.contains("window functions across shards"),
        "{}",
        e.message
    );
    assert_eq!(
        route(&window(c), &Params::none()),
        Ok(Route::Shard(shard(1)))
    );
}

#[test]
fn bad_keys_and_params() {
    let e = route(
        "SELECT * FROM orders WHERE customer_id = 'abc'",
        &Params::none(),
    )
    .unwrap_err();
    assert_eq!(e.sqlstate, "22P02");
    assert_eq!(
        e.message,
        "'abc' is not a valid bigint shard key for table orders"
    );
    let by_param = "SELECT * FROM orders WHERE customer_id = $1";
    let e = route(by_param, &Params::none()).unwrap_err();
    assert_eq!(
        (e.sqlstate, e.message.as_str()),
        (
            "08P01",
            "shard key parameter $1 was not bound (0 parameters given)"
        )
    );
    let bad_utf8 = Params {
        values: smallvec::smallvec![Some(&[0xff, 0xfe][..])],
        formats: smallvec::smallvec![],
    };
    assert_eq!(route(by_param, &bad_utf8).unwrap_err().sqlstate, "22021");
    let three_bytes = Params {
        values: smallvec::smallvec![Some(&[0, 0, 1][..])],
        formats: smallvec::smallvec![1],
    };
    assert_eq!(route(by_param, &three_bytes).unwrap_err().sqlstate, "22P02");
    let bad_format = Params {
        values: smallvec::smallvec![Some(&b"1"[..])],
        formats: smallvec::smallvec![7],
    };
    assert_eq!(route(by_param, &bad_format).unwrap_err().sqlstate, "08P01");
    // NULL goes where the router sends NULL.
    let null = Params {
        values: smallvec::smallvec![None],
        formats: smallvec::smallvec![],
    };
    assert_eq!(
        route(by_param, &null),
        Ok(Route::Shard(map().shard_for(0, &KeyValue::Null)))
    );
}

#[test]
fn other_targets() {
    let none = Params::none();
    assert_eq!(route("SELECT 1", &none), Ok(Route::Any));
    assert_eq!(route("SELECT * FROM orders", &none), Ok(Route::All));
    assert_eq!(route("CREATE TABLE t (a int)", &none), Ok(Route::All));
    assert_eq!(route("/* shard=s3 */ SELECT 1", &none), Ok(Route::Shard(3)));
    assert_eq!(
        route("/* shard=nope */ SELECT 1", &none)
            .unwrap_err()
            .sqlstate,
        "22023"
    );
    let e = route("UPDATE orders SET customer_id = 1", &none).unwrap_err();
    assert_eq!(e.sqlstate, "0A000");
    assert!(e.message.starts_with("UPDATE of shard key column"));
    assert_eq!(route("VACUUM (VERBOSE) orders", &none), Ok(Route::All));
    let e = route("SELEC 1", &none).unwrap_err();
    assert_eq!(e.sqlstate, "0A000");
    assert!(e.message.contains("cannot parse"), "{}", e.message);
    assert_eq!(route("COPY orders FROM STDIN", &none), Ok(Route::All));
    // Text keys.
    let u = route("SELECT * FROM users WHERE id = 'alice'", &none).unwrap();
    assert_eq!(
        u,
        Route::Shard(map().shard_for(1, &KeyValue::Text("alice")))
    );
}
