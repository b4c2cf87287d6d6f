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
    let c = temp_cluster();
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
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = shardproxy::control::cluster::LocalCluster::start(&dir.path().join("d"), c.port())
        .unwrap_err();
    assert!(err.contains("server.log"), "{err}");
    assert!(
        err.to_lowercase().contains("address already in use") || err.contains("could not"),
        "{err}"
    );
}
