//! The shared test harness: throwaway Postgres clusters on free ports, a `psql`
//! runner and a tokio-postgres connector. Every test binary that talks to a real
//! server includes this with `mod common;` and uses the subset it needs.

#![allow(dead_code)]

pub mod merge_data;
pub mod proxy;
pub mod slow_cancels;

use shardproxy::control::cluster::{free_port, ClusterOptions, LocalCluster};
use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// A cluster in its own temporary directory: stopped, then deleted, on drop.
pub struct TempCluster {
    // Declared first so it is dropped (stopped) before the directory goes.
    cluster: LocalCluster,
    dir: tempfile::TempDir,
}

impl TempCluster {
    /// The temporary directory holding the data dir (`<dir>/data`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The cluster itself, e.g. to `stop()` it mid-test.
    pub fn cluster_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl Deref for TempCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

/// Starts a fresh cluster (wal_level=logical, 2PC on, trust auth, fsync off)
/// on a free port. Retries with another port if the chosen one was taken meanwhile.
pub fn temp_cluster() -> TempCluster {
    temp_cluster_with(&ClusterOptions::default())
}

/// [`temp_cluster`] with extra settings, pg_hba.conf lines or an ICU
/// default collation.
pub fn temp_cluster_with(opts: &ClusterOptions) -> TempCluster {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let mut last_err = String::new();
    for _ in 0..3 {
        match LocalCluster::start_with(&data, free_port(), opts) {
            Ok(cluster) => return TempCluster { cluster, dir },
            Err(e) => last_err = e,
        }
    }
    panic!("could not start a test cluster: {last_err}");
}

/// A fresh directory the postgres user can enter (mode 0755), removed on drop.
/// It lives in `$SHARDPROXY_TEST_TMP`, else in /dev/shm (tmpfs: copying the
/// initdb template there takes ~50 ms, against 300-500 ms on this machine's
/// disk under load), else in /tmp.
pub fn temp_dir() -> tempfile::TempDir {
    let roots = std::env::var_os("SHARDPROXY_TEST_TMP")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(shm_if_roomy())
        .chain(["/tmp".into()]);
    for root in roots {
        let Ok(dir) = tempfile::Builder::new()
            .prefix("shardproxy-test-")
            .tempdir_in(&root)
        else {
            continue;
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        return dir;
    }
    panic!("cannot create a temp dir in $SHARDPROXY_TEST_TMP, /dev/shm or /tmp");
}

/// /dev/shm when it has at least 2 GiB free (a container's default 64 MiB
/// would fill up after one cluster).
fn shm_if_roomy() -> Option<std::path::PathBuf> {
    static ROOMY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let roomy = *ROOMY.get_or_init(|| {
        Command::new("df")
            .args(["--output=avail", "-B1M", "/dev/shm"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .nth(1)
                    .and_then(|l| l.trim().parse::<u64>().ok())
            })
            .is_some_and(|mib| mib >= 2048)
    });
    roomy.then(|| "/dev/shm".into())
}

/// A streaming replica of `primary` (pg_basebackup), in its own temporary
/// directory, on a free port.
pub fn temp_replica(primary: &LocalCluster) -> TempCluster {
    let dir = temp_dir();
    let data = dir.path().join("data");
    match LocalCluster::start_replica(primary, &data, free_port(), &ClusterOptions::default()) {
        Ok(cluster) => TempCluster { cluster, dir },
        Err(e) => panic!("could not start a replica of port {}: {e}", primary.port()),
    }
}

/// Starts `n` clusters in parallel threads.
pub fn temp_clusters(n: usize) -> Vec<TempCluster> {
    temp_clusters_with(n, &ClusterOptions::default())
}

/// [`temp_clusters`] with options.
pub fn temp_clusters_with(n: usize, opts: &ClusterOptions) -> Vec<TempCluster> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let o = opts.clone();
            std::thread::spawn(move || temp_cluster_with(&o))
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("cluster start thread panicked"))
        .collect()
}

/// Runs `sql` with `psql -X -A -t -v ON_ERROR_STOP=1` against `url` and returns
/// its stdout with trailing whitespace trimmed; panics with stderr on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let psql = LocalCluster::bin_dir()
        .map(|b| b.join("psql"))
        .unwrap_or_else(|_| "psql".into());
    let out = Command::new(psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed on {url} running {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Connects with tokio-postgres (no TLS) and spawns the connection task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Waits up to 2 s for the server process `pid` to leave the cluster that
/// `shard` is connected to; false if it is still there.
pub async fn backend_gone(shard: &tokio_postgres::Client, pid: i32) -> bool {
    for _ in 0..100 {
        let n: i64 = shard
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if n == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
pub mod routed;
