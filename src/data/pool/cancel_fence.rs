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
    /// Entries in `state` (fenced and doomed): one load before each
    /// statement sent. SeqCst because it pairs with the session clearing
    /// its running backend (see `ClientInfo`): either the canceller sees
    /// the backend no longer runs the client's statement, or the next
    /// statement sent to that backend sees the fence.
    raised: AtomicUsize,
    state: Mutex<Keys>,
    lowered: Notify,
}

/// (pid, secret) pairs.
#[derive(Debug, Default)]
struct Keys {
    /// One entry per cancel in flight.
    fenced: Vec<(i32, i32)>,
    /// Backends whose cancel was sent but never confirmed done: a signal
    /// may still come, so they run nothing more and are closed.
    doomed: Vec<(i32, i32)>,
    /// Fenced backends already closed: an unconfirmed cancel need not
    /// doom them (nothing would ever remove the entry).
    closed: Vec<(i32, i32)>,
}

/// A backend is doomed (see [`Keys::doomed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doomed;

impl CancelFence {
    /// Whether any backend of the pool is fenced or doomed (the cheap check first).
    #[inline]
    pub fn is_raised(&self) -> bool {
        self.raised.load(SeqCst) != 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Keys> {
        // Nothing panics while holding it: a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the backend (pid, secret) may run a statement at once.
    pub fn is_clear(&self, pid: i32, secret: i32) -> bool {
        let s = self.state();
        !s.fenced.contains(&(pid, secret)) && !s.doomed.contains(&(pid, secret))
    }

    /// Whether the backend (pid, secret) is doomed.
    pub fn is_doomed(&self, pid: i32, secret: i32) -> bool {
        self.state().doomed.contains(&(pid, secret))
    }

    /// Returns once no cancel is in flight for the backend (pid, secret);
    /// `Err` if it is doomed.
    pub async fn settle(&self, pid: i32, secret: i32) -> Result<(), Doomed> {
        loop {
            let lowered = self.lowered.notified();
            tokio::pin!(lowered);
            // Registered before the check, so a fence lowered in between
            // still wakes this wait.
            lowered.as_mut().enable();
            {
                let s = self.state();
                if s.doomed.contains(&(pid, secret)) {
                    return Err(Doomed);
                }
                if !s.fenced.contains(&(pid, secret)) {
                    return Ok(());
                }
            }
            lowered.await;
        }
    }

    /// The backend (pid, secret) is closed: its doomed entry goes, and a
    /// fence still up around it will not doom it.
    pub fn forget(&self, pid: i32, secret: i32) {
        let mut s = self.state();
        if let Some(i) = s.doomed.iter().position(|k| *k == (pid, secret)) {
            s.doomed.swap_remove(i);
            self.raised.fetch_sub(1, SeqCst);
        } else if s.fenced.contains(&(pid, secret)) && !s.closed.contains(&(pid, secret)) {
            s.closed.push((pid, secret));
        }
    }
}

/// A fence up around one backend; lowered when dropped.
#[derive(Debug)]
pub struct Fenced {
    fence: Arc<CancelFence>,
    key: (i32, i32),
    doom: bool,
}

/// Raises a fence around the backend (pid, secret) of `fence`'s pool.
pub fn raise(fence: &Arc<CancelFence>, pid: i32, secret: i32) -> Fenced {
    fence.state().fenced.push((pid, secret));
    fence.raised.fetch_add(1, SeqCst);
    Fenced {
        fence: fence.clone(),
        key: (pid, secret),
        doom: false,
    }
}

impl Fenced {
    /// The cancel was sent but not confirmed done: instead of lowering the
    /// fence, doom the backend (it is closed at its next use or return).
    pub fn doom(mut self) {
        self.doom = true;
    }
}

impl Drop for Fenced {
    fn drop(&mut self) {
        {
            let mut s = self.fence.state();
            if let Some(i) = s.fenced.iter().position(|k| *k == self.key) {
                s.fenced.swap_remove(i);
            }
            // The last fence around a closed backend takes its note along.
            let closed = match s.closed.iter().position(|k| *k == self.key) {
                Some(i) if !s.fenced.contains(&self.key) => {
                    s.closed.swap_remove(i);
                    true
                }
                Some(_) => true,
                None => false,
            };
            if self.doom && !closed && !s.doomed.contains(&self.key) {
                // The entry moves: `raised` still counts it.
                s.doomed.push(self.key);
            } else {
                self.fence.raised.fetch_sub(1, SeqCst);
            }
        }
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
            .expect("an unfenced backend waits for nothing")
            .unwrap();
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
            .unwrap()
            .unwrap();
        drop(other);
        assert!(!fence.is_raised());
    }

    #[tokio::test]
    async fn an_unconfirmed_cancel_dooms_its_backend_until_it_is_closed() {
        let fence = Arc::new(CancelFence::default());
        let fenced = raise(&fence, 1, 2);
        let waiter = {
            let fence = fence.clone();
            tokio::spawn(async move { fence.settle(1, 2).await })
        };
        fenced.doom();
        let r = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a doomed backend's wait ends")
            .unwrap();
        assert_eq!(r, Err(Doomed));
        assert!(fence.is_raised() && fence.is_doomed(1, 2) && !fence.is_clear(1, 2));
        fence.forget(1, 2);
        assert!(!fence.is_raised() && fence.is_clear(1, 2));
        // A backend closed while its cancel is in flight is not doomed
        // when the cancel goes unconfirmed: nothing would forget it.
        let up = raise(&fence, 3, 4);
        fence.forget(3, 4);
        assert!(!fence.is_clear(3, 4), "its fence is still up");
        up.doom();
        assert!(!fence.is_raised() && fence.is_clear(3, 4));
    }
}
