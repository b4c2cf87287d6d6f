//! Rebalancing advice: from the measured load ([`LoadSnapshot`]) and the
//! shard map, the moves that bring the busiest shard closest to the mean,
//! with the predicted load per shard before and after each. A pure function
//! of its inputs, so it is tested on synthetic loads.
//!
//! The model: a shard's load is its statements in the window. A hot key's
//! statements move with it when it is pinned elsewhere; an interval's
//! statements (those of unpinned keys hashing into it, known per sixteenth
//! of the interval) move with the interval or with the part of it a split
//! moves. Statements no key explains (fan-outs, keyless ones) stay where
//! they are. Each step takes the busiest shard and tries, toward the least
//! loaded shard (an idle or new one first), pinning each of its hot keys,
//! moving each of its measured intervals, and splitting each at every
//! sixteenth and moving either side; it keeps the candidate that leaves the
//! lowest maximum, preferring among near-equal ones the one moving the
//! least data (a pinned key moves one key's rows; an interval, its share of
//! the key space). Steps stop when the busiest shard is within
//! [`AdviceOptions::goal`] of the mean, when no candidate lowers the maximum
//! by [`AdviceOptions::min_gain`], or after [`AdviceOptions::max_steps`].

use crate::data::load::{HitKey, LoadSnapshot};
use crate::data::router::{HashInterval, ShardMap};

#[cfg(test)]
mod tests;

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pin one shard-key value to the target shard (a lookup entry).
    PinKey {
        group: usize,
        key: HitKey,
        hash: u64,
    },
    /// Move hashes `(lo, hi]` of the group, a part of interval
    /// `(interval_lo, interval_hi]`, to the target shard.
    SplitInterval {
        group: usize,
        interval_lo: u64,
        interval_hi: u64,
        lo: u64,
        hi: u64,
    },
    /// Move the whole interval `(lo, hi]` of the group to the target shard.
    MoveInterval { group: usize, lo: u64, hi: u64 },
}

/// One proposed move and its predicted effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub action: Action,
    pub from: usize,
    pub to: usize,
    /// Statements (in the window) that move with it.
    pub moved: u64,
    /// Fraction of the group's key space that moves (0 for a pinned key).
    pub data: f64,
    /// Predicted statements per shard after this step (and the ones before it).
    pub after: Vec<u64>,
}

/// The advice for one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Advice {
    /// Statements per shard as measured, in map order.
    pub before: Vec<u64>,
    pub steps: Vec<Proposal>,
    /// Why there are no (more) steps.
    pub why_stop: String,
}

impl Advice {
    /// Statements in the window.
    pub fn total(&self) -> u64 {
        self.before.iter().sum()
    }

    /// The predicted load after every step.
    pub fn after(&self) -> &[u64] {
        self.steps.last().map_or(&self.before, |p| &p.after)
    }
}

/// Tuning of [`advise`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdviceOptions {
    /// Stop once the busiest shard is at most this many times the mean.
    pub goal: f64,
    /// A step must lower the busiest shard by at least this fraction of all statements.
    pub min_gain: f64,
    pub max_steps: usize,
    /// Candidates within this fraction of all statements of the best count
    /// as equal; the one moving the least data wins.
    pub tie: f64,
}

impl Default for AdviceOptions {
    fn default() -> Self {
        AdviceOptions {
            goal: 1.1,
            min_gain: 0.01,
            max_steps: 4,
            tie: 0.005,
        }
    }
}

/// A measured piece of the key space: a sixteenth of an interval.
#[derive(Debug, Clone, Copy)]
struct Cell {
    lo: u64,
    hi: u64,
    hits: u64,
}

/// An interval as the steps reshape it: cells in hash order, one owner.
#[derive(Debug, Clone)]
struct Piece {
    group: usize,
    shard: usize,
    cells: Vec<Cell>,
}

impl Piece {
    fn hits(&self) -> u64 {
        self.cells.iter().map(|c| c.hits).sum()
    }

    fn range(&self) -> (u64, u64) {
        (self.cells[0].lo, self.cells[self.cells.len() - 1].hi)
    }
}

#[derive(Debug, Clone)]
struct Hot {
    group: usize,
    hash: u64,
    key: HitKey,
    shard: usize,
    count: u64,
    /// The piece and cell its statements are counted in (unpinned keys).
    at: Option<(usize, usize)>,
}

/// The state the steps change.
#[derive(Debug, Clone)]
struct Model {
    load: Vec<u64>,
    pieces: Vec<Piece>,
    keys: Vec<Hot>,
}

/// A candidate step: what it moves, from which piece cells or key.
#[derive(Debug, Clone)]
enum Move {
    Key(usize),
    /// Piece index and the cells `[a, b)` that move.
    Cells(usize, usize, usize),
}

impl Model {
    fn new(load: &LoadSnapshot) -> Model {
        let pieces: Vec<Piece> = load
            .intervals
            .iter()
            .filter(|iv| iv.shard < load.shards.len())
            .map(|iv| {
                let whole = iv.interval();
                let cells = (0..crate::data::load::window::SUB)
                    .map(|j| Cell {
                        lo: crate::data::load::window::sub_bound(&whole, j),
                        hi: crate::data::load::window::sub_bound(&whole, j + 1),
                        hits: iv.sub[j],
                    })
                    .collect();
                Piece {
                    group: iv.group,
                    shard: iv.shard,
                    cells,
                }
            })
            .collect();
        let keys = load
            .keys
            .iter()
            .filter(|k| k.shard < load.shards.len() && k.count > 0)
            .map(|k| {
                let at = (!k.pinned)
                    .then(|| {
                        pieces.iter().enumerate().find_map(|(i, p)| {
                            if p.group != k.group {
                                return None;
                            }
                            p.cells
                                .iter()
                                .position(|c| in_range(c.lo, c.hi, k.hash))
                                .map(|j| (i, j))
                        })
                    })
                    .flatten();
                Hot {
                    group: k.group,
                    hash: k.hash,
                    key: k.key.clone(),
                    shard: k.shard,
                    count: k.count,
                    at,
                }
            })
            .collect();
        Model {
            load: load.shards.iter().map(|s| s.statements).collect(),
            pieces,
            keys,
        }
    }

    /// Statements that move with `m`.
    fn moved(&self, m: &Move) -> u64 {
        match *m {
            Move::Key(k) => self.keys[k].count,
            Move::Cells(p, a, b) => self.pieces[p].cells[a..b].iter().map(|c| c.hits).sum(),
        }
    }

    fn from(&self, m: &Move) -> usize {
        match *m {
            Move::Key(k) => self.keys[k].shard,
            Move::Cells(p, ..) => self.pieces[p].shard,
        }
    }

    /// The busiest shard after moving `moved` statements from `from` to `to`.
    fn max_after(&self, from: usize, to: usize, moved: u64) -> u64 {
        self.load
            .iter()
            .enumerate()
            .map(|(s, &l)| {
                if s == from {
                    l.saturating_sub(moved)
                } else if s == to {
                    l + moved
                } else {
                    l
                }
            })
            .max()
            .unwrap_or(0)
    }

    /// Applies `m` toward `to` and returns the step's action and data fraction.
    fn apply(&mut self, m: &Move, to: usize) -> (Action, f64) {
        let moved = self.moved(m);
        let from = self.from(m);
        self.load[from] = self.load[from].saturating_sub(moved);
        self.load[to] += moved;
        match *m {
            Move::Key(k) => {
                let key = &mut self.keys[k];
                key.shard = to;
                if let Some((p, c)) = key.at.take() {
                    let cell = &mut self.pieces[p].cells[c];
                    cell.hits = cell.hits.saturating_sub(key.count);
                }
                let key = &self.keys[k];
                (
                    Action::PinKey {
                        group: key.group,
                        key: key.key.clone(),
                        hash: key.hash,
                    },
                    0.0,
                )
            }
            Move::Cells(p, a, b) => {
                let piece = &self.pieces[p];
                let (ilo, ihi) = piece.range();
                let whole = a == 0 && b == piece.cells.len();
                let (lo, hi) = (piece.cells[a].lo, piece.cells[b - 1].hi);
                let data = HashInterval { lo, hi, shard: to }.fraction();
                let group = piece.group;
                // The moved cells become a piece of their own on `to`; the
                // rest (one side of it, as only runs from an end move) stays.
                let cells = self.pieces[p].cells.drain(a..b).collect::<Vec<_>>();
                for key in &mut self.keys {
                    if let Some((kp, kc)) = key.at {
                        if kp == p && kc >= a && kc < b {
                            key.shard = to;
                        }
                    }
                }
                let new = Piece {
                    group,
                    shard: to,
                    cells,
                };
                self.reindex_keys_after_split(p, a, b, whole);
                if whole {
                    self.pieces[p] = new;
                } else {
                    self.pieces.push(new);
                }
                let action = if whole {
                    Action::MoveInterval { group, lo, hi }
                } else {
                    Action::SplitInterval {
                        group,
                        interval_lo: ilo,
                        interval_hi: ihi,
                        lo,
                        hi,
                    }
                };
                (action, data)
            }
        }
    }

    /// After cells `[a, b)` of piece `p` moved out (into a new last piece,
    /// or into `p` itself when all of it moved), points the keys at their
    /// cells' new places.
    fn reindex_keys_after_split(&mut self, p: usize, a: usize, b: usize, whole: bool) {
        let new_index = if whole { p } else { self.pieces.len() };
        for key in &mut self.keys {
            if let Some((kp, kc)) = key.at {
                if kp != p {
                    continue;
                }
                key.at = if kc >= a && kc < b {
                    Some((new_index, kc - a))
                } else if kc >= b {
                    Some((p, kc - (b - a)))
                } else {
                    Some((p, kc))
                };
            }
        }
    }

    /// Every candidate step off shard `from`.
    fn candidates(&self, from: usize) -> Vec<Move> {
        let mut out = Vec::new();
        for (k, key) in self.keys.iter().enumerate() {
            if key.shard == from {
                out.push(Move::Key(k));
            }
        }
        for (p, piece) in self.pieces.iter().enumerate() {
            if piece.shard != from || piece.hits() == 0 {
                continue;
            }
            let n = piece.cells.len();
            out.push(Move::Cells(p, 0, n));
            // A split moves a run from either end: what stays is one range.
            for cut in 1..n {
                out.push(Move::Cells(p, 0, cut));
                out.push(Move::Cells(p, cut, n));
            }
        }
        out
    }

    fn data(&self, m: &Move) -> f64 {
        match *m {
            Move::Key(_) => 0.0,
            Move::Cells(p, a, b) => {
                let cells = &self.pieces[p].cells;
                HashInterval {
                    lo: cells[a].lo,
                    hi: cells[b - 1].hi,
                    shard: 0,
                }
                .fraction()
            }
        }
    }
}

fn in_range(lo: u64, hi: u64, h: u64) -> bool {
    HashInterval { lo, hi, shard: 0 }.contains(h)
}

/// The advice for `load`, measured under `map`.
pub fn advise(load: &LoadSnapshot, map: &ShardMap, opts: &AdviceOptions) -> Advice {
    let mut model = Model::new(load);
    let before = model.load.clone();
    let total: u64 = before.iter().sum();
    let n = before.len();
    let mut steps = Vec::new();
    let why_stop = loop {
        if total == 0 || n < 2 {
            break if n < 2 {
                "one shard: nothing to balance".to_string()
            } else {
                "no load measured in the window yet".to_string()
            };
        }
        let mean = total as f64 / n as f64;
        let (busiest, &max) = model
            .load
            .iter()
            .enumerate()
            .max_by_key(|(i, l)| (**l, std::cmp::Reverse(*i)))
            .expect("at least two shards");
        if max as f64 <= opts.goal * mean {
            break format!("the busiest shard is within {:.2}x of the mean", opts.goal);
        }
        if steps.len() >= opts.max_steps {
            break format!("stopped after {} steps", opts.max_steps);
        }
        let to = model
            .load
            .iter()
            .enumerate()
            .min_by_key(|(i, l)| (**l, *i))
            .map(|(i, _)| i)
            .expect("at least two shards");
        let scored: Vec<(Move, u64, f64)> = model
            .candidates(busiest)
            .into_iter()
            .map(|m| {
                let after = model.max_after(model.from(&m), to, model.moved(&m));
                let data = model.data(&m);
                (m, after, data)
            })
            .collect();
        let Some(best_max) = scored.iter().map(|s| s.1).min() else {
            break format!(
                "nothing measured on {} can move (no hot key or keyed interval)",
                shard_name(map, busiest)
            );
        };
        if (max - best_max.min(max)) as f64 <= opts.min_gain * total as f64 {
            break format!(
                "no move lowers the busiest shard ({}) by {:.1}% of the load or more",
                shard_name(map, busiest),
                opts.min_gain * 100.0
            );
        }
        let slack = (opts.tie * total as f64) as u64;
        let chosen = scored
            .into_iter()
            .filter(|s| s.1 <= best_max + slack)
            .min_by(|a, b| a.2.total_cmp(&b.2).then(a.1.cmp(&b.1)))
            .map(|s| s.0)
            .expect("the best candidate passes its own filter");
        let moved = model.moved(&chosen);
        let from = model.from(&chosen);
        let (action, data) = model.apply(&chosen, to);
        steps.push(Proposal {
            action,
            from,
            to,
            moved,
            data,
            after: model.load.clone(),
        });
    };
    Advice {
        before,
        steps,
        why_stop,
    }
}

fn shard_name(map: &ShardMap, i: usize) -> String {
    map.shard_names()
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("#{i}"))
}

/// A one-line description of a step's action, with the group's and shards' names.
pub fn describe(p: &Proposal, map: &ShardMap) -> String {
    let group = |g: usize| map.groups().get(g).cloned().unwrap_or_default();
    let to = shard_name(map, p.to);
    match &p.action {
        Action::PinKey { group: g, key, .. } => {
            format!("pin key {key} of group {} to {to}", group(*g))
        }
        Action::SplitInterval {
            group: g,
            interval_lo,
            interval_hi,
            lo,
            hi,
        } => format!(
            "split ({interval_lo:#018x}, {interval_hi:#018x}] of group {} and move ({lo:#018x}, {hi:#018x}] to {to}",
            group(*g)
        ),
        Action::MoveInterval { group: g, lo, hi } => {
            format!("move ({lo:#018x}, {hi:#018x}] of group {} to {to}", group(*g))
        }
    }
}
