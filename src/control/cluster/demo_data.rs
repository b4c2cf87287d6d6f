//! The demo's sample data: a small shop with one deliberately hot customer, so
//! that per-shard load is visibly skewed and a rebalance (pinning the hot
//! tenant) has something to fix.
//!
//! Generation is a pure function of a fixed seed, so every demo and every test
//! sees the same rows. Loading goes THROUGH the proxy as an ordinary client: one
//! transaction per customer, multi-row INSERTs with literal keys that the
//! proxy routes by `customer_id`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The customer that gets a large share of all orders.
pub const HOT_CUSTOMER: i64 = 42;
/// How many orders the hot customer gets (about 20% of all orders).
const HOT_ORDERS: usize = 600;
const CUSTOMERS: i64 = 1000;
const PRODUCTS: i64 = 100;
/// Rows per INSERT statement (the hot customer's orders are split into several).
const ROWS_PER_INSERT: usize = 200;
const SEED: u64 = 20_240_042;

/// What [`load_data`] inserted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DemoCounts {
    pub products: u64,
    pub customers: u64,
    pub orders: u64,
    pub payments: u64,
    /// The hot customer's id and order count.
    pub hot_customer: i64,
    pub hot_customer_orders: u64,
}

/// The generated data as SQL: statements for the reference table, then one
/// group of statements per customer (all naming only that customer's key).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoData {
    pub products: Vec<String>,
    pub per_customer: Vec<Vec<String>>,
    pub counts: DemoCounts,
}

const FIRST: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "John",
    "Ken",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tony",
    "Whitfield",
];
const LAST: &[&str] = &[
    "Allen", "Backus", "Cerf", "Dijkstra", "Hamilton", "Hoare", "Hopper", "Knuth", "Lamport",
    "Liskov", "Perlman", "Ritchie", "Shannon", "Thompson", "Turing", "Wirth",
];
const ITEMS: &[&str] = &[
    "Keyboard",
    "Mouse",
    "Monitor",
    "Cable",
    "Laptop stand",
    "Webcam",
    "Headset",
    "Desk lamp",
    "Notebook",
    "Pen set",
];
const STATUSES: &[&str] = &["new", "paid", "shipped", "delivered", "cancelled"];
const METHODS: &[&str] = &["card", "paypal", "bank_transfer"];

/// Generates the demo data (deterministic).
pub fn generate() -> DemoData {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut counts = DemoCounts {
        hot_customer: HOT_CUSTOMER,
        ..DemoCounts::default()
    };

    let mut prices = Vec::new();
    let mut rows = Vec::new();
    for id in 1..=PRODUCTS {
        let cents: i64 = rng.gen_range(199..=49_999);
        let item = ITEMS[rng.gen_range(0..ITEMS.len())];
        rows.push(format!(
            "({id}, {}, {})",
            lit(&format!("{item} #{id}")),
            money(cents)
        ));
        prices.push(cents);
    }
    counts.products = rows.len() as u64;
    let products = vec![format!(
        "INSERT INTO products (product_id, name, price) VALUES {}",
        rows.join(", ")
    )];

    let mut per_customer = Vec::new();
    let (mut order_id, mut payment_id) = (0i64, 0i64);
    for cid in 1..=CUSTOMERS {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let email = format!("{}.{}{cid}@example.com", first, last).to_lowercase();
        let mut stmts = vec![format!(
            "INSERT INTO customers (customer_id, name, email, created_at) VALUES ({cid}, {}, {}, {})",
            lit(&format!("{first} {last}")),
            lit(&email),
            timestamp(&mut rng, 2024)
        )];
        let n_orders = if cid == HOT_CUSTOMER {
            HOT_ORDERS
        } else {
            rng.gen_range(1..=4)
        };
        let (mut orders, mut payments) = (Vec::new(), Vec::new());
        for _ in 0..n_orders {
            order_id += 1;
            let product = rng.gen_range(1..=PRODUCTS);
            let qty: i64 = rng.gen_range(1..=5);
            let total = prices[(product - 1) as usize] * qty;
            let status = STATUSES[rng.gen_range(0..STATUSES.len())];
            let at = timestamp(&mut rng, 2025);
            orders.push(format!(
                "({order_id}, {cid}, {product}, {qty}, {}, {}, {at})",
                money(total),
                lit(status)
            ));
            if status != "new" && status != "cancelled" {
                payment_id += 1;
                let method = METHODS[rng.gen_range(0..METHODS.len())];
                payments.push(format!(
                    "({payment_id}, {cid}, {order_id}, {}, {}, {at})",
                    money(total),
                    lit(method)
                ));
            }
        }
        counts.customers += 1;
        counts.orders += orders.len() as u64;
        counts.payments += payments.len() as u64;
        if cid == HOT_CUSTOMER {
            counts.hot_customer_orders = orders.len() as u64;
        }
        for chunk in orders.chunks(ROWS_PER_INSERT) {
            stmts.push(format!(
                "INSERT INTO orders (order_id, customer_id, product_id, quantity, total, status, created_at) VALUES {}",
                chunk.join(", ")
            ));
        }
        for chunk in payments.chunks(ROWS_PER_INSERT) {
            stmts.push(format!(
                "INSERT INTO payments (payment_id, customer_id, order_id, amount, method, paid_at) VALUES {}",
                chunk.join(", ")
            ));
        }
        per_customer.push(stmts);
    }
    DemoData {
        products,
        per_customer,
        counts,
    }
}

/// Connects to `proxy_url` (tokio-postgres, no TLS) and inserts the demo data:
/// the products once (a reference table, so the proxy copies it to every shard),
/// then each customer's rows in one transaction. Call it on a fresh demo only:
/// rows already present make it fail on a primary key.
pub async fn load_data(proxy_url: &str) -> Result<DemoCounts, String> {
    let (client, conn) = tokio_postgres::connect(proxy_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {proxy_url}: {e}"))?;
    let conn_task = tokio::spawn(conn);
    let data = generate();
    let result = async {
        for sql in &data.products {
            exec(&client, sql).await?;
        }
        for stmts in &data.per_customer {
            exec(&client, "BEGIN").await?;
            for sql in stmts {
                if let Err(e) = exec(&client, sql).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(e);
                }
            }
            exec(&client, "COMMIT").await?;
        }
        Ok(data.counts.clone())
    }
    .await;
    drop(client);
    let _ = conn_task.await;
    result
}

async fn exec(client: &tokio_postgres::Client, sql: &str) -> Result<(), String> {
    client.batch_execute(sql).await.map_err(|e| {
        let shown: String = sql.chars().take(120).collect();
        match e.as_db_error() {
            Some(db) => format!("{shown}...: {} ({})", db.message(), db.code().code()),
            None => format!("{shown}...: {e}"),
        }
    })
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Cents as a numeric literal: 1234 -> 12.34.
fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A random timestamptz literal within `year`.
fn timestamp(rng: &mut StdRng, year: u32) -> String {
    format!(
        "'{year}-{:02}-{:02} {:02}:{:02}:{:02}+00'",
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
        rng.gen_range(0..24),
        rng.gen_range(0..60),
        rng.gen_range(0..60)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_skewed() {
        let a = generate();
        assert_eq!(a, generate());
        let c = &a.counts;
        assert_eq!((c.products, c.customers), (100, 1000));
        assert!((2500..=3500).contains(&c.orders), "{c:?}");
        assert!(c.payments > c.orders / 2 && c.payments < c.orders, "{c:?}");
        let share = c.hot_customer_orders as f64 / c.orders as f64;
        assert!((0.15..=0.25).contains(&share), "hot share {share}");
    }

    #[test]
    fn each_customer_group_names_only_that_customer() {
        let data = generate();
        for (i, stmts) in data.per_customer.iter().enumerate() {
            let cid = i as i64 + 1;
            // customers rows start "(cid,", orders/payments rows carry ", cid," second.
            assert!(
                stmts[0].contains(&format!("VALUES ({cid}, ")),
                "{}",
                stmts[0]
            );
            for s in &stmts[1..] {
                let values = s.split_once("VALUES ").unwrap().1;
                for row in values.split("), (") {
                    let second = row.trim_start_matches('(').split(", ").nth(1).unwrap();
                    assert_eq!(second, cid.to_string(), "{s}");
                }
            }
        }
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(lit("O'Hara"), "'O''Hara'");
        assert_eq!(money(1205), "12.05");
    }
}
