//! `SHOW HOT`: where the load of the last window went, from the load board
//! ([`crate::data::load`]): every shard, then the hottest hash intervals and
//! shard-key values, each with its share of all statements.

use super::show::ResultSet;
use crate::data::load::LoadSnapshot;
use crate::data::router::{HashInterval, ShardMap};

/// Columns of `SHOW HOT`.
pub const SHOW_HOT_COLUMNS: &[&str] = &[
    "kind",
    "group",
    "item",
    "shard",
    "statements",
    "share",
    "rows",
    "busy_ms",
    "note",
];

/// Intervals and keys listed (the heaviest).
const LISTED: usize = 10;

/// A fraction as a percentage with one decimal (`47.5%`).
pub fn percent(f: f64) -> String {
    format!("{:.1}%", f * 100.0)
}

/// `SHOW HOT` for `load` measured under `map`; `keys_on` is `hot.enabled`.
pub fn show_hot(load: &LoadSnapshot, map: &ShardMap, keys_on: bool) -> ResultSet {
    let mut r = ResultSet::new(SHOW_HOT_COLUMNS);
    let total = load.statements();
    let shard_name = |i: usize| map.shard_names().get(i).cloned().unwrap_or_default();
    let group_name = |g: usize| map.groups().get(g).cloned().unwrap_or_default();
    let note = if keys_on {
        format!(
            "map epoch {}; {} statements routed by one key ({})",
            load.epoch,
            load.keyed,
            percent(load.share(load.keyed))
        )
    } else {
        format!(
            "map epoch {}; key accounting off (hot.enabled = false): shards only",
            load.epoch
        )
    };
    r.rows.push(vec![
        Some("window".into()),
        None,
        Some(format!("{} s", load.secs)),
        None,
        Some(total.to_string()),
        Some(percent(if total > 0 { 1.0 } else { 0.0 })),
        Some(load.shards.iter().map(|s| s.rows).sum::<u64>().to_string()),
        Some(ms(load.shards.iter().map(|s| s.busy_us).sum())),
        Some(note),
    ]);
    let mut shards: Vec<_> = load.shards.iter().collect();
    shards.sort_by(|a, b| b.statements.cmp(&a.statements).then(a.name.cmp(&b.name)));
    let mean = total as f64 / load.shards.len().max(1) as f64;
    for s in shards {
        let note = (mean > 0.0).then(|| format!("{:.2}x the mean", s.statements as f64 / mean));
        r.rows.push(vec![
            Some("shard".into()),
            None,
            Some(s.name.clone()),
            Some(s.name.clone()),
            Some(s.statements.to_string()),
            Some(percent(load.share(s.statements))),
            Some(s.rows.to_string()),
            Some(ms(s.busy_us)),
            note,
        ]);
    }
    for iv in load.intervals.iter().take(LISTED) {
        let range = HashInterval {
            lo: iv.lo,
            hi: iv.hi,
            shard: iv.shard,
        };
        r.rows.push(vec![
            Some("interval".into()),
            Some(group_name(iv.group)),
            Some(range.range_text()),
            Some(shard_name(iv.shard)),
            Some(iv.hits.to_string()),
            Some(percent(load.share(iv.hits))),
            None,
            None,
            Some(format!("{} of the hash circle", percent(range.fraction()))),
        ]);
    }
    for k in load.keys.iter().take(LISTED) {
        let mut note = Vec::new();
        if k.pinned {
            note.push("pinned".to_string());
        }
        if k.error > 0 {
            note.push(format!("at most {} over", k.error));
        }
        r.rows.push(vec![
            Some("key".into()),
            Some(group_name(k.group)),
            Some(k.key.to_string()),
            Some(shard_name(k.shard)),
            Some(k.count.to_string()),
            Some(percent(load.share(k.count))),
            None,
            None,
            (!note.is_empty()).then(|| note.join("; ")),
        ]);
    }
    r
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// Columns of `SHOW REBALANCE ADVICE`.
pub const SHOW_ADVICE_COLUMNS: &[&str] = &[
    "step", "action", "detail", "from", "to", "moved", "busiest", "shares",
];

/// `SHOW REBALANCE ADVICE`: the measured load (step 0), each proposed move
/// with the predicted load after it, and why the advice stops there.
pub fn show_advice(load: &LoadSnapshot, map: &ShardMap) -> ResultSet {
    use crate::control::advice::{advise, describe, Action, AdviceOptions};
    let advice = advise(load, map, &AdviceOptions::default());
    let total = advice.total();
    let names = map.shard_names();
    let share = |n: u64| {
        percent(if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        })
    };
    let busiest = |l: &[u64]| {
        let (i, &m) = l
            .iter()
            .enumerate()
            .max_by_key(|(i, m)| (**m, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        let mean = total as f64 / l.len().max(1) as f64;
        let times = if mean > 0.0 { m as f64 / mean } else { 0.0 };
        format!(
            "{} {} ({times:.2}x the mean)",
            names.get(i).map_or("?", |s| s.as_str()),
            share(m)
        )
    };
    let shares = |l: &[u64]| {
        l.iter()
            .enumerate()
            .map(|(i, &n)| format!("{} {}", names.get(i).map_or("?", |s| s.as_str()), share(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut r = ResultSet::new(SHOW_ADVICE_COLUMNS);
    r.rows.push(vec![
        Some("0".into()),
        Some("measured".into()),
        Some(format!(
            "{} statements in {} s (map epoch {})",
            total, load.secs, load.epoch
        )),
        None,
        None,
        None,
        Some(busiest(&advice.before)),
        Some(shares(&advice.before)),
    ]);
    for (i, p) in advice.steps.iter().enumerate() {
        let action = match p.action {
            Action::PinKey { .. } => "pin key",
            Action::SplitInterval { .. } => "split interval",
            Action::MoveInterval { .. } => "move interval",
        };
        r.rows.push(vec![
            Some((i + 1).to_string()),
            Some(action.into()),
            Some(describe(p, map)),
            names.get(p.from).cloned(),
            names.get(p.to).cloned(),
            Some(share(p.moved)),
            Some(busiest(&p.after)),
            Some(shares(&p.after)),
        ]);
    }
    r.rows.push(vec![
        Some((advice.steps.len() + 1).to_string()),
        Some("stop".into()),
        Some(advice.why_stop.clone()),
        None,
        None,
        None,
        None,
        None,
    ]);
    r
}
