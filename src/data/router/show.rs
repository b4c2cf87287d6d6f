//! Rows for the admin command `SHOW SHARDMAP`.

use super::shardmap::ShardMap;

/// Column names of [`ShardMap::show_rows`].
pub const SHOW_SHARDMAP_COLUMNS: &[&str] = &[
    "group",
    "shard",
    "intervals",
    "ranges",
    "key_share",
    "lookups",
    "epoch",
];

/// How many ranges / pinned keys a cell lists before summarising the rest.
const CELL_ITEMS: usize = 3;

fn list_cell(items: Vec<String>) -> String {
    if items.len() <= CELL_ITEMS {
        return items.join(", ");
    }
    format!(
        "{}, … (+{} more)",
        items[..CELL_ITEMS].join(", "),
        items.len() - CELL_ITEMS
    )
}

impl ShardMap {
    /// One row per (co-location group, shard), in group then shard order,
    /// with the columns [`SHOW_SHARDMAP_COLUMNS`]:
    /// - `group`: co-location group name;
    /// - `shard`: shard name;
    /// - `intervals`: number of hash ranges the shard owns (neighbouring
    ///   intervals of the same shard joined);
    /// - `ranges`: the first few as `(lo, hi]` in hex, `… (+N more)` after;
    /// - `key_share`: its fraction of the hash space, as a percentage with two
    ///   decimals (`25.03%`), pinned keys not counted;
    /// - `lookups`: keys pinned to this shard in this group (first few);
    /// - `epoch`: the map's epoch (the same on every row).
    pub fn show_rows(&self) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let lookups = self.lookups();
        for (g, gname) in self.groups().iter().enumerate() {
            let merged = self.merged_intervals(g);
            let shares = self.key_share(g);
            for (s, sname) in self.shard_names().iter().enumerate() {
                let mine: Vec<String> = merged
                    .iter()
                    .filter(|iv| iv.shard == s)
                    .map(|iv| iv.range_text())
                    .collect();
                let pins: Vec<String> = lookups
                    .iter()
                    .filter(|(lg, _, ls)| lg == gname && ls == sname)
                    .map(|(_, k, _)| k.clone())
                    .collect();
                rows.push(vec![
                    gname.clone(),
                    sname.clone(),
                    mine.len().to_string(),
                    list_cell(mine),
                    format!("{:.2}%", shares.get(s).copied().unwrap_or(0.0) * 100.0),
                    list_cell(pins),
                    self.epoch().to_string(),
                ]);
            }
        }
        rows
    }
}
