//! DDL, reference tables and COPY on real shards: CREATE TABLE/INDEX, ALTER,
//! TRUNCATE and DROP reach every shard; reference-table writes land on every
//! shard; `COPY … FROM STDIN` (text and CSV, simple and extended protocol)
//! splits rows by key with per-shard
//! counts equal to what the shard map says; `COPY … TO STDOUT` returns every
//! shard's rows (compared with an unsharded oracle).

mod common;

use common::routed::*;
use common::*;
use futures_util::StreamExt;

const TABLES: &str = "\
[[tables]]\nname = \"items\"\nshard_key = \"sku\"\nkey_type = \"text\"\n\n\
[[tables]]\nname = \"ledger\"\nshard_key = \"acct\"\nkey_type = \"bigint\"\ncolocation = \"money\"\n\n\
[[tables]]\nname = \"currencies\"\nreference = true\n";

/// `select <expr>` on every shard directly, as text.
async fn on_each(shards: &[tokio_postgres::Client], sql: &str) -> Vec<Vec<Vec<Option<String>>>> {
    let mut v = Vec::new();
    for c in shards {
        v.push(text_rows(c, sql).await);
    }
    v
}

/// `COPY … FROM STDIN` through psql (the simple protocol: the proxy splits
/// COPY only there); returns the count psql reports.
fn psql_copy_in(url: &str, sql: &str, data: &str) -> u64 {
    use std::io::Write;
    let bin = shardproxy::control::cluster::LocalCluster::bin_dir().unwrap();
    let mut child = std::process::Command::new(bin.join("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("COPY ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: psql said {text:?}"))
}

async fn copy_in(url: &str, sql: &str, data: &str) -> u64 {
    let (url, sql, data) = (url.to_string(), sql.to_string(), data.to_string());
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tokio::task::spawn_blocking(move || psql_copy_in(&url, &sql, &data)),
    )
    .await
    .expect("COPY hangs")
    .unwrap()
}

async fn copy_out(c: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    let stream = c
        .copy_out(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut stream = std::pin::pin!(stream);
    let mut all = Vec::new();
    while let Some(b) = stream.next().await {
        all.extend_from_slice(&b.unwrap());
    }
    let mut lines: Vec<String> = String::from_utf8(all)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_reference_and_copy_reach_the_right_shards() {
    let r = Routed::start(2, true, false, TABLES).await;
    let p = connect(&r.url()).await;
    let o = connect(&r.oracle_url()).await;
    let shards = r.shard_clients().await;

    // DDL through the proxy reaches every shard.
    for ddl in [
        "create table items (sku text primary key, qty int not null)",
        "create table ledger (acct bigint not null, n int not null, amount numeric not null)",
        "create table currencies (code text primary key, name text not null)",
        "create index ledger_acct on ledger (acct)",
        "alter table items add column note text",
    ] {
        p.batch_execute(ddl)
            .await
            .unwrap_or_else(|e| panic!("{ddl}: {e:?}"));
        o.batch_execute(ddl).await.unwrap();
    }
    let seen = on_each(
        &shards,
        "select (select count(*) from pg_class where relname in ('items', 'ledger', 'currencies', 'ledger_acct')), \
                (select count(*) from information_schema.columns where table_name = 'items' and column_name = 'note')",
    )
    .await;
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s,
            &vec![vec![Some("4".into()), Some("1".into())]],
            "DDL on s{i}"
        );
    }

    // Reference-table writes reach every shard.
    for w in [
        "insert into currencies (code, name) values ('EUR', 'euro'), ('USD', 'dollar'), ('JPY', 'yen')",
        "update currencies set name = 'US dollar' where code = 'USD'",
        "delete from currencies where code = 'JPY'",
    ] {
        assert_eq!(exec_simple(&p, w).await, exec_simple(&o, w).await, "{w}");
    }
    // RETURNING from a reference write: one copy's rows, as on one server.
    let w = "insert into currencies (code, name) values ('GBP', 'pound'), ('CHF', 'franc') returning code";
    assert_eq!(sorted_rows(&p, w).await, sorted_rows(&o, w).await);
    let w = "update currencies set name = upper(name) where code in ('GBP', 'CHF')";
    let a = p.execute(w, &[]).await.unwrap();
    assert_eq!(
        a,
        o.execute(w, &[]).await.unwrap(),
        "extended protocol count"
    );
    let csv = "SEK,krona\nNOK,krone\n";
    let sql = "copy currencies (code, name) from stdin with (format csv)";
    assert_eq!(
        copy_in(&r.url(), sql, csv).await,
        2,
        "COPY into a reference table"
    );
    assert_eq!(copy_in(&r.oracle_url(), sql, csv).await, 2);
    // COPY FROM STDIN over the extended protocol (tokio-postgres) splits
    // like the simple protocol's, and the session goes on.
    for c in [&p, &o] {
        let sql = "copy currencies (code, name) from stdin";
        assert_eq!(extended_copy(c, sql, "DKK\tkrone\nPLN\tzloty\n").await, 2);
        assert_eq!(
            extended_copy(
                c,
                "copy items (qty, sku) from stdin",
                "5\tsku-x1\n6\tsku-x2\n"
            )
            .await,
            2
        );
        c.simple_query("select 1").await.unwrap();
    }
    let want = text_rows(&o, "select * from currencies order by code").await;
    for (i, s) in on_each(&shards, "select * from currencies order by code")
        .await
        .iter()
        .enumerate()
    {
        assert_eq!(s, &want, "currencies on s{i}");
    }
    // A reference read answers once, not once per shard.
    assert_eq!(
        text_rows(&p, "select * from currencies order by code").await,
        want
    );

    // COPY FROM STDIN, text format: split by sku.
    let skus: Vec<String> = (0..200).map(|i| format!("sku-{i:04}")).collect();
    let mut text = String::new();
    for (i, s) in skus.iter().enumerate() {
        let note = if i % 7 == 0 {
            "\\N".to_string()
        } else {
            format!("n\\t{i}")
        };
        text.push_str(&format!("{s}\t{i}\t{note}\n"));
    }
    let sql = "copy items (sku, qty, note) from stdin";
    assert_eq!(copy_in(&r.url(), sql, &text).await, 200);
    assert_eq!(copy_in(&r.oracle_url(), sql, &text).await, 200);
    let mut expected = [0i64; 2];
    // With the two rows of the extended-protocol COPY above.
    for s in skus.iter().map(String::as_str).chain(["sku-x1", "sku-x2"]) {
        expected[r.shard_of_text("items", s)] += 1;
    }
    assert_eq!(counts_per_shard(&shards, "items").await, expected.to_vec());
    assert!(expected.iter().all(|&n| n > 50), "{expected:?}");
    for (i, c) in shards.iter().enumerate() {
        for row in text_rows(c, "select sku from items").await {
            let sku = row[0].clone().unwrap();
            assert_eq!(r.shard_of_text("items", &sku), i, "{sku} on s{i}");
        }
    }

    // COPY FROM STDIN, CSV with a header and quoted fields: split by acct.
    let mut csv = String::from("acct,n,amount\n");
    for i in 0..300i64 {
        let acct = (i * 7919) % 1000 - 500;
        csv.push_str(&format!("{acct},{i},\"{}.{:02}\"\n", i * 3, i % 100));
    }
    let sql = "copy ledger (acct, n, amount) from stdin with (format csv, header true)";
    assert_eq!(copy_in(&r.url(), sql, &csv).await, 300);
    assert_eq!(copy_in(&r.oracle_url(), sql, &csv).await, 300);
    let mut expected = [0i64; 2];
    for i in 0..300i64 {
        expected[r.shard_of_int("ledger", (i * 7919) % 1000 - 500)] += 1;
    }
    assert_eq!(counts_per_shard(&shards, "ledger").await, expected.to_vec());

    // COPY TO STDOUT fans out; the lines equal the oracle's.
    for sql in [
        "copy items to stdout",
        "copy ledger (acct, amount) to stdout with (format csv)",
        "copy (select sku, qty from items where qty > 100) to stdout",
    ] {
        // Extended protocol (tokio-postgres) and simple protocol (psql).
        let a = copy_out(&p, sql).await;
        assert!(!a.is_empty(), "{sql}");
        assert_eq!(a, copy_out(&o, sql).await, "{sql}");
        let mut b: Vec<String> = psql(&r.url(), sql).lines().map(str::to_string).collect();
        b.sort();
        assert_eq!(a, b, "psql: {sql}");
    }
    // Keyed reads after COPY agree with the oracle.
    for q in [
        "select * from items where sku = 'sku-0042'",
        "select * from items where sku in ('sku-0001', 'sku-0100', 'sku-0199')",
        "select acct, n, amount from ledger where acct = -3",
    ] {
        assert_eq!(sorted_rows(&p, q).await, sorted_rows(&o, q).await, "{q}");
    }

    // TRUNCATE and DROP reach every shard too.
    exec_simple(&p, "truncate ledger").await;
    assert_eq!(counts_per_shard(&shards, "ledger").await, vec![0, 0]);
    exec_simple(&p, "drop index ledger_acct").await;
    exec_simple(&p, "drop table items").await;
    let seen = on_each(
        &shards,
        "select count(*) from pg_class where relname in ('items', 'ledger_acct')",
    )
    .await;
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s, &vec![vec![Some("0".into())]], "DROP on s{i}");
    }
    // A DDL error on the shards is reported, not swallowed.
    let (code, _) = sql_error(&p, "drop table items").await;
    assert_eq!(code, "42P01");
}

/// COPY FROM STDIN through the extended protocol (tokio-postgres' copy_in);
/// returns the count.
async fn extended_copy(c: &tokio_postgres::Client, sql: &str, data: &str) -> u64 {
    use futures_util::SinkExt;
    let sink = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        c.copy_in::<_, bytes::Bytes>(sql),
    )
    .await
    .expect("extended COPY hangs")
    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(data.to_string()))
        .await
        .unwrap();
    sink.as_mut().finish().await.unwrap()
}

/// Extended-protocol COPYs, one after another and on fresh connections,
/// leave nothing behind that breaks the next statement or client (a refused
/// one did, once, mid-development).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_copies_leave_the_sessions_usable() {
    let r = Routed::start(2, false, false, TABLES).await;
    let p = connect(&r.url()).await;
    p.batch_execute("create table items (sku text primary key, qty int not null)")
        .await
        .unwrap();
    p.batch_execute("create table currencies (code text primary key, name text not null)")
        .await
        .unwrap();
    let mut n = 0;
    for round in 0..2 {
        let c = connect(&r.url()).await;
        for k in 0..3 {
            let data = format!("sku-{round}-{k}\t{k}\n");
            assert_eq!(
                extended_copy(&c, "copy items (sku, qty) from stdin", &data).await,
                1
            );
            let data = format!("C{round}{k}\tname\n");
            assert_eq!(
                extended_copy(&c, "copy currencies (code, name) from stdin", &data).await,
                1
            );
            n += 1;
        }
        let rows = c.query("select count(*) from items", &[]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), n);
    }
}
