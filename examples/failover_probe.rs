//! A writer for `benches/replicas_tls.sh`: inserts one row every few
//! milliseconds through the proxy for a number of seconds, reconnecting when
//! its connection is lost, and prints one line per attempt:
//! `<unix time in µs> ok <id>` or `<unix time in µs> err <SQLSTATE or reason>`.
//! The script reads from it when writes stopped and when they resumed.
//!
//!   failover_probe 'postgres://u:p@127.0.0.1:6432/db' 20

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: failover_probe URL SECONDS");
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id: i64 = 0;
    while Instant::now() < until {
        let c = match &client {
            Some(c) if !c.is_closed() => c,
            _ => match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    client.insert(c)
                }
                Err(e) => {
                    let why = e
                        .code()
                        .map(|c| c.code().to_string())
                        .unwrap_or("connect".into());
                    println!("{} err {why}", now_us());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        id += 1;
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            c.execute("INSERT INTO probe (id) VALUES ($1)", &[&id]),
        )
        .await;
        match r {
            Ok(Ok(_)) => println!("{} ok {id}", now_us()),
            Ok(Err(e)) => {
                let why = e
                    .code()
                    .map(|c| c.code().to_string())
                    .unwrap_or("closed".into());
                println!("{} err {why}", now_us());
            }
            Err(_) => {
                println!("{} err timeout", now_us());
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
