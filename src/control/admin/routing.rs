//! The routing views of the admin console: `SHOW SHARDMAP` (who owns which
//! part of the hash circle, per co-location group) and `SHOW ROUTE <table>
//! <key>` (where one key goes, and why), both from the running shard map.

use super::show::ResultSet;
use crate::data::codec::error::sqlstate;
use crate::data::codec::SqlError;
use crate::data::router::{hash_key, ShardMap, SHOW_SHARDMAP_COLUMNS};

/// Columns of `SHOW ROUTE`.
pub const SHOW_ROUTE_COLUMNS: &[&str] =
    &["table", "key", "group", "hash", "hash_hex", "shard", "via"];

/// `SHOW SHARDMAP`.
pub fn shardmap(map: &ShardMap) -> ResultSet {
    let mut r = ResultSet::new(SHOW_SHARDMAP_COLUMNS);
    for row in map.show_rows() {
        r.push(row);
    }
    r
}

/// `SHOW ROUTE <table> <key>`: the key's group, its hash (as Postgres prints
/// an int8, and in hex), the shard, and whether a lookup pin or a hash
/// interval decided it. A reference table answers with every shard.
pub fn route(map: &ShardMap, table: &str, key: &str) -> Result<ResultSet, SqlError> {
    let info = map.table(table).ok_or_else(|| {
        SqlError::new(
            "42P01",
            format!("table \"{table}\" is not in the shard map"),
        )
        .with_hint("[[tables]] in the config lists the tables shardproxy routes.")
    })?;
    let mut r = ResultSet::new(SHOW_ROUTE_COLUMNS);
    let group = map.groups().get(info.group).cloned().unwrap_or_default();
    if info.reference || info.shard_key.is_none() {
        r.rows.push(vec![
            Some(info.name.clone()),
            Some(key.to_string()),
            Some(group),
            None,
            None,
            Some(map.shard_names().join(", ")),
            Some("reference table (every shard)".into()),
        ]);
        return Ok(r);
    }
    let kv = map.key_from_text(info.group, key).map_err(|e| {
        SqlError::new(
            sqlstate::INVALID_TEXT,
            format!("key for table {}: {e}", info.name),
        )
    })?;
    let Some(h) = hash_key(&kv) else {
        return Err(SqlError::new(
            sqlstate::INVALID_TEXT,
            "a NULL key has no hash",
        ));
    };
    let shard = map.shard_for(info.group, &kv);
    let pinned = map
        .lookups()
        .iter()
        .any(|(g, k, _)| *g == group && map.key_from_text(info.group, k).is_ok_and(|pk| pk == kv));
    let via = if pinned {
        "lookup pin".to_string()
    } else {
        map.merged_intervals(info.group)
            .iter()
            .find(|iv| iv.contains(h))
            .map(|iv| format!("hash interval {}", iv.range_text()))
            .unwrap_or_else(|| "hash interval".into())
    };
    r.push([
        info.name.clone(),
        key.to_string(),
        group,
        (h as i64).to_string(),
        format!("{h:016x}"),
        map.shard_names().get(shard).cloned().unwrap_or_default(),
        via,
    ]);
    Ok(r)
}
