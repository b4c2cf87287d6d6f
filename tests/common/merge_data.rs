//! Generated data for the merge differential tests: a skewed shop (one
//! customer holds 30% of the orders), a reference table, NULLs, ties,
//! extreme and many-digit numbers, float NaN/±Infinity/-0, multi-byte text,
//! dates and timestamps. Deterministic (fixed seed), so a failure repeats.

#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const TABLES: &str = "\
[[tables]]\nname = \"customers\"\nshard_key = \"customer_id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"orders\"\nshard_key = \"customer_id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"events\"\nshard_key = \"customer_id\"\nkey_type = \"bigint\"\n\n\
[[tables]]\nname = \"regions\"\nreference = true\n";

pub const DDL: &[&str] = &[
    "create table regions (code text primary key, name text not null, zone int not null)",
    "create table customers (customer_id bigint primary key, name text not null, \
     nickname text, region text, tier int, balance numeric(14,2), score float8, \
     signup date, vip bool)",
    "create table orders (order_id bigint not null, customer_id bigint not null, \
     amount numeric(12,2), qty int not null, price numeric(30,10), status text not null, \
     created_at timestamptz not null, shipped_at timestamp, big bigint, ratio float8, \
     code uuid, note text, small smallint, primary key (customer_id, order_id))",
    "create table events (event_id bigint not null, customer_id bigint not null, \
     kind text not null, value int, at date, primary key (customer_id, event_id))",
];

/// The customer holding 30% of the orders.
pub const HOT: i64 = 7;

const NAMES: &[&str] = &[
    "Anna",
    "anna",
    "Émile",
    "Zoë",
    "Ünal",
    "Bob",
    "bob",
    "Chloé",
    "日本",
    "Ωmega",
    "Ödön",
    "zed",
    "Zed",
    "Ärni",
    "Ø",
    "A",
    "a",
    "éa",
    "ea",
    "Eb",
    "😀smile",
    "Ñandú",
    "nandu",
];
const REGIONS: &[&str] = &["north", "south", "east", "west", "Nord", "süd", "Øst"];
const STATUSES: &[&str] = &["new", "paid", "shipped", "cancelled", "returned"];
const KINDS: &[&str] = &["view", "click", "buy", "Ärger", "élan"];

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "null".into())
}

/// INSERT statements (multi-row, a few hundred rows each), in load order.
pub fn inserts() -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(20240514);
    let mut out = Vec::new();
    let regions: Vec<String> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({}, {}, {})", lit(r), lit(&r.to_uppercase()), i % 3))
        .collect();
    out.push(format!(
        "insert into regions (code, name, zone) values {}",
        regions.join(", ")
    ));
    let n_customers = 300i64;
    let mut rows = Vec::new();
    for c in 1..=n_customers {
        let name = format!("{}{}", NAMES[c as usize % NAMES.len()], c % 4);
        let nickname = (c % 5 != 0).then(|| NAMES[(c as usize * 7) % NAMES.len()].to_string());
        let region = (c % 11 != 0).then(|| REGIONS[c as usize % REGIONS.len()]);
        let tier = (c % 13 != 0).then_some(c % 4);
        let balance = (c % 17 != 0).then(|| {
            format!(
                "{}.{:02}",
                rng.gen_range(-50_000..500_000),
                rng.gen_range(0..100)
            )
        });
        let score = match c % 29 {
            0 => "'NaN'".to_string(),
            1 => "'Infinity'".into(),
            2 => "'-Infinity'".into(),
            3 => "null".into(),
            4 => "'-0'".into(),
            _ => format!("{}", rng.gen_range(-4000..4000) as f64 * 0.25),
        };
        let signup = format!("'20{:02}-{:02}-{:02}'", 10 + c % 14, 1 + c % 12, 1 + c % 28);
        let vip = match c % 3 {
            0 => "null",
            1 => "true",
            _ => "false",
        };
        rows.push(format!(
            "({c}, {}, {}, {}, {}, {}, {score}, {signup}, {vip})",
            lit(&name),
            nickname.map(|n| lit(&n)).unwrap_or_else(|| "null".into()),
            region.map(lit).unwrap_or_else(|| "null".into()),
            opt(tier),
            opt(balance),
        ));
    }
    for chunk in rows.chunks(100) {
        out.push(format!(
            "insert into customers (customer_id, name, nickname, region, tier, balance, \
             score, signup, vip) values {}",
            chunk.join(", ")
        ));
    }
    let n_orders = 2400i64;
    let mut rows = Vec::new();
    for o in 1..=n_orders {
        let customer = if o % 10 < 3 {
            HOT
        } else {
            rng.gen_range(1..=n_customers)
        };
        let amount = (o % 19 != 0)
            .then(|| format!("{}.{:02}", rng.gen_range(0..2000), rng.gen_range(0..100)));
        let qty = 1 + o % 5;
        let price = match o % 7 {
            0 => "null".to_string(),
            1 => "12345678901234567890.1234567891".into(),
            2 => "-0.0000000001".into(),
            _ => format!(
                "{}.{:010}",
                rng.gen_range(-1_000_000i64..1_000_000),
                rng.gen_range(0..10_000_000_000i64)
            ),
        };
        let status = STATUSES[(o as usize * 3 + customer as usize) % STATUSES.len()];
        let created = format!(
            "'2023-{:02}-{:02} {:02}:{:02}:{:02}+00'",
            1 + o % 12,
            1 + o % 28,
            o % 24,
            (o * 7) % 60,
            (o * 13) % 60
        );
        let shipped = (o % 4 != 0).then(|| {
            format!(
                "'2023-{:02}-{:02} 12:00:{:02}'",
                1 + o % 12,
                1 + (o + 3) % 28,
                o % 60
            )
        });
        let big = match o % 23 {
            0 => Some(i64::MAX.to_string()),
            1 => Some(i64::MIN.to_string()),
            2 => None,
            3 => Some("0".into()),
            _ => Some(
                rng.gen_range(-1_000_000_000_000i64..1_000_000_000_000)
                    .to_string(),
            ),
        };
        let ratio = match o % 31 {
            0 => "null".to_string(),
            _ => format!("{}", rng.gen_range(-1000..1000) as f64 * 0.125),
        };
        let code = format!(
            "'{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}'",
            rng.gen::<u32>(),
            rng.gen::<u16>(),
            rng.gen_range(0..0x1000),
            rng.gen_range(0..0x1000),
            rng.gen::<u64>() & 0xffff_ffff_ffff
        );
        let note = match o % 9 {
            0 => "null".to_string(),
            1 => lit(""),
            _ => lit(NAMES[(o as usize * 5) % NAMES.len()]),
        };
        let small = (o % 6 != 0).then_some((o % 200) - 100);
        rows.push(format!(
            "({o}, {customer}, {}, {qty}, {price}, {}, {created}, {}, {}, {ratio}, {code}, {note}, {})",
            opt(amount),
            lit(status),
            shipped.unwrap_or_else(|| "null".into()),
            opt(big),
            opt(small),
        ));
    }
    for chunk in rows.chunks(200) {
        out.push(format!(
            "insert into orders (order_id, customer_id, amount, qty, price, status, created_at, \
             shipped_at, big, ratio, code, note, small) values {}",
            chunk.join(", ")
        ));
    }
    let mut rows = Vec::new();
    for e in 1..=1500i64 {
        let customer = if e % 3 == 0 {
            HOT
        } else {
            1 + (e * 37) % n_customers
        };
        let value = (e % 8 != 0).then_some((e * 31) % 97 - 40);
        rows.push(format!(
            "({e}, {customer}, {}, {}, '2022-{:02}-{:02}')",
            lit(KINDS[e as usize % KINDS.len()]),
            opt(value),
            1 + e % 12,
            1 + e % 28
        ));
    }
    for chunk in rows.chunks(250) {
        out.push(format!(
            "insert into events (event_id, customer_id, kind, value, at) values {}",
            chunk.join(", ")
        ));
    }
    out
}
