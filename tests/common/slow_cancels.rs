//! Cancels the test controls: a forwarder in front of a cluster that holds
//! each CancelRequest connection open after the server is done with it, so
//! the proxy sees a cancel that lasts as long as the test wants, and a
//! helper that starts a statement and cancels it once it runs.

use super::proxy::code_of;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_postgres::NoTls;

/// The forwarder: its port, the permits that release held cancel
/// connections (one each), and how many cancels the server has finished
/// (it has signalled the backend by then).
pub struct SlowCancels {
    pub port: u16,
    pub release: Arc<Semaphore>,
    done: Arc<AtomicUsize>,
}

impl SlowCancels {
    /// URL of `database` through the forwarder.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Waits until the server has finished `n` cancels in all.
    pub async fn finished(&self, n: usize) {
        while self.done.load(SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks that `task` (a statement for a backend whose cancel is held
    /// here) is still waiting after 300 ms, then lets `permits` held cancel
    /// connections close and returns what the task returns, within 5 s.
    pub async fn waits_for_release<T>(
        &self,
        task: tokio::task::JoinHandle<T>,
        permits: usize,
        what: &str,
    ) -> T {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !task.is_finished(),
            "a backend with a cancel in flight ran {what}"
        );
        self.release.add_permits(permits);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the backend stayed fenced after its cancel")
            .unwrap()
    }
}

/// Starts the forwarder to the cluster on `port`.
pub async fn slow_cancels(port: u16) -> SlowCancels {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = listener.local_addr().unwrap().port();
    let release = Arc::new(Semaphore::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let (released, counted) = (release.clone(), done.clone());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let released = released.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                conn.read_exact(&mut head).await?;
                let mut server = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                server.write_all(&head).await?;
                // An SSLRequest (sslmode=prefer, the default) refused by a
                // server without TLS: the real first packet follows.
                if head == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                    let mut answer = [0u8; 1];
                    server.read_exact(&mut answer).await?;
                    conn.write_all(&answer).await?;
                    if answer[0] == b'N' {
                        conn.read_exact(&mut head).await?;
                        server.write_all(&head).await?;
                    }
                }
                // Length 16, code 80877102: a CancelRequest.
                if head == [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e] {
                    let mut key = [0u8; 8];
                    conn.read_exact(&mut key).await?;
                    server.write_all(&key).await?;
                    let mut rest = Vec::new();
                    server.read_to_end(&mut rest).await?;
                    counted.fetch_add(1, SeqCst);
                    if let Ok(permit) = released.acquire().await {
                        permit.forget();
                    }
                } else {
                    tokio::io::copy_bidirectional(&mut conn, &mut server).await?;
                }
                Ok::<_, std::io::Error>(())
            });
        }
    });
    SlowCancels {
        port: own,
        release,
        done,
    }
}

/// Starts `sql` on `client` and cancels it once `watch` sees it running on
/// the cluster; returns the client after its 57014 and the cancel's task.
pub async fn start_and_cancel(
    client: tokio_postgres::Client,
    watch: &tokio_postgres::Client,
    sql: &'static str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let token = client.cancel_token();
    let q = tokio::spawn(async move {
        let r = client.simple_query(sql).await;
        (r, client)
    });
    let running = "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'";
    while watch
        .query_one(running, &[&sql])
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancel = tokio::spawn(async move { token.cancel_query(NoTls).await });
    let (r, client) = tokio::time::timeout(Duration::from_secs(5), q)
        .await
        .expect("query not cancelled")
        .unwrap();
    assert_eq!(code_of(&r.unwrap_err()), "57014");
    (client, cancel)
}
