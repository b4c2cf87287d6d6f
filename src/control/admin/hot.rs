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
