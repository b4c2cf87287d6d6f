//! The shard map: an immutable, versioned snapshot of where every key lives.
//!
//! It holds the shards, the configured tables with their co-location groups,
//! and per group an explicit [`IntervalTable`] (who owns which part of the
//! 64-bit hash circle) plus pinned lookup keys. Routing a key is one hash and
//! one binary search. Changes (a shard added, an interval moved, a key pinned)
//! build a new snapshot with a higher epoch; the data path swaps snapshots
//! with `arc-swap`, so in-flight queries finish on the one they started with.

use std::sync::Arc;

use super::hash::hash_key;
use super::interval::{HashInterval, IntervalTable};
use super::key::{KeyType, KeyValue, OwnedKey};
use super::lookup::LookupTable;
use super::ring;
use crate::config::Config;

/// Index into the shard list (the order of `[[shards]]` in the config).
pub type ShardId = usize;

/// The co-location group of tables with no `colocation`; always group 0.
pub const DEFAULT_GROUP: &str = "default";

/// A configured table, as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    /// The shard-key column; `None` for reference tables.
    pub shard_key: Option<String>,
    pub key_type: KeyType,
    /// Index into [`ShardMap::groups`].
    pub group: usize,
    /// Copied to every shard.
    pub reference: bool,
}

/// Placement of one co-location group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    /// Key type of the group's sharded tables (`None`: no sharded table).
    pub key_type: Option<KeyType>,
    pub table: IntervalTable,
    pub lookups: LookupTable,
}

/// An immutable snapshot; cloning copies one `Arc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    inner: Arc<Inner>,
}

// The data path shares snapshots across tasks (arc-swap).
const _: fn() = || {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<ShardMap>();
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Inner {
    pub epoch: u64,
    /// Virtual nodes per shard used when a shard is added.
    pub vnodes: usize,
    pub shards: Vec<String>,
    pub tables: Vec<TableInfo>,
    pub group_names: Vec<String>,
    pub groups: Vec<Group>,
}

/// Tables and groups derived from the config, before placement.
pub(super) struct Catalog {
    pub tables: Vec<TableInfo>,
    pub group_names: Vec<String>,
    pub key_types: Vec<Option<KeyType>>,
}

/// Integer widths hash alike, and text/varchar hash alike: such tables may
/// share a group.
fn same_hash_class(a: KeyType, b: KeyType) -> bool {
    (a.is_int() && b.is_int()) || (a.is_text() && b.is_text()) || a == b
}

impl Catalog {
    pub fn from_config(cfg: &Config) -> Result<Catalog, String> {
        let mut group_names = vec![DEFAULT_GROUP.to_string()];
        let mut key_types: Vec<Option<KeyType>> = vec![None];
        let mut first_table: Vec<Option<String>> = vec![None];
        let mut tables = Vec::with_capacity(cfg.tables.len());
        for (i, t) in cfg.tables.iter().enumerate() {
            let key_type =
                KeyType::parse(&t.key_type).map_err(|e| format!("tables[{i}].key_type: {e}"))?;
            let gname = t.colocation.as_deref().unwrap_or(DEFAULT_GROUP);
            let group = match group_names.iter().position(|g| g == gname) {
                Some(g) => g,
                None => {
                    group_names.push(gname.to_string());
                    key_types.push(None);
                    first_table.push(None);
                    group_names.len() - 1
                }
            };
            if t.shard_key.is_some() && !t.reference {
                match key_types[group] {
                    Some(k) if !same_hash_class(k, key_type) => {
                        return Err(format!(
                            "tables[{i}] ('{}'): co-location group '{gname}' shards on {k} \
                             (table '{}') but this table's key_type is {key_type}; \
                             tables of one group must share a key type",
                            t.name,
                            first_table[group].as_deref().unwrap_or("?"),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        key_types[group] = Some(key_type);
                        first_table[group] = Some(t.name.clone());
                    }
                }
            }
            tables.push(TableInfo {
                name: t.name.clone(),
                shard_key: t.shard_key.clone(),
                key_type,
                group,
                reference: t.reference,
            });
        }
        Ok(Catalog {
            tables,
            group_names,
            key_types,
        })
    }
}

/// Resolves a lookup key's text with the group's key type.
pub(super) fn lookup_key(
    group_names: &[String],
    key_types: &[Option<KeyType>],
    group: &str,
    key: &str,
) -> Result<(usize, OwnedKey), String> {
    let g = group_names
        .iter()
        .position(|n| n == group)
        .ok_or_else(|| format!("co-location group '{group}' has no tables"))?;
    let kt =
        key_types[g].ok_or_else(|| format!("co-location group '{group}' has no sharded tables"))?;
    let v = kt.from_text(key)?;
    let owned = v
        .to_owned_key()
        .ok_or_else(|| format!("'{key}' cannot be pinned"))?;
    Ok((g, owned))
}

impl ShardMap {
    pub(super) fn from_parts(inner: Inner) -> ShardMap {
        ShardMap {
            inner: Arc::new(inner),
        }
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The map for `cfg`: loaded from `sharding.map_file` when that file
    /// exists (it then owns intervals, lookups and epoch; see
    /// [`ShardMap::from_toml`]), otherwise the consistent-hash default with
    /// the config's `[[lookup]]` pins, epoch 1. Nothing is written here.
    pub fn from_config(cfg: &Config) -> Result<ShardMap, String> {
        if let Some(path) = super::persist::map_path(cfg) {
            if path.exists() {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: cannot read shard map: {e}", path.display()))?;
                return ShardMap::from_toml(&text, cfg)
                    .map_err(|e| format!("{}: {e}", path.display()));
            }
        }
        ShardMap::default_for(cfg)
    }

    /// The consistent-hash default for `cfg`, ignoring any map file.
    pub fn default_for(cfg: &Config) -> Result<ShardMap, String> {
        let cat = Catalog::from_config(cfg)?;
        let shards: Vec<String> = cfg.shards.iter().map(|s| s.name.clone()).collect();
        if shards.is_empty() {
            return Err("shards: at least one [[shards]] entry is needed".into());
        }
        let vnodes = cfg.sharding.vnodes.max(1);
        let table = ring::consistent_table(&shards, vnodes);
        let mut pins: Vec<Vec<(OwnedKey, ShardId)>> = vec![Vec::new(); cat.group_names.len()];
        for (i, l) in cfg.lookup.iter().enumerate() {
            let gname = l.colocation.as_deref().unwrap_or(DEFAULT_GROUP);
            let (g, key) = lookup_key(&cat.group_names, &cat.key_types, gname, &l.key)
                .map_err(|e| format!("lookup[{i}]: {e}"))?;
            let shard = shards.iter().position(|s| *s == l.shard).ok_or_else(|| {
                format!(
                    "lookup[{i}].shard: '{}' is not a shard in [[shards]]",
                    l.shard
                )
            })?;
            pins[g].push((key, shard));
        }
        let groups = pins
            .into_iter()
            .zip(cat.key_types.iter())
            .enumerate()
            .map(|(g, (p, kt))| {
                Ok(Group {
                    key_type: *kt,
                    table: table.clone(),
                    lookups: LookupTable::new(p)
                        .map_err(|e| format!("lookup (group '{}'): {e}", cat.group_names[g]))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(ShardMap::from_parts(Inner {
            epoch: 1,
            vnodes,
            shards,
            tables: cat.tables,
            group_names: cat.group_names,
            groups,
        }))
    }

    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// Virtual nodes per shard used by [`ShardMap::with_shard_added`] plans.
    pub fn vnodes(&self) -> usize {
        self.inner.vnodes
    }

    pub fn shard_names(&self) -> &[String] {
        &self.inner.shards
    }

    pub fn shard_id(&self, name: &str) -> Option<ShardId> {
        self.inner.shards.iter().position(|s| s == name)
    }

    /// All configured tables.
    pub fn tables(&self) -> &[TableInfo] {
        &self.inner.tables
    }

    /// A table by name, case-insensitive; a schema prefix is ignored when the
    /// configured name has none (`public.orders` finds `orders`).
    pub fn table(&self, name: &str) -> Option<&TableInfo> {
        let bare = name.rsplit('.').next().unwrap_or(name);
        self.inner
            .tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .or_else(|| {
                self.inner
                    .tables
                    .iter()
                    .find(|t| t.name.eq_ignore_ascii_case(bare))
            })
    }

    /// Co-location group names; index 0 is always `"default"`.
    pub fn groups(&self) -> &[String] {
        &self.inner.group_names
    }

    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.inner.group_names.iter().position(|g| g == name)
    }

    /// Key type of the group's sharded tables (`None` if it has none).
    pub fn group_key_type(&self, group: usize) -> Option<KeyType> {
        self.inner.groups.get(group).and_then(|g| g.key_type)
    }

    /// A key of `group` given as text (SQL literal or text Bind parameter),
    /// parsed with the group's key type.
    pub fn key_from_text<'a>(&self, group: usize, s: &'a str) -> Result<KeyValue<'a>, String> {
        self.group_key_type(group)
            .ok_or_else(|| {
                format!(
                    "co-location group '{}' has no sharded tables",
                    self.groups().get(group).map_or("?", |g| g.as_str())
                )
            })?
            .from_text(s)
    }

    /// A key of `group` given as a binary Bind parameter.
    pub fn key_from_binary<'a>(&self, group: usize, b: &'a [u8]) -> Result<KeyValue<'a>, String> {
        self.group_key_type(group)
            .ok_or_else(|| {
                format!(
                    "co-location group '{}' has no sharded tables",
                    self.groups().get(group).map_or("?", |g| g.as_str())
                )
            })?
            .from_binary(b)
    }

    /// The shard for a key of `group`: a lookup pin wins, then the interval
    /// owning `hash_key(key)`. A NULL key goes to the owner of hash 0 (what
    /// Postgres's hash partitioning uses for NULL), for INSERT and SELECT
    /// alike; pins never apply to NULL. The key must be of the group's key
    /// type (use [`KeyType::from_text`] with [`ShardMap::group_key_type`]).
    ///
    /// # Panics
    /// If `group` is not an index into [`ShardMap::groups`] (a caller bug).
    #[inline]
    pub fn shard_for(&self, group: usize, key: &KeyValue) -> ShardId {
        self.route_key(group, key).0
    }

    /// [`ShardMap::shard_for`] and the key's hash (0 for NULL, whose owner
    /// is the owner of hash 0): what load accounting counts the key under.
    ///
    /// # Panics
    /// If `group` is out of range.
    #[inline]
    pub fn route_key(&self, group: usize, key: &KeyValue) -> (ShardId, u64) {
        let g = &self.inner.groups[group];
        match hash_key(key) {
            None => (g.table.owner(0), 0),
            Some(h) => match g.lookups.get(h, key) {
                Some(s) => (s, h),
                None => (g.table.owner(h), h),
            },
        }
    }

    /// The interval of `group`'s table holding `hash`, with its owner.
    ///
    /// # Panics
    /// If `group` is out of range.
    pub fn interval_of(&self, group: usize, hash: u64) -> HashInterval {
        self.inner.groups[group].table.interval_at(hash)
    }

    /// The shard `key` (whose hash is `hash`) is pinned to, if it is.
    pub fn pinned_shard(&self, group: usize, hash: u64, key: &KeyValue) -> Option<ShardId> {
        self.inner.groups.get(group)?.lookups.get(hash, key)
    }

    /// The interval owner of `hash` (ignores lookups).
    ///
    /// # Panics
    /// If `group` is out of range.
    #[inline]
    pub fn shard_for_hash(&self, group: usize, hash: u64) -> ShardId {
        self.inner.groups[group].table.owner(hash)
    }

    /// Every interval of the group's table in bound order, covering the
    /// circle exactly once. Each is `(lo, hi]`; the first wraps from the last
    /// bound through `u64::MAX` to 0 (`lo >= hi`; `lo == hi` is the whole
    /// circle). Adjacent intervals of one shard are not joined: each bound is
    /// a vnode point or a move boundary.
    pub fn intervals(&self, group: usize) -> Vec<HashInterval> {
        self.inner.groups[group].table.intervals()
    }

    /// Like [`ShardMap::intervals`] with same-shard neighbours joined.
    pub fn merged_intervals(&self, group: usize) -> Vec<HashInterval> {
        self.inner.groups[group].table.merged_intervals()
    }

    /// Fraction of the hash circle per shard (index = `ShardId`), pins ignored.
    pub fn key_share(&self, group: usize) -> Vec<f64> {
        self.inner.groups[group]
            .table
            .shares(self.inner.shards.len())
    }

    /// `(group, key, shard)` for every pinned key.
    pub fn lookups(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (g, grp) in self.inner.groups.iter().enumerate() {
            for (k, s) in grp.lookups.entries() {
                out.push((
                    self.inner.group_names[g].clone(),
                    k.to_string(),
                    self.inner.shards[s].clone(),
                ));
            }
        }
        out
    }

    /// Same tables and pins, a new epoch and a new table per group.
    fn with_tables(&self, f: impl Fn(usize, &IntervalTable) -> IntervalTable) -> Inner {
        let mut inner = (*self.inner).clone();
        inner.epoch += 1;
        for (g, grp) in inner.groups.iter_mut().enumerate() {
            grp.table = f(g, &grp.table);
        }
        inner
    }

    /// A new epoch with shard `name` added (appended if new) and its `vnodes`
    /// consistent-hash points inserted into every group: only the intervals
    /// ending at those points change hands, all to `name`.
    pub fn with_shard_added(&self, name: &str, vnodes: usize) -> ShardMap {
        let id = self.shard_id(name).unwrap_or(self.inner.shards.len());
        let mut inner = self.with_tables(|_, t| ring::add_vnodes(t, id, name, vnodes));
        if id == inner.shards.len() {
            inner.shards.push(name.to_string());
        }
        ShardMap::from_parts(inner)
    }

    /// A new epoch where hashes `(lo, hi]` of `group` belong to `shard`
    /// (the switch step of a move).
    pub fn with_interval_assigned(
        &self,
        group: usize,
        lo: u64,
        hi: u64,
        shard: ShardId,
    ) -> ShardMap {
        ShardMap::from_parts(self.with_tables(|g, t| {
            if g == group {
                t.with_assigned(lo, hi, shard)
            } else {
                t.clone()
            }
        }))
    }

    /// A new epoch with `key` (text, resolved with the group's key type)
    /// pinned to `shard`, replacing any earlier pin of that key.
    pub fn with_lookup(&self, group: &str, key: &str, shard: &str) -> Result<ShardMap, String> {
        let kt: Vec<Option<KeyType>> = self.inner.groups.iter().map(|g| g.key_type).collect();
        let (g, key) = lookup_key(&self.inner.group_names, &kt, group, key)?;
        let s = self
            .shard_id(shard)
            .ok_or_else(|| format!("'{shard}' is not a shard"))?;
        let mut inner = (*self.inner).clone();
        inner.epoch += 1;
        let mut pins: Vec<(OwnedKey, ShardId)> = inner.groups[g]
            .lookups
            .entries()
            .filter(|(k, _)| **k != key)
            .map(|(k, s)| (k.clone(), s))
            .collect();
        pins.push((key, s));
        inner.groups[g].lookups = LookupTable::new(pins)?;
        Ok(ShardMap::from_parts(inner))
    }
}
