//! Transaction pooling against a real Postgres: with fewer backends than
//! clients, each client's prepared statements and SET settings follow it to
//! whichever backend runs its next transaction, and nothing leaks between
//! clients (including through DISCARD ALL / DEALLOCATE ALL).

mod common;

use common::proxy::*;
use common::*;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_clients_across_backends() {
    within(60, prepared_body()).await
}

async fn prepared_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    shard
        .batch_execute(
            "CREATE TABLE kv(k int PRIMARY KEY, v text);
             INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 2").await;

    // A statement prepared on one backend runs on another one once the
    // first is busy with someone else's transaction.
    let a = connect(&p.url()).await;
    let b = connect(&p.url()).await;
    let stmt = a
        .prepare("SELECT pg_backend_pid(), v FROM kv WHERE k = $1")
        .await
        .unwrap();
    let first: i32 = a.query_one(&stmt, &[&1i32]).await.unwrap().get(0);
    b.batch_execute("BEGIN").await.unwrap();
    let held: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let row = a.query_one(&stmt, &[&2i32]).await.unwrap();
    let second: i32 = row.get(0);
    assert_eq!(row.get::<_, String>(1), "v2");
    assert_ne!(second, held, "the backend in b's transaction was lent to a");
    assert!(first == held || first == second, "only two backends exist");
    b.batch_execute("COMMIT").await.unwrap();

    // Many clients, two backends, statements prepared once per client and
    // run in and out of transactions.
    let mut tasks = Vec::new();
    for i in 0..6i32 {
        let url = p.url();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            let shared = client
                .prepare("SELECT v FROM kv WHERE k = $1")
                .await
                .unwrap();
            let own = client
                .prepare(&format!("SELECT $1::int + {i}, pg_backend_pid()"))
                .await
                .unwrap();
            let mut pids = HashSet::new();
            for n in 0..40i32 {
                let k = (n * 7 + i) % 100 + 1;
                if n % 2 == 0 {
                    let tx = client.transaction().await.unwrap();
                    let v: String = tx.query_one(&shared, &[&k]).await.unwrap().get(0);
                    assert_eq!(v, format!("v{k}"));
                    let r = tx.query_one(&own, &[&n]).await.unwrap();
                    assert_eq!(r.get::<_, i32>(0), n + i);
                    pids.insert(r.get::<_, i32>(1));
                    tx.commit().await.unwrap();
                } else {
                    let r = client.query_one(&own, &[&n]).await.unwrap();
                    assert_eq!(r.get::<_, i32>(0), n + i);
                    pids.insert(r.get::<_, i32>(1));
                    let v: String = client.query_one(&shared, &[&k]).await.unwrap().get(0);
                    assert_eq!(v, format!("v{k}"));
                }
                if n % 10 == 9 {
                    // A short-lived statement: prepared, used, closed (Close
                    // is answered by the proxy), then prepared again.
                    let tmp = client
                        .prepare(&format!("SELECT {n} + $1::int"))
                        .await
                        .unwrap();
                    let r: i32 = client.query_one(&tmp, &[&i]).await.unwrap().get(0);
                    assert_eq!(r, n + i);
                    drop(tmp);
                    let again = client
                        .prepare(&format!("SELECT {n} + $1::int"))
                        .await
                        .unwrap();
                    let r: i32 = client.query_one(&again, &[&1i32]).await.unwrap().get(0);
                    assert_eq!(r, n + 1);
                }
            }
            pids
        }));
    }
    let mut all = HashSet::new();
    let mut moved = 0;
    for t in tasks {
        let pids = t.await.unwrap();
        if pids.len() > 1 {
            moved += 1;
        }
        all.extend(pids);
    }
    assert!(
        all.len() <= 2,
        "pool.size = 2 but backends {all:?} ran statements"
    );
    assert!(
        moved > 0,
        "no client's statements ever ran on a second backend; the test proves nothing"
    );
    // Every backend went back to the pool.
    p.wait_pool_idle(0).await;
    // Postgres agrees: at most two proxy backends, none left in a transaction.
    let rows = shard
        .query(
            "SELECT state FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() <= 2, "{} backends", rows.len());
    for r in rows {
        assert_eq!(r.get::<_, String>(0), "idle");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_follow_clients_across_backends() {
    within(60, settings_body()).await
}

async fn settings_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    for i in 0..4 {
        shard
            .batch_execute(&format!(
                "CREATE SCHEMA s{i}; CREATE TABLE s{i}.who(v int); INSERT INTO s{i}.who VALUES ({i});"
            ))
            .await
            .unwrap();
    }
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 2").await;

    let mut tasks = Vec::new();
    for i in 0..4i32 {
        let url = p.url();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            // One SET through the simple protocol, one through the extended.
            client
                .batch_execute(&format!("SET search_path = s{i}, public"))
                .await
                .unwrap();
            client
                .execute(&format!("SET application_name = 'client{i}'"), &[])
                .await
                .unwrap();
            let check = "SELECT current_setting('application_name'), (SELECT v FROM who)";
            let stmt = client.prepare(check).await.unwrap();
            for n in 0..25 {
                let (app, v): (String, i32) = match n % 3 {
                    0 => {
                        let m = client.simple_query(check).await.unwrap();
                        let row = m
                            .iter()
                            .find_map(|m| match m {
                                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                                    r.get(0).unwrap().to_string(),
                                    r.get(1).unwrap().parse().unwrap(),
                                )),
                                _ => None,
                            })
                            .unwrap();
                        row
                    }
                    1 => {
                        let tx = client.transaction().await.unwrap();
                        let r = tx.query_one(&stmt, &[]).await.unwrap();
                        tx.commit().await.unwrap();
                        (r.get(0), r.get(1))
                    }
                    _ => {
                        let r = client.query_one(&stmt, &[]).await.unwrap();
                        (r.get(0), r.get(1))
                    }
                };
                assert_eq!(app, format!("client{i}"), "client {i}, round {n}");
                assert_eq!(v, i, "client {i} saw another client's search_path");
            }
            // SET in a rolled-back transaction is undone; SET LOCAL ends with
            // its transaction.
            client
                .batch_execute("BEGIN; SET application_name = 'oops'; ROLLBACK")
                .await
                .unwrap();
            client
                .batch_execute("BEGIN; SET LOCAL search_path = s3; COMMIT")
                .await
                .unwrap();
            for _ in 0..3 {
                let r = client.query_one(&stmt, &[]).await.unwrap();
                assert_eq!(r.get::<_, String>(0), format!("client{i}"));
                assert_eq!(r.get::<_, i32>(1), i);
            }
            // RESET sticks too.
            client
                .batch_execute("RESET application_name")
                .await
                .unwrap();
            for _ in 0..3 {
                let r = client.query_one(&stmt, &[]).await.unwrap();
                assert_eq!(r.get::<_, String>(0), "");
                assert_eq!(r.get::<_, i32>(1), i);
            }
        }));
    }
    // A client that set nothing never sees the others' settings.
    let plain = connect(&p.url()).await;
    for _ in 0..20 {
        let app: String = plain
            .query_one("SELECT current_setting('application_name')", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(app, "");
        let e = plain.query_one("SELECT v FROM who", &[]).await.unwrap_err();
        assert_eq!(code_of(&e), "42P01", "default search_path has no 'who'");
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A setting from the startup packet holds across transactions too.
    let url = format!("{}?application_name=from_startup", p.url());
    let client = connect(&url).await;
    let other = connect(&p.url()).await;
    other
        .batch_execute("SET application_name = 'other'")
        .await
        .unwrap();
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            client.query_one("SELECT current_setting('application_name')", &[]),
            other.query_one("SELECT current_setting('application_name')", &[]),
        );
        assert_eq!(a.unwrap().get::<_, String>(0), "from_startup");
        assert_eq!(b.unwrap().get::<_, String>(0), "other");
    }
    p.wait_pool_idle(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_does_not_break_prepared_statements() {
    within(60, discard_body()).await
}

async fn discard_body() {
    let c = temp_cluster();
    // One backend: every client shares it, so one client's DISCARD ALL
    // drops the statements the proxy prepared there for the others.
    let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 1").await;
    let a = connect(&p.url()).await;
    let b = connect(&p.url()).await;
    let sa = a.prepare("SELECT $1::int * 3").await.unwrap();
    assert_eq!(
        a.query_one(&sa, &[&2i32]).await.unwrap().get::<_, i32>(0),
        6
    );
    b.batch_execute("SET application_name = 'b'").await.unwrap();
    let sb = b.prepare("SELECT $1::text || '!'").await.unwrap();
    assert_eq!(
        b.query_one(&sb, &[&"x"]).await.unwrap().get::<_, String>(0),
        "x!"
    );

    // DISCARD ALL through the simple protocol.
    b.batch_execute("DISCARD ALL").await.unwrap();
    assert_eq!(
        a.query_one(&sa, &[&3i32]).await.unwrap().get::<_, i32>(0),
        9
    );
    assert_eq!(
        b.query_one(&sb, &[&"y"]).await.unwrap().get::<_, String>(0),
        "y!"
    );
    let app: String = b
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "", "DISCARD ALL resets b's settings");
    // Through the extended protocol: named (prepared, then executed) and
    // unnamed.
    b.execute("DISCARD ALL", &[]).await.unwrap();
    assert_eq!(
        a.query_one(&sa, &[&4i32]).await.unwrap().get::<_, i32>(0),
        12
    );
    b.query_typed("DISCARD ALL", &[]).await.unwrap();
    assert_eq!(
        b.query_one(&sb, &[&"z"]).await.unwrap().get::<_, String>(0),
        "z!"
    );
    assert_eq!(
        a.query_one(&sa, &[&5i32]).await.unwrap().get::<_, i32>(0),
        15
    );
    // DEALLOCATE ALL passes (some pools send it on check-in); the client's
    // statements are re-prepared where needed. DEALLOCATE of a named
    // SQL-level statement is refused (SQL PREPARE is).
    a.batch_execute("DEALLOCATE ALL").await.unwrap();
    let e = a.batch_execute("DEALLOCATE foo").await.unwrap_err();
    assert_eq!(code_of(&e), "0A000");
    assert_eq!(
        a.query_one(&sa, &[&5i32]).await.unwrap().get::<_, i32>(0),
        15
    );
    // New statements after a DISCARD ALL work as well.
    let sa2 = a.prepare("SELECT $1::int - 1").await.unwrap();
    assert_eq!(
        a.query_one(&sa2, &[&5i32]).await.unwrap().get::<_, i32>(0),
        4
    );
    // A DISCARD ALL inside a transaction block is refused by Postgres; the
    // statements survive that too.
    let e = a.batch_execute("BEGIN; DISCARD ALL").await.unwrap_err();
    assert_eq!(code_of(&e), "25001");
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        b.query_one(&sb, &[&"w"]).await.unwrap().get::<_, String>(0),
        "w!"
    );
    assert_eq!(
        a.query_one(&sa, &[&6i32]).await.unwrap().get::<_, i32>(0),
        18
    );
    p.wait_pool_idle(0).await;
}

/// A client's settings are replayed on a backend outside its transaction:
/// a ROLLBACK must not undo them (the backend would then claim the client's
/// settings while holding the defaults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_does_not_undo_replayed_settings() {
    within(60, async {
        let c = temp_cluster();
        let p = start_proxy(&[("s0", c.url("postgres"))], "pool.size = 1").await;
        let a = connect(&p.url()).await;
        let b = connect(&p.url()).await;
        a.batch_execute("SET application_name = 'client-a'")
            .await
            .unwrap();
        b.batch_execute("SET application_name = 'client-b'")
            .await
            .unwrap();
        // The one backend now has b's settings; a's BEGIN … ROLLBACK replays a's.
        a.batch_execute("BEGIN").await.unwrap();
        // Simple protocol, so the statement itself is what takes the backend.
        let show = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
            rows.into_iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap()
        };
        let in_tx = show(a.simple_query("SHOW application_name").await.unwrap());
        assert_eq!(in_tx, "client-a");
        a.batch_execute("ROLLBACK").await.unwrap();
        let after = show(a.simple_query("SHOW application_name").await.unwrap());
        assert_eq!(after, "client-a", "the ROLLBACK undid the replayed setting");
        let theirs: String = b
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(theirs, "client-b");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_backends_close_after_the_idle_timeout_only() {
    within(60, idle_timeout_body()).await
}

/// A backend is stamped idle by the first reaper round after it comes back
/// (no clock read per release) and closed by a later round once the timeout
/// has passed; using it again in between starts its idle time over.
async fn idle_timeout_body() {
    use std::time::Duration;
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        "pool.size = 1\npool.idle_timeout_ms = 300",
    )
    .await;
    let client = connect(&p.url()).await;
    let pid_of = || async {
        let v: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        v
    };
    let first = pid_of().await;
    p.wait_pool_idle(0).await;
    let pool = p.proxy.runtime().pools[0].clone();
    assert_eq!(pool.idle(), 1);

    // Stamped now, kept; used again before the timeout: kept again.
    pool.reap_idle();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pid_of().await, first);
    p.wait_pool_idle(0).await;
    pool.reap_idle();
    assert_eq!(pool.idle(), 1, "a just-used backend was closed");

    // Idle past the timeout since it was stamped: closed on the shard too.
    tokio::time::sleep(Duration::from_millis(400)).await;
    pool.reap_idle();
    assert_eq!(pool.idle(), 0);
    assert!(
        backend_gone(&shard, first).await,
        "the reaped backend is still connected"
    );

    // The next statement opens a new backend.
    assert_ne!(pid_of().await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_clients_and_times_out_with_53300() {
    within(60, full_pool_body()).await
}

/// With one backend: a client waits while another holds it in a
/// transaction, gets it when it is returned (ahead of the holder's own next
/// statement: waiters are served in order), and gets 53300 naming the shard
/// if it is held past the checkout timeout; many clients sharing two
/// backends all finish, on no more than two server processes.
async fn full_pool_body() {
    use std::time::{Duration, Instant};
    let c = temp_cluster();
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        "pool.size = 1\npool.checkout_timeout_ms = 400",
    )
    .await;
    let holder = connect(&p.url()).await;
    let waiter = connect(&p.url()).await;
    let pool = p.proxy.runtime().pools[0].clone();

    // Returned within the timeout: the waiter runs right after the COMMIT.
    // Simple protocol: one checkout per query (a prepared query_one takes
    // two, Parse then Bind, and the holder could come between them).
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let queued = tokio::spawn(async move {
        let r = waiter.simple_query("SELECT 7").await.map(|m| {
            m.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .unwrap_or_default()
        });
        (r, waiter)
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(pool.waiting(), 1, "the second client is not waiting");
    holder.batch_execute("COMMIT").await.unwrap();
    // The returned backend is handed to the waiter: the holder's next
    // statement queues behind it instead of taking the backend back.
    let next = async {
        let r = holder.simple_query("SELECT pg_sleep(0.3)").await;
        (r, Instant::now())
    };
    let queued = async {
        let r = queued.await;
        (r, Instant::now())
    };
    let ((next, next_at), (queued, served_at)) = tokio::join!(next, queued);
    next.unwrap();
    let (r, waiter) = queued.unwrap();
    assert_eq!(r.unwrap(), "7");
    assert!(
        served_at < next_at,
        "the waiter ran after the holder's next statement"
    );
    assert_eq!(pool.waiting(), 0);

    // Held past the timeout: 53300 naming the shard; the session carries on.
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let e = waiter.query_one("SELECT 8", &[]).await.unwrap_err();
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "53300");
    assert!(db.message().contains("\"s0\""), "{}", db.message());
    holder.batch_execute("COMMIT").await.unwrap();
    let v: i32 = waiter.query_one("SELECT 9", &[]).await.unwrap().get(0);
    assert_eq!(v, 9);
    p.wait_pool_idle(0).await;
    assert_eq!(pool.idle(), 1);
    drop((holder, waiter));

    // Twelve clients, two backends, short transactions back to back.
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        "pool.size = 2\npool.checkout_timeout_ms = 10000",
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = p.url();
        tasks.push(tokio::spawn(async move {
            let client = connect(&url).await;
            let mut pids = HashSet::new();
            for j in 0..40 {
                let tx = format!("BEGIN; SELECT {i} * 1000 + {j}; COMMIT");
                client.batch_execute(&tx).await.unwrap();
                let pid: i32 = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .unwrap()
                    .get(0);
                pids.insert(pid);
            }
            pids
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert!(
        all.len() <= 2,
        "pool.size = 2 but backends {all:?} ran statements"
    );
    p.wait_pool_idle(0).await;
    assert_eq!(p.proxy.runtime().pools[0].waiting(), 0);
}

/// standard_conforming_strings stays on through the proxy (its router reads
/// literals that way): SET, SET LOCAL, set_config and the startup packet
/// cannot turn it off (0A000, the session goes on), and a role default of
/// off does not reach the proxy's backends. Other set_config calls work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_conforming_strings_stays_on() {
    within(60, standard_strings_body()).await
}

async fn standard_strings_body() {
    let c = temp_cluster();
    let shard = connect(&c.url("postgres")).await;
    shard
        .batch_execute("ALTER ROLE postgres SET standard_conforming_strings = off")
        .await
        .unwrap();
    // One backend: a backend left with the setting off would be the next
    // client's.
    let p = start_proxy(
        &[("s0", c.url("postgres"))],
        "proxy.auth = \"trust\"\npool.size = 1",
    )
    .await;
    let client = connect(&p.url()).await;
    assert_eq!(scs(&client).await, "on");
    // What keeps it on, and other settings, pass.
    client
        .batch_execute(
            "SET standard_conforming_strings = on; SET standard_conforming_strings TO DEFAULT",
        )
        .await
        .unwrap();
    for (sql, v) in [
        (
            "SELECT set_config('application_name', 'via proxy', false)",
            "via proxy",
        ),
        (
            "SELECT set_config('application_name', 'again', false)",
            "again",
        ),
    ] {
        let rows = client.simple_query(sql).await.unwrap();
        assert!(
            matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(v))
        );
    }
    let v: String = client
        .query_one(
            "SELECT set_config('application_name', $1, false)",
            &[&"param"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "param");
    assert_eq!(scs(&client).await, "on");
    // The startup packet.
    let mut r = Raw::connect(p.addr).await;
    r.send(&startup_packet(
        196608,
        &[("user", USER), ("standard_conforming_strings", "off")],
    ))
    .await;
    let (code, message) = r.error_then_close().await.expect("an error, then close");
    assert_eq!(code, "0A000", "{message}");
    // Routes the planner cannot see (pg_settings' update rule, a function)
    // end the session before its next statement; the backend is closed.
    let sneaky = connect(&p.url()).await;
    sneaky
        .simple_query(
            "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        )
        .await
        .unwrap();
    let e = sneaky.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code_of(&e), "0A000", "{e:?}");
    assert_eq!(scs(&client).await, "on", "the backend was not pooled");
    // A backslash in a literal means what it does with the setting on.
    let rows = client.simple_query(r"SELECT 'a\'").await.unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(r"a\"))
    );
}

async fn scs(c: &tokio_postgres::Client) -> String {
    c.query_one("SHOW standard_conforming_strings", &[])
        .await
        .unwrap()
        .get(0)
}
