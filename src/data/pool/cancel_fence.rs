//! Backends with a CancelRequest in flight, held back from their next
//! statement until the request has done its work.
//!
//! Postgres cancels a backend by signalling it twice: SIGINT to the process,
//! then to its process group, both from a child that the postmaster forked
//! for the cancel connection. When that child is preempted between the two,
//! the second signal lands after the cancelled statement has ended and
//! cancels whatever the backend runs next. In a pool that can be another
//! client's statement. The child closes the cancel connection only after
//! both signals, and a signal that reaches an idle backend is discarded when
//! the backend reads its next command. So a backend waits here, before its
//! next statement is sent, until the cancel connection has closed. pgbouncer
//! holds a server "being canceled" in the same way.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The BackendKeyData of backends being cancelled, for one pool.
#[derive(Debug, Default)]
pub struct CancelFence {
    /// How many fences are up: one load before each reuse of a backend.
    /// SeqCst because it pairs with the session clearing its running
    /// backend (see `ClientInfo`): either the canceller sees the backend is
    /// no longer running the client's statement, or the next checkout of
    /// that backend sees the fence.
    raised: AtomicUsize,
    /// (pid, secret) of each fenced backend; one entry per fence.
    keys: Mutex<Vec<(i32, i32)>>,
    lowered: Notify,
}

impl CancelFence {
    /// Whether any backend of the pool is fenced (the cheap check first).
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.raised.load(SeqCst) != 0
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, Vec<(i32, i32)>> {
        // Nothing panics while holding it: a poisoned lock is still consistent.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holds(&self, pid: i32, secret: i32) -> bool {
        self.keys().contains(&(pid, secret))
    }

    /// Returns once no cancel is in flight for the backend (pid, secret).
    pub async fn settle(&self, pid: i32, secret: i32) {
        loop {
            let lowered = self.lowered.notified();
            tokio::pin!(lowered);
            // Registered before the check, so a fence lowered in between
            // still wakes this wait.
            lowered.as_mut().enable();
            if !self.holds(pid, secret) {
                return;
            }
            lowered.await;
        }
    }
}

/// A fence up around one backend; lowered when dropped.
#[derive(Debug)]
pub struct Fenced {
    fence: Arc<CancelFence>,
    key: (i32, i32),
}

/// Raises a fence around the backend (pid, secret) of `fence`'s pool.
pub fn raise(fence: &Arc<CancelFence>, pid: i32, secret: i32) -> Fenced {
    fence.keys().push((pid, secret));
    fence.raised.fetch_add(1, SeqCst);
    Fenced {
        fence: fence.clone(),
        key: (pid, secret),
    }
}

impl Drop for Fenced {
    fn drop(&mut self) {
        {
            let mut keys = self.fence.keys();
            if let Some(i) = keys.iter().position(|k| *k == self.key) {
                keys.swap_remove(i);
            }
        }
        self.fence.raised.fetch_sub(1, SeqCst);
        self.fence.lowered.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wait_ends_when_the_last_fence_around_its_backend_drops() {
        let fence = Arc::new(CancelFence::default());
        assert!(!fence.is_raised());
        // Another backend's fence does not hold this one.
        let other = raise(&fence, 7, 8);
        assert!(fence.is_raised());
        tokio::time::timeout(Duration::from_secs(5), fence.settle(1, 2))
            .await
            .expect("an unfenced backend waits for nothing");
        let first = raise(&fence, 1, 2);
        let second = raise(&fence, 1, 2);
        let waiter = {
            let fence = fence.clone();
            tokio::spawn(async move { fence.settle(1, 2).await })
        };
        drop(first);
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one fence is still up");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends with the last fence")
            .unwrap();
        drop(other);
        assert!(!fence.is_raised());
    }
}
