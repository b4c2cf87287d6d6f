//! Tests of the test harness itself: real clusters start, answer, are
//! configured for logical replication and 2PC, and are really gone after stop.

mod common;

use common::*;
use std::time::Instant;

#[test]
fn two_clusters_start_answer_and_stop() {
    let t = Instant::now();
    let mut clusters = temp_clusters(2);
    eprintln!("started 2 clusters in {:?}", t.elapsed());
    assert_ne!(clusters[0].port(), clusters[1].port());
    for c in &clusters {
        assert_eq!(psql(&c.url("postgres"), "SELECT 40 + 2"), "42");
        assert_eq!(psql(&c.url("postgres"), "SHOW wal_level"), "logical");
        assert_eq!(
            psql(&c.url("postgres"), "SHOW max_prepared_transactions"),
            "64"
        );
        let port = psql(&c.url("postgres"), "SHOW port");
        assert_eq!(port, c.port().to_string());
    }
    // The two are distinct servers: a table made on one is absent on the other.
    psql(
        &clusters[0].url("postgres"),
        "CREATE TABLE only_here(x int)",
    );
    assert_eq!(
        psql(
            &clusters[1].url("postgres"),
            "SELECT count(*) FROM pg_class WHERE relname = 'only_here'"
        ),
        "0"
    );

    let pid = clusters[0].pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    clusters[0].cluster_mut().stop().unwrap();
    assert!(!clusters[0].is_running());
    let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.contains(") Z"),
    };
    assert!(gone, "postmaster {pid} still alive after stop");
    // Stopping again is a no-op, and the other cluster is unaffected.
    clusters[0].cluster_mut().stop().unwrap();
    assert_eq!(psql(&clusters[1].url("postgres"), "SELECT 1"), "1");
}

#[test]
fn tokio_postgres_connects() {
    let t = Instant::now();
    let c = temp_cluster();
    eprintln!("temp_cluster() took {:?}", t.elapsed());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let v: i64 = rt.block_on(async {
        let client = connect(&c.url("postgres")).await;
        client
            .query_one("SELECT 7::int8 * 6", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(v, 42);
}

#[test]
fn restart_on_same_dir_keeps_data_and_drop_stops_the_server() {
    let mut c = temp_cluster();
    psql(
        &c.url("postgres"),
        "CREATE TABLE kept(x int); INSERT INTO kept VALUES (5)",
    );
    let data = c.data_dir().to_path_buf();
    let port = c.port();
    c.cluster_mut().stop().unwrap();
    let again = shardproxy::control::cluster::LocalCluster::start(&data, port).unwrap();
    assert_eq!(psql(&again.url("postgres"), "SELECT x FROM kept"), "5");
    let pid = again.pid();
    drop(again);
    assert!(
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z")),
        "drop did not stop postmaster {pid}"
    );
}

#[test]
fn start_error_names_the_problem() {
    let c = temp_cluster();
    // Same port as a running server: the second start must fail with the log tail.
    let dir = temp_dir();
    let err = shardproxy::control::cluster::LocalCluster::start(&dir.path().join("d"), c.port())
        .unwrap_err();
    assert!(err.contains("server.log"), "{err}");
    assert!(
        err.to_lowercase().contains("address already in use") || err.contains("could not"),
        "{err}"
    );
}

#[test]
fn demo_data_loads_with_its_counts_and_hot_customer() {
    use shardproxy::control::cluster::demo::{self, DEMO_SCHEMA};
    let c = temp_cluster();
    psql(&c.url("postgres"), "CREATE DATABASE shop");
    psql(&c.url("shop"), DEMO_SCHEMA);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Straight into one Postgres: the SQL the proxy will route is valid as is.
    let t = Instant::now();
    let counts = rt.block_on(demo::load_data(&c.url("shop"))).unwrap();
    eprintln!("loaded {counts:?} in {:?}", t.elapsed());
    let url = c.url("shop");
    assert_eq!(psql(&url, "SELECT count(*) FROM products"), "100");
    assert_eq!(psql(&url, "SELECT count(*) FROM customers"), "1000");
    assert_eq!(
        psql(&url, "SELECT count(*) FROM orders"),
        counts.orders.to_string()
    );
    assert_eq!(
        psql(&url, "SELECT count(*) FROM payments"),
        counts.payments.to_string()
    );
    assert_eq!(
        psql(&url, "SELECT count(*) FROM orders WHERE customer_id = 42"),
        counts.hot_customer_orders.to_string()
    );
    // Every payment matches an order of the same customer and amount.
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) FROM payments p JOIN orders o \
             ON o.customer_id = p.customer_id AND o.order_id = p.order_id AND o.total = p.amount"
        ),
        counts.payments.to_string()
    );
    // Loading twice is refused (primary keys), not silently duplicated.
    assert!(rt.block_on(demo::load_data(&c.url("shop"))).is_err());
}

#[test]
fn demo_prepare_creates_shards_and_rerun_reuses_them() {
    use shardproxy::config::Config;
    use shardproxy::control::cluster::demo::{prepare, print_banner, DemoOptions};
    use shardproxy::control::cluster::free_port;
    let tmp = temp_dir();
    let opts = DemoOptions {
        shards: 2,
        port: free_port(),
        data_dir: tmp.path().join("demo"),
    };
    let t = Instant::now();
    let setup = prepare(&opts).unwrap();
    eprintln!("demo prepare (2 durable shards) took {:?}", t.elapsed());
    assert!(setup.fresh);
    assert_eq!(setup.clusters.len(), 2);
    assert_eq!(
        setup.config.proxy.listen,
        format!("127.0.0.1:{}", opts.port)
    );
    assert!(setup.config.table("orders").unwrap().shard_key.is_some());
    assert!(setup.config.table("products").unwrap().reference);
    assert_eq!(Config::load(&setup.config_path).unwrap(), {
        let mut c = setup.config.clone();
        c.source = Some(setup.config_path.clone());
        c
    });
    let ports: Vec<u16> = setup.clusters.iter().map(|c| c.port()).collect();
    for c in &setup.clusters {
        assert_eq!(psql(&c.url("shop"), "SHOW fsync"), "on");
        assert_eq!(
            psql(
                &c.url("shop"),
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'"
            ),
            "customers,orders,payments,products"
        );
    }
    psql(
        &setup.clusters[0].url("shop"),
        "INSERT INTO customers VALUES (1, 'a', 'b')",
    );
    let banner = print_banner(&setup);
    assert!(
        banner.contains(&format!("postgres://app:app@127.0.0.1:{}/shop", opts.port)),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "postgres://admin:admin@127.0.0.1:{}/shardproxy",
            opts.port
        )),
        "{banner}"
    );
    let pids: Vec<u32> = setup.clusters.iter().map(|c| c.pid()).collect();
    drop(setup);
    for pid in pids {
        assert!(std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.contains(") Z")));
    }

    // A second run finds the same shards, ports and rows, and is not fresh.
    let again = prepare(&opts).unwrap();
    assert!(!again.fresh);
    assert_eq!(
        again.clusters.iter().map(|c| c.port()).collect::<Vec<_>>(),
        ports
    );
    assert_eq!(
        psql(&again.clusters[0].url("shop"), "SELECT name FROM customers"),
        "a"
    );
    drop(again);

    // Asking for a different shard count is refused with a way out.
    let err = prepare(&DemoOptions {
        shards: 3,
        ..opts.clone()
    })
    .unwrap_err();
    assert!(err.contains("--shards 2"), "{err}");
}

#[test]
fn crash_then_restart_recovers_committed_rows() {
    let mut c = temp_cluster();
    psql(
        &c.url("postgres"),
        "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 1000)",
    );
    let (data, port) = (c.data_dir().to_path_buf(), c.port());
    c.cluster_mut().stop_immediate().unwrap();
    let again = shardproxy::control::cluster::LocalCluster::start(&data, port).unwrap();
    assert_eq!(
        psql(&again.url("postgres"), "SELECT count(*) FROM t"),
        "1000"
    );
    assert!(
        again.log_tail(50).contains("not properly shut down"),
        "{}",
        again.log_tail(50)
    );
}

#[test]
fn stale_pid_file_is_not_taken_for_the_new_server() {
    let mut c = temp_cluster();
    let (data, port, pid) = (c.data_dir().to_path_buf(), c.port(), c.pid());
    // What a crashed server leaves: its pid file, saying "ready" on this port.
    // (With a PID no process has: the old postmaster may linger as a zombie
    // until init reaps it, and Postgres rightly refuses a live PID's lock.)
    let stale = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    let dead_pid = (100_000..4_000_000u32)
        .rev()
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = stale.replacen(&pid.to_string(), &dead_pid.to_string(), 1);
    assert!(stale.contains("ready"), "{stale}");
    c.cluster_mut().stop().unwrap();
    std::fs::write(data.join("postmaster.pid"), stale).unwrap();
    let again = shardproxy::control::cluster::LocalCluster::start(&data, port).unwrap();
    assert_ne!(again.pid(), pid);
    assert!(again.is_running());
    assert_eq!(psql(&again.url("postgres"), "SELECT 1"), "1");
}
