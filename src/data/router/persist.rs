//! The persisted shard map: a TOML file under `shardmap/` holding the epoch,
//! each group's interval table and the pinned keys.
//!
//! Hashes are written as `0x` + 16 hex digits because TOML integers are
//! signed 64-bit. Only upper bounds are stored: interval `i` is
//! `(hi[i-1], hi[i]]` and the first wraps, so a file cannot describe a gap or
//! an overlap. Once the file exists it owns placement: `[[lookup]]` entries
//! of the config that are missing from it are reported, not applied (a pin on
//! a live key needs a move).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::interval::IntervalTable;
use super::key::{KeyType, OwnedKey};
use super::lookup::LookupTable;
use super::ring;
use super::shardmap::{lookup_key, Catalog, Group, Inner, ShardId, ShardMap, DEFAULT_GROUP};
use crate::config::Config;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    epoch: u64,
    #[serde(default)]
    groups: Vec<GroupFile>,
    #[serde(default)]
    lookups: Vec<LookupFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    key_type: Option<String>,
    /// `[hi, shard]` pairs, ascending.
    intervals: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupFile {
    group: String,
    key: String,
    shard: String,
}

/// Where `sharding.map_file` points; a relative path is taken relative to the
/// config file's directory (or the working directory if the config was not
/// read from a file).
pub fn map_path(cfg: &Config) -> Option<PathBuf> {
    let p = cfg.sharding.map_file.as_ref()?;
    if p.is_absolute() {
        return Some(p.clone());
    }
    match cfg.source.as_ref().and_then(|s| s.parent()) {
        Some(dir) => Some(dir.join(p)),
        None => Some(p.clone()),
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn parse_hash(s: &str) -> Result<u64, String> {
    s.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("'{s}' is not a hash (0x followed by up to 16 hex digits)"))
}

impl ShardMap {
    /// The persisted form (see the module doc); `from_toml` reads it back.
    pub fn to_toml(&self) -> String {
        let m = self.inner();
        let mut out = String::new();
        out.push_str("# shardproxy shard map, written by shardproxy.\n");
        out.push_str("# Each group's intervals are [hi, shard]: the shard owns hashes in\n");
        out.push_str("# (previous hi, hi]; the first interval wraps from the last hi through\n");
        out.push_str("# 0xffffffffffffffff to 0. A key's hash is Postgres's hash as u64, e.g.\n");
        out.push_str("# hashint8extended(key::int8, 8816678312871386365).\n");
        out.push_str(&format!("epoch = {}\n", m.epoch));
        for (g, grp) in m.groups.iter().enumerate() {
            out.push_str("\n[[groups]]\n");
            out.push_str(&format!("name = {}\n", quote(&m.group_names[g])));
            if let Some(kt) = grp.key_type {
                out.push_str(&format!("key_type = {}\n", quote(kt.name())));
            }
            out.push_str("intervals = [\n");
            for (hi, s) in grp.table.points() {
                out.push_str(&format!("  [\"{hi:#018x}\", {}],\n", quote(&m.shards[s])));
            }
            out.push_str("]\n");
        }
        for (g, grp) in m.groups.iter().enumerate() {
            for (k, s) in grp.lookups.entries() {
                out.push_str("\n[[lookups]]\n");
                out.push_str(&format!("group = {}\n", quote(&m.group_names[g])));
                out.push_str(&format!("key = {}\n", quote(&k.to_string())));
                out.push_str(&format!("shard = {}\n", quote(&m.shards[s])));
            }
        }
        out
    }

    /// Reads a persisted map. Shards, tables and groups come from `cfg`; the
    /// file supplies epoch, interval tables and pins. A shard named in the
    /// file must be in `cfg` (config shards absent from the file own nothing
    /// until a move gives them intervals). A config group missing from the
    /// file gets the consistent-hash default; a file group unknown to the
    /// config is skipped with a warning.
    pub fn from_toml(text: &str, cfg: &Config) -> Result<ShardMap, String> {
        let file: MapFile =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let cat = Catalog::from_config(cfg)?;
        let shards: Vec<String> = cfg.shards.iter().map(|s| s.name.clone()).collect();
        let shard_id = |name: &str, what: &str| -> Result<ShardId, String> {
            shards
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| format!("{what}: shard '{name}' is not in [[shards]]"))
        };
        let vnodes = cfg.sharding.vnodes.max(1);
        let mut tables: Vec<Option<IntervalTable>> = vec![None; cat.group_names.len()];
        for gf in &file.groups {
            let what = format!("groups '{}'", gf.name);
            let Some(g) = cat.group_names.iter().position(|n| *n == gf.name) else {
                tracing::warn!(group = %gf.name, "shard map group is not in the config; ignored");
                continue;
            };
            if let (Some(file_kt), Some(cfg_kt)) = (&gf.key_type, cat.key_types[g]) {
                let file_kt =
                    KeyType::parse(file_kt).map_err(|e| format!("{what}.key_type: {e}"))?;
                let same = (file_kt.is_int() && cfg_kt.is_int())
                    || (file_kt.is_text() && cfg_kt.is_text())
                    || file_kt == cfg_kt;
                if !same {
                    return Err(format!(
                        "{what}: placed by {file_kt} keys but the config now says {cfg_kt}; \
                         changing a group's key type needs a resharding"
                    ));
                }
            }
            let points = gf
                .intervals
                .iter()
                .map(|(hi, s)| {
                    Ok((
                        parse_hash(hi).map_err(|e| format!("{what}.intervals: {e}"))?,
                        shard_id(s, &format!("{what}.intervals"))?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if tables[g].is_some() {
                return Err(format!("{what}: listed twice"));
            }
            tables[g] =
                Some(IntervalTable::from_sorted(points).map_err(|e| format!("{what}: {e}"))?);
        }
        let mut pins: Vec<Vec<(OwnedKey, ShardId)>> = vec![Vec::new(); cat.group_names.len()];
        for (i, l) in file.lookups.iter().enumerate() {
            if !cat.group_names.contains(&l.group) {
                tracing::warn!(group = %l.group, key = %l.key, "shard map lookup for a group not in the config; ignored");
                continue;
            }
            let (g, key) = lookup_key(&cat.group_names, &cat.key_types, &l.group, &l.key)
                .map_err(|e| format!("lookups[{i}]: {e}"))?;
            pins[g].push((key, shard_id(&l.shard, &format!("lookups[{i}]"))?));
        }
        for l in &cfg.lookup {
            let gname = l.colocation.as_deref().unwrap_or(DEFAULT_GROUP);
            let in_file = file
                .lookups
                .iter()
                .any(|f| f.group == gname && f.key == l.key && f.shard == l.shard);
            if !in_file {
                tracing::warn!(group = gname, key = %l.key, shard = %l.shard,
                    "[[lookup]] in the config is not in the shard map file; not applied (pin it with a move)");
            }
        }
        let mut groups = Vec::with_capacity(cat.group_names.len());
        for (g, (t, p)) in tables.into_iter().zip(pins).enumerate() {
            let table = match t {
                Some(t) => t,
                None => {
                    tracing::warn!(group = %cat.group_names[g], "group missing from the shard map file; using the consistent-hash default");
                    ring::consistent_table(&shards, vnodes)
                }
            };
            groups.push(Group {
                key_type: cat.key_types[g],
                table,
                lookups: LookupTable::new(p)
                    .map_err(|e| format!("lookups (group '{}'): {e}", cat.group_names[g]))?,
            });
        }
        Ok(ShardMap::from_parts(Inner {
            epoch: file.epoch,
            vnodes,
            shards,
            tables: cat.tables,
            group_names: cat.group_names,
            groups,
        }))
    }

    /// Writes [`ShardMap::to_toml`] to `path` atomically (temp file, fsync,
    /// rename), creating the directory if needed.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("toml.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_toml().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}
