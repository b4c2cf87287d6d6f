//! From a plan's target to shards, once Bind parameters are known.

use crate::data::codec::frontend::{ParamFormats, ParamValues};
use crate::data::router::{KeyType, KeyValue, ShardMap};

use super::plan::{KeySource, StmtPlan, Target};

/// Bind parameter values (Postgres Bind semantics: no format codes means all
/// text, one applies to all, otherwise one per parameter; `None` is NULL).
/// The codec's inline vectors: a decoded Bind's values move in as they are.
#[derive(Debug, Clone, Default)]
pub struct Params<'a> {
    pub values: ParamValues<'a>,
    pub formats: ParamFormats,
}

impl Params<'_> {
    /// No parameters (simple protocol).
    pub fn none() -> Params<'static> {
        Params::default()
    }

    fn format(&self, i: usize) -> i16 {
        match self.formats.len() {
            0 => 0,
            1 => self.formats[0],
            _ => self.formats.get(i).copied().unwrap_or(0),
        }
    }
}

/// Where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Shard(usize),
    /// Several shards (sorted, deduplicated, at least two).
    Shards(Vec<usize>),
    All,
    /// Any one shard (the session's current one).
    Any,
}

/// A routing failure for the client: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RouteError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl RouteError {
    pub(crate) fn new(sqlstate: &'static str, message: impl Into<String>) -> RouteError {
        RouteError {
            sqlstate,
            message: message.into(),
        }
    }
}

/// The key value of one key source.
pub fn key_value<'a, 'p: 'a>(
    src: &'a KeySource,
    key_type: KeyType,
    params: &Params<'p>,
) -> Result<KeyValue<'a>, RouteError> {
    let invalid = |m: String| RouteError::new("22P02", m);
    match src {
        KeySource::Null => Ok(KeyValue::Null),
        KeySource::Literal(text) => key_type.from_text(text).map_err(invalid),
        KeySource::Param(n) => {
            let i = n - 1;
            let value = params.values.get(i).ok_or_else(|| {
                RouteError::new(
                    "08P01",
                    format!(
                        "shard key parameter ${n} was not bound ({} parameters given)",
                        params.values.len()
                    ),
                )
            })?;
            let Some(bytes) = value else {
                return Ok(KeyValue::Null);
            };
            match params.format(i) {
                0 => {
                    let text = std::str::from_utf8(bytes).map_err(|_| {
                        RouteError::new(
                            "22021",
                            format!("shard key parameter ${n} is not valid UTF-8"),
                        )
                    })?;
                    key_type.from_text(text).map_err(invalid)
                }
                1 => key_type.from_binary(bytes).map_err(invalid),
                f => Err(RouteError::new(
                    "08P01",
                    format!("invalid format code {f} for parameter ${n}"),
                )),
            }
        }
    }
}

fn check_group(map: &ShardMap, group: usize) -> Result<(), RouteError> {
    if group < map.groups().len() {
        Ok(())
    } else {
        Err(RouteError::new(
            "XX000",
            "the shard map changed since this statement was planned; prepare it again",
        ))
    }
}

/// The key a single-key statement was routed by, with its group and hash:
/// what load accounting ([`crate::data::load`]) counts, taken from the
/// routing itself so nothing is parsed or hashed twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedKey<'a> {
    pub group: usize,
    /// `hash_key(key)`, 0 for NULL (which routes as hash 0).
    pub hash: u64,
    pub key: KeyValue<'a>,
}

/// The shards of a list of keys of one group; a single key is noted in `note`.
fn shards_of<'a, 'p: 'a>(
    keys: &'a [KeySource],
    group: usize,
    key_type: KeyType,
    params: &Params<'p>,
    map: &ShardMap,
    note: &mut Option<RoutedKey<'a>>,
) -> Result<Route, RouteError> {
    check_group(map, group)?;
    // One key (the OLTP case) allocates nothing; a few stay inline.
    if let [k] = keys {
        let v = key_value(k, key_type, params)?;
        let (shard, hash) = map.route_key(group, &v);
        *note = Some(RoutedKey {
            group,
            hash,
            key: v,
        });
        return Ok(Route::Shard(shard));
    }
    let mut shards = smallvec::SmallVec::<[usize; 8]>::with_capacity(keys.len());
    for k in keys {
        let v = key_value(k, key_type, params)?;
        shards.push(map.shard_for(group, &v));
    }
    shards.sort_unstable();
    shards.dedup();
    Ok(match shards.as_slice() {
        [one] => Route::Shard(*one),
        [] => Route::Any,
        _ => Route::Shards(shards.into_vec()),
    })
}

/// Resolves a target to shards with the Bind parameters.
pub fn resolve(target: &Target, params: &Params<'_>, map: &ShardMap) -> Result<Route, RouteError> {
    resolve_keyed(target, params, map, &mut None)
}

/// [`resolve`], noting the key of a single-key route in `note`.
pub fn resolve_keyed<'a, 'p: 'a>(
    target: &'a Target,
    params: &Params<'p>,
    map: &ShardMap,
    note: &mut Option<RoutedKey<'a>>,
) -> Result<Route, RouteError> {
    match target {
        Target::Keyed {
            group,
            key_type,
            keys,
        } => shards_of(keys, *group, *key_type, params, map, note),
        Target::InsertMulti {
            group,
            key_type,
            rows,
        } => shards_of(rows, *group, *key_type, params, map, note),
        Target::AllShards(_) | Target::CopyIn(_) => Ok(Route::All),
        Target::AnyShard => Ok(Route::Any),
        Target::Named(name) => map
            .shard_id(name)
            .map(Route::Shard)
            .ok_or_else(|| RouteError::new("22023", format!("shard \"{name}\" does not exist"))),
        Target::Refused { sqlstate, message } => Err(RouteError::new(sqlstate, message.clone())),
        Target::Unparsed {
            read_only_guess: true,
            ..
        } => Ok(Route::All),
        Target::Unparsed { error, .. } => Err(RouteError::new(
            "0A000",
            format!(
                "shardproxy cannot route a statement it cannot parse ({error}); only read-only \
                 and maintenance statements are forwarded unparsed"
            ),
        )),
    }
}

/// [`resolve`] for a statement, with its checks: a key error names the
/// statement's sharded table, and a keyed statement whose keys land on
/// several shards is refused when it can't run across shards
/// ([`super::MergeSpec::unsupported`]).
pub fn resolve_stmt(
    stmt: &StmtPlan,
    params: &Params<'_>,
    map: &ShardMap,
) -> Result<Route, RouteError> {
    resolve_stmt_keyed(stmt, params, map, &mut None)
}

/// [`resolve_stmt`], noting the key of a single-key route in `note`.
pub fn resolve_stmt_keyed<'a, 'p: 'a>(
    stmt: &'a StmtPlan,
    params: &Params<'p>,
    map: &ShardMap,
    note: &mut Option<RoutedKey<'a>>,
) -> Result<Route, RouteError> {
    let route = resolve_keyed(&stmt.target, params, map, note).map_err(|mut e| {
        if e.sqlstate == "22P02" {
            let table = stmt.tables.iter().find(|t| {
                map.table(t)
                    .is_some_and(|i| !i.reference && i.shard_key.is_some())
            });
            if let Some(t) = table {
                e.message = format!("{} for table {t}", e.message);
            }
        }
        e
    })?;
    if let (Route::Shards(_), Some(problem)) = (
        &route,
        stmt.merge.as_ref().and_then(|m| m.unsupported.as_ref()),
    ) {
        return Err(RouteError::new(
            "0A000",
            format!(
                "this statement's shard keys are on several shards, and it cannot run across \
                 shards: {problem}"
            ),
        ));
    }
    Ok(route)
}
