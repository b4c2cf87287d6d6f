//! The session's side of load accounting: what one client's statements add,
//! kept in the session (no shared state touched per statement) and merged
//! into the proxy's [`LoadBoard`] now and then.
//!
//! Per statement the session notes the key it routed by (group, hash,
//! value; from the routing, nothing parsed twice) and the rows its
//! CommandComplete reports. It merges when 64 keys are buffered, or at its
//! first statement after the board's one-second tick moved on (one relaxed
//! load per statement to see that), and when it ends. A session that goes
//! quiet keeps what it buffered until its next statement or its end: at
//! most 63 statements of one client.

use super::board::LoadBoard;
use super::key::HitKey;
use crate::data::planner::RoutedKey;
use crate::runtime::Runtime;
use smallvec::SmallVec;

/// Keys buffered before a merge.
const FLUSH_AT: usize = 64;

/// One keyed statement.
#[derive(Debug, Clone)]
pub struct Hit {
    pub group: u32,
    pub hash: u64,
    pub key: HitKey,
}

impl Hit {
    /// The hit of a statement routed by `key`.
    #[inline]
    pub fn of(key: &RoutedKey<'_>) -> Hit {
        Hit {
            group: key.group as u32,
            hash: key.hash,
            key: HitKey::of(&key.key),
        }
    }
}

/// A session's unmerged load.
#[derive(Debug, Default)]
pub struct SessionTally {
    on: bool,
    hits: Vec<Hit>,
    /// Rows per shard index since the last merge.
    rows: SmallVec<[u64; 8]>,
    /// The board's tick at the last merge.
    seen_tick: u64,
}

impl SessionTally {
    /// A tally that counts when `on` (`hot.enabled`).
    pub fn new(on: bool) -> SessionTally {
        SessionTally {
            on,
            ..Default::default()
        }
    }

    /// Turns counting on or off (after a RELOAD), merging first.
    pub fn set_on(&mut self, on: bool, board: &LoadBoard, rt: &Runtime) {
        if self.on != on {
            self.flush(board, rt);
            self.on = on;
        }
    }

    /// A statement routed by one key (the dispatch's note).
    #[inline]
    pub fn key(&mut self, hit: Option<Hit>, board: &LoadBoard, rt: &Runtime) {
        let Some(hit) = hit.filter(|_| self.on) else {
            return;
        };
        self.hits.push(hit);
        if self.hits.len() >= FLUSH_AT || board.tick() != self.seen_tick {
            self.flush(board, rt);
        }
    }

    /// Rows a statement on shard `shard` returned or changed.
    #[inline]
    pub fn rows(&mut self, shard: usize, n: u64, board: &LoadBoard, rt: &Runtime) {
        if !self.on || n == 0 {
            return;
        }
        if self.rows.len() <= shard {
            self.rows.resize(shard + 1, 0);
        }
        self.rows[shard] += n;
        if board.tick() != self.seen_tick {
            self.flush(board, rt);
        }
    }

    /// Merges everything buffered into the board.
    pub fn flush(&mut self, board: &LoadBoard, rt: &Runtime) {
        self.seen_tick = board.tick();
        if self.hits.is_empty() && self.rows.iter().all(|&r| r == 0) {
            return;
        }
        board.merge(&self.hits, &self.rows, rt);
        self.hits.clear();
        self.rows.iter_mut().for_each(|r| *r = 0);
    }
}

/// The row count at the end of a CommandComplete tag (`SELECT 5`,
/// `INSERT 0 3`, `UPDATE 2`; 0 for tags without one, such as `BEGIN`).
#[inline]
pub fn command_rows(body: &[u8]) -> u64 {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let digits = tag.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits == tag.len() || tag[tag.len() - digits - 1] != b' ' {
        return 0;
    }
    tag[tag.len() - digits..].iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add((d - b'0') as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_from_the_command_tag() {
        assert_eq!(command_rows(b"SELECT 5\0"), 5);
        assert_eq!(command_rows(b"INSERT 0 31\0"), 31);
        assert_eq!(command_rows(b"UPDATE 1200"), 1200);
        assert_eq!(command_rows(b"BEGIN\0"), 0);
        assert_eq!(command_rows(b"CREATE TABLE\0"), 0);
        assert_eq!(command_rows(b"12\0"), 0);
        assert_eq!(command_rows(b"\0"), 0);
    }
}
