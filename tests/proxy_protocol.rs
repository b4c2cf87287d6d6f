//! The wire protocol through the proxy against a real Postgres: the simple
//! and extended query protocols (text and binary formats, unnamed and named
//! statements, portals with row limits, pipelining), transactions and their
//! states, COPY in both directions, and cancel requests.

mod common;

use common::proxy::*;
use common::slow_cancels::*;
use common::*;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn command_counts(msgs: &[SimpleQueryMessage]) -> Vec<u64> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_transactions_and_copy() {
    within(60, protocol_body()).await
}

async fn protocol_body() {
    let c = temp_cluster();
    let p = start_proxy(&[("s0", c.url("postgres"))], "").await;
    let shard = connect(&c.url("postgres")).await;
    let client = connect(&p.url()).await;

    // Simple protocol: one statement, then several in one string.
    let m = client
        .simple_query("SELECT 1 AS a, 'x' AS b, NULL AS c")
        .await
        .unwrap();
    assert_eq!(simple_rows(&m), vec![vec!["1", "x", "NULL"]]);
    let m = client
        .simple_query(
            "CREATE TABLE t(id int PRIMARY KEY, v text); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'); \
             UPDATE t SET v = v || '!' WHERE id = 2; \
             SELECT id, v FROM t ORDER BY id",
        )
        .await
        .unwrap();
    assert_eq!(simple_rows(&m), vec![vec!["1", "a"], vec!["2", "b!"]]);
    assert_eq!(command_counts(&m), vec![0, 2, 1, 2]);
    // The statements really ran on the shard.
    let n: i64 = shard
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // An error in a multi-statement string stops it there.
    let e = client
        .simple_query("INSERT INTO t VALUES (3, 'c'); SELECT 1/0; INSERT INTO t VALUES (4, 'd')")
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "22012");
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "an implicit transaction fails as a whole");

    // Extended protocol with binary parameters and results of several types.
    let row = client
        .query_one(
            "SELECT $1::int8 + 1, $2::text || '!', $3::bytea, $4::float8 * 2, $5::int4 IS NULL",
            &[&41i64, &"hé", &vec![0u8, 255, 7], &1.25f64, &None::<i32>],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hé!");
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255, 7]);
    assert_eq!(row.get::<_, f64>(3), 2.5);
    assert!(row.get::<_, bool>(4));
    // Unnamed statement in one round trip.
    let row = client
        .query_typed("SELECT $1 * 2", &[(&21i32, Type::INT4)])
        .await
        .unwrap();
    assert_eq!(row[0].get::<_, i32>(0), 42);
    // Named statement prepared once, run many times.
    let stmt = client
        .prepare("SELECT v FROM t WHERE id = $1")
        .await
        .unwrap();
    for (id, v) in [(1, "a"), (2, "b!"), (1, "a")] {
        let r = client.query_one(&stmt, &[&id]).await.unwrap();
        assert_eq!(r.get::<_, String>(0), v);
    }
    // Pipelined requests (sent before the first answer arrives).
    let (a, b, d) = tokio::join!(
        client.query_one(&stmt, &[&1i32]),
        client.query_one("SELECT $1::text", &[&"pipelined"]),
        client.query_one(&stmt, &[&2i32]),
    );
    assert_eq!(a.unwrap().get::<_, String>(0), "a");
    assert_eq!(b.unwrap().get::<_, String>(0), "pipelined");
    assert_eq!(d.unwrap().get::<_, String>(0), "b!");
    // An extended-protocol error outside a transaction, then business as usual.
    let e = client
        .query_one("SELECT 1 / $1::int", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "22012");
    let e = client.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(code_of(&e), "42601");
    assert_eq!(
        client
            .query_one(&stmt, &[&1i32])
            .await
            .unwrap()
            .get::<_, String>(0),
        "a"
    );

    // Text and binary formats chosen per parameter and per result column.
    let mut raw = Raw::login(p.addr).await;
    let mut batch = parse_msg("", "SELECT $1::int4 + 1, $2::text, $3::int8", &[]);
    batch.extend(bind_msg(
        "",
        "",
        &[0, 0, 1],
        &[Some(b"41"), Some(b"t\xc3\xa9xt"), Some(&7i64.to_be_bytes())],
        &[0, 0, 1],
    ));
    batch.extend(execute_msg("", 0));
    batch.extend(sync_msg());
    raw.send(&batch).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DCZ", "{:?}", first_error(&r));
    assert_eq!(
        data_rows(&r)[0],
        vec![
            Some(b"42".to_vec()),
            Some("téxt".as_bytes().to_vec()),
            Some(7i64.to_be_bytes().to_vec())
        ]
    );
    // The unnamed statement survives the Sync (and the backend going back to
    // the pool): a later Bind of "" still finds it.
    raw.send(
        &[
            bind_msg(
                "",
                "",
                &[1, 1, 1],
                &[
                    Some(&1i32.to_be_bytes()),
                    Some(b"x"),
                    Some(&2i64.to_be_bytes()),
                ],
                &[1],
            ),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat(),
    )
    .await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "2DCZ", "{:?}", first_error(&r));
    assert_eq!(data_rows(&r)[0][0], Some(2i32.to_be_bytes().to_vec()));

    // Portals with a row limit, inside a transaction.
    let mut client = client;
    {
        let tx = client.transaction().await.unwrap();
        let s = tx
            .prepare("SELECT g FROM generate_series(1, 10) g")
            .await
            .unwrap();
        let portal = tx.bind(&s, &[]).await.unwrap();
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        loop {
            let rows = tx.query_portal(&portal, 3).await.unwrap();
            if rows.is_empty() {
                break;
            }
            sizes.push(rows.len());
            all.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        }
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        assert_eq!(all, (1..=10).collect::<Vec<_>>());
        tx.commit().await.unwrap();
    }
    // Row limits on the raw wire: PortalSuspended, then the rest.
    raw.send(&[msg(b'Q', &cstr("BEGIN"))].concat()).await;
    assert_eq!(raw.until_ready().await.last().unwrap().1, b"T");
    raw.send(
        &[
            parse_msg("", "SELECT generate_series(1, 5)", &[]),
            bind_msg("p1", "", &[], &[], &[]),
            execute_msg("p1", 2),
            execute_msg("p1", 2),
            execute_msg("p1", 2),
            sync_msg(),
        ]
        .concat(),
    )
    .await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DDsDDsDCZ");
    raw.query("COMMIT").await;

    // Transactions: commit keeps, rollback discards.
    {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (10, 'committed')", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO t VALUES (11, 'rolled back')", &[])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    let ids: Vec<i32> = shard
        .query("SELECT id FROM t WHERE id >= 10 ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![10]);
    // An error inside a transaction: state 'E', statements refused with
    // 25P02 until ROLLBACK, which works and leaves the session usable.
    let r = raw.query("BEGIN").await;
    assert_eq!(r.last().unwrap().1, b"T");
    let r = raw.query("INSERT INTO t VALUES (12, 'lost')").await;
    assert_eq!(r.last().unwrap().1, b"T");
    let r = raw.query("SELECT 1/0").await;
    assert_eq!(first_error(&r).unwrap().0, "22012");
    assert_eq!(r.last().unwrap().1, b"E");
    let r = raw.query("SELECT 1").await;
    assert_eq!(first_error(&r).unwrap().0, "25P02");
    assert_eq!(r.last().unwrap().1, b"E");
    // Extended protocol in the failed transaction: refused the same way.
    raw.send(
        &[
            parse_msg("", "SELECT 2", &[]),
            bind_msg("", "", &[], &[], &[]),
            execute_msg("", 0),
            sync_msg(),
        ]
        .concat(),
    )
    .await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r).unwrap().0, "25P02");
    assert_eq!(r.last().unwrap().1, b"E");
    let r = raw.query("ROLLBACK").await;
    assert_eq!(tags(&r), "CZ");
    assert_eq!(r.last().unwrap().1, b"I");
    let r = raw.query("SELECT count(*) FROM t WHERE id = 12").await;
    assert_eq!(data_rows(&r)[0][0], Some(b"0".to_vec()));
    // The same through tokio-postgres.
    {
        let tx = client.transaction().await.unwrap();
        let e = tx.execute("SELECT 1/0", &[]).await.unwrap_err();
        assert_eq!(code_of(&e), "22012");
        let e = tx.execute("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(code_of(&e), "25P02");
        tx.rollback().await.unwrap();
    }
    assert_eq!(
        client
            .query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );

    // COPY FROM STDIN, then COPY TO STDOUT.
    client
        .batch_execute("CREATE TABLE c(id int, note text)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY c (id, note) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let mut expected = String::new();
    for chunk in 0..20 {
        let mut data = String::new();
        for i in 0..500 {
            let id = chunk * 500 + i;
            data.push_str(&format!("{id}\tnote {id}\\ttab\n"));
        }
        expected.push_str(&data);
        sink.send(bytes::Bytes::from(data)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 10_000);
    let n: i64 = shard
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10_000);
    let stream = client
        .copy_out("COPY (SELECT id, note FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // A COPY the server rejects mid-stream: error, and the session goes on.
    let sink = client.copy_in("COPY c (id) FROM STDIN").await.unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"1\nnot a number\n"))
        .await
        .unwrap();
    let e = sink.finish().await.unwrap_err();
    assert_eq!(code_of(&e), "22P02");
    // COPY inside a transaction that rolls back.
    client.batch_execute("BEGIN").await.unwrap();
    let sink = client.copy_in("COPY c (id) FROM STDIN").await.unwrap();
    pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(b"-1\n-2\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    client.batch_execute("ROLLBACK").await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM c", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10_000);

    // Extended-protocol COPY on the raw wire, the way libpq drives it
    // (Bind/Execute/Sync, data, CopyDone, Sync), with the last Sync sent late.
    raw.send(&[parse_msg("cp", "COPY c (id) FROM STDIN", &[]), sync_msg()].concat())
        .await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let start = [bind_msg("", "cp", &[], &[], &[]), execute_msg("", 0)].concat();
    raw.send(&[start.clone(), sync_msg()].concat()).await;
    assert_eq!(raw.recv().await.unwrap().0, b'2');
    assert_eq!(raw.recv().await.unwrap().0, b'G');
    raw.send(&[msg(b'd', b"100001\n100002\n"), msg(b'c', b"")].concat())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.send(&sync_msg()).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "CZ");
    assert_eq!(r[0].1, b"COPY 2\0");
    assert_eq!(r[1].1, b"I");
    // Flush instead of Sync after Execute.
    raw.send(&[start.clone(), msg(b'H', b"")].concat()).await;
    assert_eq!(raw.recv().await.unwrap().0, b'2');
    assert_eq!(raw.recv().await.unwrap().0, b'G');
    raw.send(&[msg(b'd', b"100003\n"), msg(b'c', b""), sync_msg()].concat())
        .await;
    assert_eq!(tags(&raw.until_ready().await), "CZ");
    // CopyFail: the COPY fails with 57014, nothing is kept.
    raw.send(&[start.clone(), sync_msg()].concat()).await;
    assert_eq!(raw.recv().await.unwrap().0, b'2');
    assert_eq!(raw.recv().await.unwrap().0, b'G');
    raw.send(
        &[
            msg(b'd', b"100004\n"),
            msg(b'f', &cstr("client gave up")),
            sync_msg(),
        ]
        .concat(),
    )
    .await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r).unwrap().0, "57014");
    assert_eq!(r.last().unwrap().1, b"I");
    let n: i64 = shard
        .query_one("SELECT count(*) FROM c WHERE id > 100000", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    let r = raw.query("SELECT 1").await;
    assert_eq!(tags(&r), "TDCZ");
    p.wait_pool_idle(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_reach_the_right_query_only() {
    within(60, cancel_body()).await
}

/// Postgres signals a cancelled backend twice, and the second signal can
/// land after the cancelled statement ended: a backend runs no statement
/// (another client's, or its own client's next one in a transaction) until
/// the server has finished the cancel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_runs_nothing_more_until_its_cancel_is_done() {
    within(60, async {
        let c = temp_cluster();
        let slow = slow_cancels(c.port()).await;
        // One backend: the other client must get the cancelled one.
        let p = start_proxy(&[("s0", slow.url("postgres"))], "pool.size = 1").await;
        let a = connect(&p.url()).await;
        let b = connect(&p.url()).await;
        let watch = connect(&c.url("postgres")).await;

        // Outside a transaction: another client's statement waits.
        let (a, cancel) = start_and_cancel(a, &watch, "SELECT pg_sleep(30)").await;
        p.wait_pool_idle(0).await;
        slow.finished(1).await;
        let other = tokio::spawn(async move {
            let r = b.query_one("SELECT 7", &[]).await;
            (r, b)
        });
        let (row, _b) = slow
            .waits_for_release(other, 1, "another client's statement")
            .await;
        assert_eq!(row.unwrap().get::<_, i32>(0), 7);
        cancel.await.unwrap().unwrap();

        // Inside a transaction the client keeps its backend: its ROLLBACK waits.
        a.batch_execute("BEGIN").await.unwrap();
        let (a, cancel) = start_and_cancel(a, &watch, "SELECT pg_sleep(31)").await;
        slow.finished(2).await;
        let rollback = tokio::spawn(async move {
            let r = a.batch_execute("ROLLBACK").await;
            (r, a)
        });
        let (r, a) = slow
            .waits_for_release(rollback, 1, "the transaction's next statement")
            .await;
        r.unwrap();
        cancel.await.unwrap().unwrap();
        let row = a.query_one("SELECT 8", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 8);
        assert_eq!(p.proxy.runtime().pools[0].connects(), 1);
    })
    .await
}

/// A cancel the server never confirms within `connect_timeout_ms` may still
/// signal later: its backend is closed rather than reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_whose_cancel_is_never_confirmed_is_closed() {
    within(60, async {
        let c = temp_cluster();
        let slow = slow_cancels(c.port()).await;
        let p = start_proxy(
            &[("s0", slow.url("postgres"))],
            "pool.size = 1\npool.connect_timeout_ms = 1500",
        )
        .await;
        let a = connect(&p.url()).await;
        let watch = connect(&c.url("postgres")).await;
        let old: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let (a, cancel) = start_and_cancel(a, &watch, "SELECT pg_sleep(30)").await;
        cancel.await.unwrap().unwrap();
        // The next statement waits for the cancel until the proxy gives up
        // on it (1.5 s), then finds the backend doomed and opens another.
        let new: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_ne!(new, old, "the doomed backend was reused");
        assert_eq!(p.proxy.runtime().pools[0].connects(), 2);
        assert!(
            backend_gone(&watch, old).await,
            "the doomed backend was not closed"
        );
        slow.release.add_permits(1);
    })
    .await
}

async fn cancel_body() {
    let c = temp_cluster();
    let p = start_proxy(&[("s0", c.url("postgres"))], "").await;
    let client = connect(&p.url()).await;
    let bystander = connect(&p.url()).await;

    // tokio-postgres' own cancel: a long sleep ends within a second with 57014.
    let token = client.cancel_token();
    let q = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(30)").await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    token.cancel_query(NoTls).await.unwrap();
    let (r, client) = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .expect("query not cancelled")
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(code_of(&r.unwrap_err()), "57014");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    // Extended protocol too, and the session goes on afterwards.
    let token = client.cancel_token();
    let q = tokio::spawn(async move {
        let r = client.query("SELECT pg_sleep($1)", &[&30f64]).await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(NoTls).await.unwrap();
    let (r, client) = tokio::time::timeout(Duration::from_secs(2), q)
        .await
        .expect("query not cancelled")
        .unwrap();
    assert_eq!(code_of(&r.unwrap_err()), "57014");
    assert_eq!(
        client
            .query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    assert_eq!(
        bystander
            .query_one("SELECT 6", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        6
    );

    // Wrong keys cancel nothing: the query runs to its end.
    let mut raw = Raw::login(p.addr).await;
    let (pid, secret) = raw.key;
    raw.send(&msg(b'Q', &cstr("SELECT pg_sleep(1), 'finished'")))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (kp, ks) in [
        (pid, secret.wrapping_add(1)),
        (pid.wrapping_add(1000), secret),
        (0, 0),
    ] {
        let mut k = Raw::connect(p.addr).await;
        k.send(&cancel_packet(kp, ks)).await;
        assert!(
            k.recv().await.is_none(),
            "cancel connection closes silently"
        );
    }
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r), None, "a wrong key cancelled the query");
    assert_eq!(data_rows(&r)[0][1], Some(b"finished".to_vec()));
    // The right key does.
    raw.send(&msg(b'Q', &cstr("SELECT pg_sleep(30)"))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut k = Raw::connect(p.addr).await;
    k.send(&cancel_packet(pid, secret)).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r).unwrap().0, "57014");
    // A cancel for an idle session is harmless.
    let mut k = Raw::connect(p.addr).await;
    k.send(&cancel_packet(pid, secret)).await;
    assert!(k.recv().await.is_none());
    let r = raw.query("SELECT 3").await;
    assert_eq!(data_rows(&r)[0][0], Some(b"3".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_in_one_write_and_split_across_writes() {
    within(60, pipelined_body()).await
}

/// Batches that arrive together are taken from the read buffer in one pass
/// (see `extended_message`): each still gets its own answer, an error skips
/// only to its own Sync, and a batch cut mid-frame waits for the rest.
async fn pipelined_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    shard
        .batch_execute(
            "CREATE TABLE k(id int PRIMARY KEY, v text); INSERT INTO k VALUES (5, 'five')",
        )
        .await
        .unwrap();
    let p = start_proxy_with(
        &[("s0", c.url("postgres"))],
        "",
        "[[tables]]\nname = \"k\"\nshard_key = \"id\"\n",
    )
    .await;
    let mut raw = Raw::login(p.addr).await;
    let batch = |sql: &str, value: &[u8]| [parse_bind_execute("", sql, value), sync_msg()].concat();
    let three = [
        batch("SELECT $1::int + 1", b"41"),
        batch("SELECT 1 / $1::int", b"0"),
        batch("SELECT v FROM k WHERE id = $1", b"5"),
    ]
    .concat();
    raw.send(&three).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DCZ");
    assert_eq!(data_rows(&r)[0][0], Some(b"42".to_vec()));
    // Postgres plans (and folds 1 / 0) at Bind.
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "1EZ");
    assert_eq!(first_error(&r).unwrap().0, "22012");
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DCZ", "{:?}", first_error(&r));
    assert_eq!(data_rows(&r)[0][0], Some(b"five".to_vec()));

    // A key the proxy cannot route, in a batch ended by Flush: as from
    // Postgres, the Parse before it completes, the error comes at once and
    // what follows is skipped up to Sync, then the next batch in the same
    // write runs.
    let flushed = [
        parse_msg("", "SELECT v FROM k WHERE id = $1", &[]),
        bind_msg("", "", &[], &[Some(b"not a number")], &[]),
        msg(b'H', &[]),
        execute_msg("", 0),
        sync_msg(),
        batch("SELECT v FROM k WHERE id = $1", b"5"),
    ]
    .concat();
    raw.send(&flushed).await;
    let r = raw.until_ready().await;
    assert_eq!(first_error(&r).unwrap().0, "22P02", "{}", tags(&r));
    assert_eq!(tags(&r), "1EZ");
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DCZ", "{:?}", first_error(&r));

    // One batch cut in the middle of a frame.
    let one = batch("SELECT $1::text || '!'", b"cut");
    raw.send(&one[..7]).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    raw.send(&one[7..]).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DCZ");
    assert_eq!(data_rows(&r)[0][0], Some(b"cut!".to_vec()));

    // A named statement whose first Bind cannot be routed still exists
    // afterwards (Postgres keeps a Parse that succeeded before the error).
    let first_try = [
        parse_bind_execute("byk", "SELECT v FROM k WHERE id = $1", b"not a number"),
        sync_msg(),
    ]
    .concat();
    raw.send(&first_try).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "1EZ");
    assert_eq!(first_error(&r).unwrap().0, "22P02");
    let mut direct = Raw::connect(([127, 0, 0, 1], c.port()).into()).await;
    direct.startup("postgres", "").await;
    direct.send(&first_try).await;
    let d = direct.until_ready().await;
    assert_eq!(
        (tags(&d), first_error(&d).unwrap().0),
        ("1EZ".into(), "22P02".into())
    );
    let again = [bind_execute("byk", b"5"), sync_msg()].concat();
    raw.send(&again).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "2DCZ", "{:?}", first_error(&r));
    assert_eq!(data_rows(&r)[0][0], Some(b"five".to_vec()));

    // Several unnamed statements in one batch, the first one again last:
    // each Bind runs the statement of the Parse just before it.
    let mixed = [
        parse_bind_execute("", "SELECT $1::int + 1", b"41"),
        parse_bind_execute("", "SELECT v FROM k WHERE id = $1", b"5"),
        parse_bind_execute("", "SELECT $1::int + 1", b"6"),
        sync_msg(),
    ]
    .concat();
    raw.send(&mixed).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "12DC12DC12DCZ", "{:?}", first_error(&r));
    let values: Vec<_> = data_rows(&r)
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(
        values,
        [
            Some(b"42".to_vec()),
            Some(b"five".to_vec()),
            Some(b"7".to_vec())
        ]
    );
}

/// The unnamed statement of a batch sent to the backend as the client wrote
/// it (Parse, Bind, Describe, Execute, Sync) stays the client's: a later
/// Bind alone runs it again, on another backend too; an error in such a
/// batch ends at its Sync; a batch ending in Flush is answered before its
/// Sync; a Describe of a named statement still works beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statement_batches_sent_as_written() {
    within(60, async {
        let c = temp_cluster();
        let p = start_proxy(&[("s0", c.url("postgres"))], "").await;
        let mut a = Raw::login(p.addr).await;
        let mut describe_portal = vec![b'P'];
        describe_portal.extend(cstr(""));
        let describe_portal = msg(b'D', &describe_portal);
        let batch = |sql: &str, v: &[u8]| {
            let mut b = parse_msg("", sql, &[]);
            b.extend(bind_msg("", "", &[], &[Some(v)], &[]));
            b.extend(&describe_portal);
            b.extend(execute_msg("", 0));
            b
        };
        let mut first = batch("SELECT $1::int + 1", b"41");
        first.extend(sync_msg());
        a.send(&first).await;
        let r = a.until_ready().await;
        assert_eq!(tags(&r), "12TDCZ");
        assert_eq!(data_rows(&r)[0][0], Some(b"42".to_vec()));

        // Another client holds the backend that ran it: A's Bind alone
        // lands on a new one, where the proxy prepares the statement first.
        let mut b = Raw::login(p.addr).await;
        assert_eq!(tags(&b.query("BEGIN").await), "CZ");
        let again = [bind_execute("", b"1"), sync_msg()].concat();
        a.send(&again).await;
        let r = a.until_ready().await;
        assert_eq!(tags(&r), "2DCZ");
        assert_eq!(data_rows(&r)[0][0], Some(b"2".to_vec()));
        assert_eq!(tags(&b.query("COMMIT").await), "CZ");

        // An error: the rest of the batch is skipped up to its Sync.
        let mut bad = batch("SELEC 1", b"1");
        bad.extend(sync_msg());
        a.send(&bad).await;
        let r = a.until_ready().await;
        assert_eq!(tags(&r), "EZ");
        assert_eq!(first_error(&r).unwrap().0, "42601");
        assert_eq!(
            data_rows(&a.query("SELECT 3").await)[0][0],
            Some(b"3".to_vec())
        );

        // Flush: the answers come before the Sync does.
        let mut flushed = batch("SELECT $1::int * 2", b"21");
        flushed.extend(msg(b'H', &[]));
        a.send(&flushed).await;
        let mut got = String::new();
        while got.len() < 4 {
            let (tag, body) = a.recv().await.expect("answer before Sync");
            got.push(tag as char);
            if tag == b'D' {
                assert!(body.ends_with(b"42"));
            }
        }
        assert_eq!(got, "12TD");
        a.send(&sync_msg()).await;
        assert_eq!(tags(&a.until_ready().await), "CZ");

        // A named statement beside the unnamed one.
        let mut named = parse_msg("n1", "SELECT 'named'", &[]);
        named.extend(batch("SELECT $1::text", b"unnamed"));
        let mut describe_named = vec![b'S'];
        describe_named.extend(cstr("n1"));
        named.extend(msg(b'D', &describe_named));
        named.extend(bind_msg("p1", "n1", &[], &[], &[]));
        named.extend(execute_msg("p1", 0));
        named.extend(sync_msg());
        a.send(&named).await;
        let r = a.until_ready().await;
        assert_eq!(tags(&r), "112TDCtT2DCZ");
        let rows = data_rows(&r);
        assert_eq!(rows[0][0], Some(b"unnamed".to_vec()));
        assert_eq!(rows[1][0], Some(b"named".to_vec()));
    })
    .await
}
