//! Hostile and broken clients, byte by byte: malformed frames, bad lengths,
//! unknown messages, broken startup packets, stalled handshakes, clients
//! that vanish mid-transaction, too many clients, and shards that go down.
//! Each case ends that one connection (with an ErrorResponse or a closed
//! socket, never a hang) while other sessions carry on.

mod common;

use common::proxy::*;
use common::*;
use shardproxy::control::cluster::LocalCluster;
use std::time::{Duration, Instant};

const V3: u32 = 196608;

/// A session opened before the bad client, still working after it.
async fn still_works(witness: &tokio_postgres::Client, n: i32) {
    let v: i32 = witness
        .query_one("SELECT $1::int + 1", &[&n])
        .await
        .expect("the other session broke")
        .get(0);
    assert_eq!(v, n + 1);
}

/// The one int4 a statement without parameters returns.
async fn int_of(client: &tokio_postgres::Client, sql: &str) -> i32 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A statement refused with 08006 and a message naming `shard`.
async fn refused_naming(client: &tokio_postgres::Client, sql: &str, shard: &str) {
    let e = client.simple_query(sql).await.unwrap_err();
    assert_eq!(code_of(&e), "08006", "{sql}: {e}");
    let m = e.as_db_error().unwrap().message().to_string();
    assert!(m.contains(&format!("\"{shard}\"")), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_ends_only_that_connection() {
    within(60, malformed_body()).await
}

async fn malformed_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    shard.batch_execute("CREATE TABLE w(x int)").await.unwrap();
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        "proxy.auth = \"trust\"\nproxy.startup_timeout_ms = 300",
    )
    .await;
    let witness = connect(&p.url()).await;
    // A second witness in the middle of a transaction.
    let in_tx = connect(&p.url()).await;
    in_tx
        .batch_execute("BEGIN; INSERT INTO w VALUES (1)")
        .await
        .unwrap();

    // Frames after startup.
    let mut q = vec![b'Q'];
    q.extend_from_slice(&100i32.to_be_bytes());
    q.extend_from_slice(b"SELECT 1");
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "length 0",
            [&[b'Q'][..], &0i32.to_be_bytes()].concat(),
            Some("08P01"),
        ),
        (
            "length 3",
            [&[b'Q'][..], &3i32.to_be_bytes()].concat(),
            Some("08P01"),
        ),
        (
            "negative length",
            [&[b'Q'][..], &(-5i32).to_be_bytes()].concat(),
            Some("08P01"),
        ),
        (
            "length 2^31-1",
            [&[b'Q'][..], &i32::MAX.to_be_bytes()].concat(),
            Some("08P01"),
        ),
        ("unknown type", msg(b'z', b"whatever"), Some("08P01")),
        ("type 0", msg(0, b""), Some("08P01")),
        (
            "Parse without terminators",
            [msg(b'P', b"abc"), sync_msg()].concat(),
            Some("08P01"),
        ),
    ];
    for (i, (what, bytes, want)) in cases.into_iter().enumerate() {
        let mut r = Raw::login(p.addr).await;
        let t = Instant::now();
        r.send(&bytes).await;
        let got = r.error_then_close().await;
        assert_eq!(
            got.as_ref().map(|e| e.0.as_str()),
            want,
            "{what}: got {got:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2), "{what}: slow close");
        still_works(&witness, i as i32).await;
    }
    // A Bind whose parameter count overruns the message: Postgres itself
    // answers (ERROR 08P01, not FATAL), and the session goes on, as it would
    // connected to Postgres directly.
    let mut r = Raw::login(p.addr).await;
    r.send(
        &[
            parse_msg("", "SELECT $1::int", &[]),
            msg(b'B', &[0, 0, 0, 0, 0, 0x7f, 0xff]),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat(),
    )
    .await;
    let reply = r.until_ready().await;
    assert_eq!(first_error(&reply).map(|e| e.0), Some("08P01".into()));
    assert_eq!(reply.last().unwrap().1, b"I");
    assert_eq!(tags(&r.query("SELECT 1").await), "TDCZ");
    still_works(&witness, 10).await;
    // Invalid UTF-8 in a Query: ERROR 22021, as Postgres answers, and the
    // session goes on.
    let mut r = Raw::login(p.addr).await;
    r.send(&msg(b'Q', b"SELECT '\xff\xfe'\0")).await;
    let reply = r.until_ready().await;
    assert_eq!(first_error(&reply).map(|e| e.0), Some("22021".into()));
    assert_eq!(reply.last().unwrap().1, b"I");
    assert_eq!(tags(&r.query("SELECT 1").await), "TDCZ");
    still_works(&witness, 11).await;
    // A truncated frame, then the client closes its side: the proxy ends
    // the session (no reply is owed to a half message).
    let mut r = Raw::login(p.addr).await;
    r.send(&q).await;
    r.s.shutdown().await.ok();
    let got = r.error_then_close().await;
    assert!(
        got.is_none() || got.as_ref().unwrap().0 == "08P01",
        "truncated frame: {got:?}"
    );
    still_works(&witness, 20).await;
    // A frame announced as large but sent slowly is just waited for.
    let mut r = Raw::login(p.addr).await;
    let sql = b"SELECT 'slow'\0";
    let mut slow = vec![b'Q'];
    slow.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
    r.send(&slow).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    r.send(sql).await;
    let reply = r.until_ready().await;
    assert_eq!(data_rows(&reply)[0][0], Some(b"slow".to_vec()));

    // Broken startup packets.
    use tokio::io::AsyncWriteExt;
    let mut bad_utf8 = startup_packet(V3, &[("user", "app"), ("database", "postgres")]);
    let at = bad_utf8.len() - 4;
    bad_utf8[at] = 0xff;
    let mut huge = 10_001i32.to_be_bytes().to_vec();
    huge.extend_from_slice(&V3.to_be_bytes());
    let startups: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "a regular message before startup",
            msg(b'Q', &cstr("SELECT 1")),
            "08P01",
            "startup packet",
        ),
        (
            "Terminate before startup",
            msg(b'X', b""),
            "08P01",
            "startup packet",
        ),
        ("invalid UTF-8", bad_utf8, "22021", "UTF8"),
        (
            "protocol 2.0",
            startup_packet(2 << 16, &[("user", "app")]),
            "0A000",
            "protocol 2.0",
        ),
        (
            "protocol 4.0",
            startup_packet(4 << 16, &[("user", "app")]),
            "0A000",
            "protocol 4.0",
        ),
        (
            "no user",
            startup_packet(V3, &[("database", "x")]),
            "28000",
            "user",
        ),
        ("oversized startup packet", huge, "08P01", "length"),
        (
            "unterminated parameters",
            {
                let mut b = 12i32.to_be_bytes().to_vec();
                b.extend_from_slice(&V3.to_be_bytes());
                b.extend_from_slice(b"user");
                b
            },
            "08P01",
            "startup packet",
        ),
    ];
    for (i, (what, bytes, code, text)) in startups.into_iter().enumerate() {
        let mut r = Raw::connect(p.addr).await;
        r.send(&bytes).await;
        let (got, message) = r
            .error_then_close()
            .await
            .unwrap_or_else(|| panic!("{what}: closed without an error"));
        assert_eq!(got, code, "{what}: {message}");
        assert!(message.contains(text), "{what}: {message}");
        still_works(&witness, 30 + i as i32).await;
    }

    // Clients that never finish startup are dropped after startup_timeout_ms.
    for (what, bytes) in [
        ("silent", Vec::new()),
        ("half a length", vec![0u8, 0]),
        (
            "half a packet",
            startup_packet(V3, &[("user", "app")])[..12].to_vec(),
        ),
    ] {
        let mut r = Raw::connect(p.addr).await;
        let t = Instant::now();
        if !bytes.is_empty() {
            r.send(&bytes).await;
        }
        let got = r.error_then_close().await;
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(2),
            "{what}: closed after {took:?} ({got:?})"
        );
        still_works(&witness, 40).await;
    }
    // An SSLRequest without TLS configured is answered 'N', then the
    // client may go on in plain text.
    let mut r = Raw::connect(p.addr).await;
    let mut ssl = 8i32.to_be_bytes().to_vec();
    ssl.extend_from_slice(&80877103u32.to_be_bytes());
    r.send(&ssl).await;
    assert_eq!(r.recv_byte().await, b'N');
    r.startup(USER, PASSWORD).await;
    assert_eq!(tags(&r.query("SELECT 1").await), "TDCZ");
    r.s.shutdown().await.ok();

    // The transaction opened before all this is intact.
    in_tx.batch_execute("COMMIT").await.unwrap();
    let n: i64 = shard
        .query_one("SELECT count(*) FROM w", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    still_works(&witness, 99).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_authentication_is_timed_out() {
    within(30, async {
        let c = temp_cluster();
        // SCRAM (the default): the client stops answering mid-exchange.
        let p = start_proxy(
            &[("s0", c.url("postgres"))],
            "proxy.startup_timeout_ms = 300",
        )
        .await;
        let witness = connect(&p.url()).await;
        let mut r = Raw::connect(p.addr).await;
        r.send(&startup_packet(
            V3,
            &[("user", USER), ("database", "postgres")],
        ))
        .await;
        let (tag, body) = r.recv().await.unwrap();
        assert_eq!(tag, b'R');
        assert_eq!(&body[..4], &10i32.to_be_bytes(), "SASL requested");
        let t = Instant::now();
        r.error_then_close().await;
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "closed after {took:?}"
        );
        still_works(&witness, 1).await;
        assert_eq!(p.proxy.clients.count(), 1, "the stalled client is gone");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_clients_leave_nothing_behind() {
    within(60, vanish_body()).await
}

async fn vanish_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    shard
        .batch_execute("CREATE TABLE v(id int PRIMARY KEY)")
        .await
        .unwrap();
    // One backend, so a leftover transaction would be seen by the next client.
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 1").await;
    let witness = connect(&p.url()).await;
    let count = || async {
        let n: i64 = shard
            .query_one("SELECT count(*) FROM v", &[])
            .await
            .unwrap()
            .get(0);
        n
    };

    // BEGIN; INSERT; then the socket just closes (no Terminate).
    let mut r = Raw::login(p.addr).await;
    assert_eq!(r.query("BEGIN").await.last().unwrap().1, b"T");
    let reply = r.query("INSERT INTO v VALUES (1)").await;
    assert_eq!(reply.last().unwrap().1, b"T", "{:?}", first_error(&reply));
    assert_eq!(p.in_use(0), 1);
    drop(r);
    p.wait_pool_idle(0).await;
    // The pool still serves, on a clean backend, and the row never existed:
    // inserting the same key neither blocks nor conflicts.
    witness
        .execute("INSERT INTO v VALUES (1)", &[])
        .await
        .unwrap();
    witness.execute("DELETE FROM v", &[]).await.unwrap();
    assert_eq!(count().await, 0);

    // The same with tokio-postgres, which sends Terminate when dropped.
    let client = connect(&p.url()).await;
    client
        .batch_execute("BEGIN; INSERT INTO v VALUES (2)")
        .await
        .unwrap();
    drop(client);
    p.wait_pool_idle(0).await;
    still_works(&witness, 2).await;
    assert_eq!(count().await, 0);

    // An extended-protocol pipeline cut off before its Sync: Postgres
    // would roll the implicit transaction back.
    let mut r = Raw::login(p.addr).await;
    r.send(
        &[
            parse_msg("", "INSERT INTO v VALUES (3)", &[]),
            bind_msg("", "", &[], &[], &[]),
            execute_msg("", 0),
            msg(b'H', b""),
        ]
        .concat(),
    )
    .await;
    for want in [b'1', b'2', b'C'] {
        assert_eq!(r.recv().await.unwrap().0, want);
    }
    drop(r);
    p.wait_pool_idle(0).await;
    still_works(&witness, 3).await;
    witness.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(count().await, 0, "a pipeline without Sync was committed");

    // A pipeline that failed (the backend now skips to Sync) and is then
    // abandoned: the backend is reset and back in the pool at once (within
    // wait_pool_idle's 5 s, far below the 10 s cleanup limit), nothing committed.
    let mut r = Raw::login(p.addr).await;
    r.send(
        &[
            parse_msg("", "INSERT INTO v VALUES (4)", &[]),
            bind_msg("", "", &[], &[], &[]),
            execute_msg("", 0),
            parse_msg("", "SELECT nosuchcolumn FROM v", &[]),
            msg(b'H', b""),
        ]
        .concat(),
    )
    .await;
    for want in [b'1', b'2', b'C', b'E'] {
        assert_eq!(r.recv().await.unwrap().0, want);
    }
    let t = Instant::now();
    drop(r);
    p.wait_pool_idle(0).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "reset took {:?}",
        t.elapsed()
    );
    still_works(&witness, 4).await;
    assert_eq!(
        count().await,
        0,
        "a failed pipeline without Sync was committed"
    );

    // A client gone in the middle of COPY FROM STDIN.
    let mut r = Raw::login(p.addr).await;
    r.send(&msg(b'Q', &cstr("COPY v FROM STDIN"))).await;
    assert_eq!(r.recv().await.unwrap().0, b'G');
    r.send(&msg(b'd', b"4\n5\n")).await;
    drop(r);
    p.wait_pool_idle(0).await;
    still_works(&witness, 4).await;
    assert_eq!(count().await, 0);
    // The backend was reused or replaced, never leaked: one at most.
    let backends: i64 = shard
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(backends <= 1, "{backends} backends for a pool of 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_clients_get_53300() {
    within(30, async {
        let c = temp_cluster();
        let p = start_proxy(&[("s0", c.url("postgres"))], "proxy.max_clients = 3").await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(connect(&p.url()).await);
        }
        let e = tokio_postgres::connect(&p.url(), tokio_postgres::NoTls)
            .await
            .err()
            .expect("a 4th client got in");
        assert_eq!(code_of(&e), "53300", "{e}");
        // The three keep working; when one leaves, a new one gets in.
        for (i, c) in clients.iter().enumerate() {
            still_works(c, i as i32).await;
        }
        drop(clients.pop());
        let mut again = None;
        for _ in 0..50 {
            match tokio_postgres::connect(&p.url(), tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    again = Some(client);
                    break;
                }
                Err(e) => {
                    assert_eq!(code_of(&e), "53300");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        still_works(&again.expect("no room after a client left"), 7).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_shard_fails_its_statements_only() {
    within(60, down_body()).await
}

async fn down_body() {
    let mut cs = temp_clusters(2);
    let nowhere = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        shardproxy::control::cluster::free_port()
    );
    let p = start_proxy(
        &[
            ("s0", cs[0].url("postgres")),
            ("s1", cs[1].url("postgres")),
            ("s2", nowhere),
        ],
        "pool.connect_timeout_ms = 2000",
    )
    .await;
    let client = connect(&p.url()).await;
    let in_tx = connect(&p.url()).await;
    let on = |hint: &str| format!("/* shard={hint} */ SELECT current_setting('port')::int");
    let p0: i32 = client
        .query_one(on("s0").as_str(), &[])
        .await
        .unwrap()
        .get(0);
    let p1: i32 = client
        .query_one(on("s1").as_str(), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(p0 as u16, cs[0].port());
    assert_eq!(p1 as u16, cs[1].port());

    // A shard nobody listens for: 08006 naming it, the session goes on.
    for _ in 0..2 {
        refused_naming(&client, &on("s2"), "s2").await;
    }
    assert_eq!(int_of(&client, on("s1").as_str()).await, p1);

    // A shard that goes down: a transaction open on it dies with it (FATAL
    // 08006, as when Postgres itself goes away); statements for it fail with
    // 08006 naming it; the other shard keeps serving the same session.
    in_tx.batch_execute("BEGIN").await.unwrap();
    assert_eq!(int_of(&in_tx, on("s0").as_str()).await, p0);
    // An idle pooled backend of s0, used just now.
    assert_eq!(int_of(&client, on("s0").as_str()).await, p0);
    cs[0].cluster_mut().stop().unwrap();
    let e = in_tx.simple_query("SELECT 1").await.unwrap_err();
    // Postgres' own "terminating connection" (57P01) may arrive first.
    assert!(
        ["08006", "57P01"].contains(&code_of(&e).as_str()),
        "in-transaction statement on a dead shard: {e}"
    );
    assert!(
        in_tx.simple_query("SELECT 1").await.is_err(),
        "a session whose transaction died with its shard is closed"
    );
    for round in 0..3 {
        refused_naming(&client, &on("s0"), "s0").await;
        // The extended protocol too (routed to the default shard, s0).
        let e = client
            .query_one("SELECT $1::int", &[&1i32])
            .await
            .unwrap_err();
        assert_eq!(code_of(&e), "08006", "round {round}: {e}");
        assert_eq!(int_of(&client, on("s1").as_str()).await, p1);
    }
    // New clients can still connect and use s1 with a session hint.
    let late = connect(&p.url()).await;
    late.batch_execute("SET shardproxy.shard = 's1'")
        .await
        .unwrap();
    assert_eq!(
        int_of(&late, "SELECT current_setting('port')::int").await,
        p1
    );
    let v: i32 = late
        .query_one("SELECT current_setting('port')::int + $1", &[&0i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, p1);

    // The shard comes back on the same port: the same sessions use it again,
    // without restarting the proxy.
    let data = cs[0].data_dir().to_path_buf();
    let _restarted = LocalCluster::start(&data, cs[0].port()).expect("restart s0");
    assert_eq!(int_of(&client, on("s0").as_str()).await, p0);
    let v: i32 = client
        .query_one("SELECT current_setting('port')::int + $1", &[&0i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, p0);
    late.batch_execute("RESET shardproxy.shard").await.unwrap();
    assert_eq!(
        int_of(&late, "SELECT current_setting('port')::int").await,
        p0
    );
}
