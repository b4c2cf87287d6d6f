//! Globally unique ids for `serial`, `bigserial` and identity columns of
//! sharded tables.
//!
//! Each shard's sequences count on their own, so by default every shard
//! hands out 1, 2, 3, … and the same id lands on several shards. The scheme
//! here interleaves them: every shard owns an id *slot* `s` in
//! `0..sharding.id_stride` (kept on the shard itself, in `shardproxy.id_slot`,
//! so it survives renames and config reorders), and every sequence owned by
//! a column of a sharded table counts `INCREMENT BY id_stride` through the
//! values `≡ s + 1 (mod id_stride)`. Two shards then never produce the same
//! value, whatever their pace, and nothing changes on the insert path: the
//! column default is still `nextval(…)`.
//!
//! - A table created (or altered) through the proxy gets its sequences set
//!   inside the DDL's own transaction, before any row can use them
//!   ([`ddl_fix_sql`], run by the session on every shard of the DDL).
//! - At start, on RELOAD/SIGHUP and with the admin command `FIX SEQUENCES`,
//!   the proxy gives shards without a slot the lowest free one and restarts
//!   every non-conforming sequence above the highest id any shard holds in
//!   that column ([`interleave`]); with `sharding.unique_ids = false` it only
//!   reports them. `SHOW SEQUENCES` and `shardproxy check` list every such
//!   sequence per shard with its state ([`survey`]).
//! - Rows moved by the rebalancer keep their ids: their values belong to the
//!   source's residue class, which only the source's sequence produces, and
//!   the target's sequence keeps producing its own. A new shard takes a free
//!   slot (a slot freed by a removed shard may be reused: the restart above
//!   the global maximum keeps it clear of the ids that shard handed out), so
//!   its sequences never meet the moved ids either. The shard must have its
//!   slot and sequences set before rows are routed to it: a RELOAD with the
//!   new shard in the config does that, and a move's target that the mover
//!   prepares can call [`interleave`] before its switch.
//!
//! Explicit ids written by the application (`INSERT … (id) VALUES (7)`) are
//! not touched by any of this. An `int4` serial runs out `id_stride` times
//! sooner: prefer `bigserial`/`bigint` identity on sharded tables.

use crate::config::Config;
use crate::control::conn::connect_endpoint;
use crate::control::twophase::timed;
use crate::data::pool::Endpoint;
use crate::runtime::Runtime;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The control connections' application_name.
const APP: &str = "shardproxy-unique-ids";

/// Where each shard keeps its slot (one row).
pub const SLOT_TABLE: &str = "shardproxy.id_slot";

const SLOT_DDL: &str = "CREATE SCHEMA IF NOT EXISTS shardproxy; \
     CREATE TABLE IF NOT EXISTS shardproxy.id_slot \
     (one boolean PRIMARY KEY DEFAULT true CHECK (one), slot integer NOT NULL)";

/// The sequences owned by columns of the tables `$1`, with what the scheme
/// looks at: table (as regclass text), column, sequence, increment, the
/// next value it hands out (its START until first used: a restart here also
/// sets START, so that stays true).
const LIST_SQL: &str = "SELECT d.refobjid::regclass::text, a.attname::text, d.objid::regclass::text, \
       s.seqincrement, coalesce(pg_catalog.pg_sequence_last_value(d.objid) + s.seqincrement, s.seqstart) \
     FROM unnest($1::text[]) AS t(name) \
     JOIN pg_catalog.pg_depend d ON d.refobjid = pg_catalog.to_regclass(t.name) \
      AND d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
      AND d.deptype IN ('a', 'i') \
     JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
     ORDER BY 1, 2";

/// One sequence as one shard has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqState {
    pub table: String,
    pub column: String,
    pub sequence: String,
    pub increment: i64,
    /// The next value it hands out.
    pub next: i64,
    /// The highest id in the column on this shard.
    pub max_id: Option<i64>,
}

/// What one shard said.
#[derive(Debug, Clone, Default)]
pub struct ShardIds {
    pub shard: String,
    /// Its slot (None: none yet).
    pub slot: Option<i64>,
    pub sequences: Vec<SeqState>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// Whether a sequence follows the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Its values meet another shard's: why, in words.
    Collides(String),
}

/// The shards the scheme covers, and its settings.
pub struct Cluster {
    /// Each shard's name and the server taking its writes.
    pub shards: Vec<(String, Arc<Endpoint>)>,
    /// The sharded tables (their names as configured).
    pub tables: Vec<String>,
    pub stride: u32,
}

impl Cluster {
    /// The running proxy's shards, at their current primaries.
    pub fn of_runtime(rt: &Runtime) -> Cluster {
        Cluster {
            shards: rt
                .pools
                .iter()
                .map(|p| (p.name.clone(), p.primary().endpoint.clone()))
                .collect(),
            tables: sharded_tables(&rt.config),
            stride: rt.config.sharding.id_stride,
        }
    }

    /// The shards a config names (`shardproxy check`, not serving).
    pub fn of_config(c: &Config) -> Result<Cluster, String> {
        let mut shards = Vec::with_capacity(c.shards.len());
        for s in &c.shards {
            let e = Endpoint::new(&s.url).map_err(|e| format!("shard \"{}\": {e}", s.name))?;
            shards.push((s.name.clone(), Arc::new(e)));
        }
        Ok(Cluster {
            shards,
            tables: sharded_tables(c),
            stride: c.sharding.id_stride,
        })
    }
}

/// The sharded tables of the config (their names as written).
pub fn sharded_tables(c: &Config) -> Vec<String> {
    c.tables
        .iter()
        .filter(|t| !t.reference && t.shard_key.is_some())
        .map(|t| t.name.clone())
        .collect()
}

/// Reads every shard's slot and sequences (nothing is changed).
pub async fn survey(c: &Cluster) -> Vec<ShardIds> {
    let mut out = Vec::with_capacity(c.shards.len());
    for (name, endpoint) in &c.shards {
        let mut ids = ShardIds {
            shard: name.clone(),
            ..ShardIds::default()
        };
        match read_shard(endpoint, &c.tables).await {
            Ok((slot, seqs)) => {
                ids.slot = slot;
                ids.sequences = seqs;
            }
            Err(e) => ids.error = Some(e),
        }
        out.push(ids);
    }
    out
}

async fn read_shard(
    endpoint: &Endpoint,
    tables: &[String],
) -> Result<(Option<i64>, Vec<SeqState>), String> {
    let client = connect_endpoint(endpoint, APP).await?;
    let has_slot: bool = timed(client.query_one(
        "SELECT pg_catalog.to_regclass('shardproxy.id_slot') IS NOT NULL",
        &[],
    ))
    .await?
    .get(0);
    let slot = if has_slot {
        timed(client.query_opt("SELECT slot::int8 FROM shardproxy.id_slot", &[]))
            .await?
            .map(|r| r.get::<_, i64>(0))
    } else {
        None
    };
    let rows = timed(client.query(LIST_SQL, &[&tables])).await?;
    let mut seqs = Vec::with_capacity(rows.len());
    for r in rows {
        let table: String = r.get(0);
        let column: String = r.get(1);
        let max_sql = format!("SELECT max({})::int8 FROM {table}", quote_ident(&column));
        let max_id = timed(client.query_one(&max_sql, &[]))
            .await?
            .get::<_, Option<i64>>(0);
        seqs.push(SeqState {
            table,
            column,
            sequence: r.get(2),
            increment: r.get(3),
            next: r.get(4),
            max_id,
        });
    }
    Ok((slot, seqs))
}

/// The state of `seq` on a shard with `slot`; `shared`: another shard has
/// the same slot.
pub fn status(seq: &SeqState, slot: Option<i64>, stride: i64, shared: bool) -> Status {
    let Some(slot) = slot else {
        return Status::Collides("the shard has no id slot yet".into());
    };
    if shared {
        return Status::Collides(format!("another shard has id slot {slot} too"));
    }
    if seq.increment != stride {
        return Status::Collides(format!(
            "counts by {} (every shard counts from its own start: the same ids come up on several shards)",
            seq.increment
        ));
    }
    if (seq.next - (slot + 1)).rem_euclid(stride) != 0 {
        return Status::Collides(format!(
            "its next value {} is not in slot {slot}'s class (≡ {} mod {stride})",
            seq.next,
            slot + 1
        ));
    }
    Status::Ok
}

/// Slots used by more than one shard.
fn shared_slots(shards: &[ShardIds]) -> HashSet<i64> {
    let mut seen = HashSet::new();
    let mut shared = HashSet::new();
    for s in shards {
        if let Some(slot) = s.slot {
            if !seen.insert(slot) {
                shared.insert(slot);
            }
        }
    }
    shared
}

/// One row per sequence and shard: table, column, shard, slot, increment,
/// next value, status (`ok` or `collides: why`); shards that could not be
/// asked get a row saying so. What `SHOW SEQUENCES` and `shardproxy check`
/// show.
pub fn report(shards: &[ShardIds], stride: u32) -> Vec<[String; 7]> {
    let shared = shared_slots(shards);
    let mut rows = Vec::new();
    for s in shards {
        if let Some(e) = &s.error {
            rows.push([
                String::new(),
                String::new(),
                s.shard.clone(),
                String::new(),
                String::new(),
                String::new(),
                format!("unknown: {e}"),
            ]);
            continue;
        }
        let is_shared = s.slot.is_some_and(|x| shared.contains(&x));
        for q in &s.sequences {
            let st = match status(q, s.slot, i64::from(stride), is_shared) {
                Status::Ok => "ok".to_string(),
                Status::Collides(why) => format!("collides: {why}"),
            };
            rows.push([
                q.table.clone(),
                q.column.clone(),
                s.shard.clone(),
                s.slot.map(|x| x.to_string()).unwrap_or_default(),
                q.increment.to_string(),
                q.next.to_string(),
                st,
            ]);
        }
    }
    rows.sort();
    rows
}

/// The columns of [`report`].
pub const REPORT_COLUMNS: &[&str] = &[
    "table",
    "column",
    "shard",
    "slot",
    "increment",
    "next",
    "status",
];

/// Applies the scheme to every shard: slots for shards without one, and
/// every non-conforming sequence restarted above the highest id of its
/// column on any shard. Returns what was changed; nothing is changed unless
/// every shard answers (a slot must be unique among all of them).
pub async fn interleave(c: &Cluster) -> Result<Vec<String>, String> {
    let stride = i64::from(c.stride);
    let mut clients = Vec::with_capacity(c.shards.len());
    for (name, endpoint) in &c.shards {
        let client = connect_endpoint(endpoint, APP)
            .await
            .map_err(|e| format!("shard \"{name}\": {e}"))?;
        timed(client.batch_execute(SLOT_DDL))
            .await
            .map_err(|e| format!("shard \"{name}\": {e}"))?;
        clients.push(client);
    }
    let mut changes = Vec::new();
    // Slots: the lowest free one for each shard without.
    let mut slots = Vec::with_capacity(clients.len());
    for client in &clients {
        let row = timed(client.query_opt("SELECT slot::int8 FROM shardproxy.id_slot", &[])).await?;
        slots.push(row.map(|r| r.get::<_, i64>(0)));
    }
    for (i, client) in clients.iter().enumerate() {
        if slots[i].is_some() {
            continue;
        }
        let used: HashSet<i64> = slots.iter().flatten().copied().collect();
        let free = (0..stride).find(|s| !used.contains(s)).ok_or_else(|| {
            format!("no free id slot: sharding.id_stride = {stride} and every slot is taken")
        })?;
        timed(client.execute(
            "INSERT INTO shardproxy.id_slot (slot) VALUES ($1::int8::int4) ON CONFLICT DO NOTHING",
            &[&free],
        ))
        .await?;
        let row = timed(client.query_one("SELECT slot::int8 FROM shardproxy.id_slot", &[])).await?;
        slots[i] = Some(row.get(0));
        changes.push(format!(
            "shard \"{}\" takes id slot {}",
            c.shards[i].0,
            slots[i].unwrap_or(free)
        ));
    }
    let shards = survey(c).await;
    if let Some(bad) = shards.iter().find(|s| s.error.is_some()) {
        return Err(format!(
            "shard \"{}\": {}",
            bad.shard,
            bad.error.clone().unwrap_or_default()
        ));
    }
    let shared = shared_slots(&shards);
    if let Some(slot) = shared.iter().next() {
        // Two shards with one slot (a database copied from another): which
        // one is right cannot be told here.
        return Err(format!(
            "several shards have id slot {slot}: give one of them another slot in {SLOT_TABLE} (a slot no other shard uses), then FIX SEQUENCES"
        ));
    }
    // The highest id (or value handed out) of each column anywhere.
    let mut high: BTreeMap<(String, String), i64> = BTreeMap::new();
    for s in &shards {
        for q in &s.sequences {
            let h = q.max_id.unwrap_or(0).max(q.next - 1);
            let e = high.entry((q.table.clone(), q.column.clone())).or_insert(h);
            *e = (*e).max(h);
        }
    }
    for (i, s) in shards.iter().enumerate() {
        for q in &s.sequences {
            if status(q, s.slot, stride, false) == Status::Ok {
                continue;
            }
            let slot = s.slot.unwrap_or(0);
            let hi = high
                .get(&(q.table.clone(), q.column.clone()))
                .copied()
                .unwrap_or(0);
            let v = next_in_class(hi, slot, stride);
            let sql = format!(
                "ALTER SEQUENCE {} INCREMENT BY {stride} START WITH {v} RESTART WITH {v}",
                q.sequence
            );
            timed(clients[i].batch_execute(&sql))
                .await
                .map_err(|e| format!("shard \"{}\": {sql}: {e}", s.shard))?;
            changes.push(format!(
                "shard \"{}\": {}.{} ({}) now counts by {stride} from {v}",
                s.shard, q.table, q.column, q.sequence
            ));
        }
    }
    Ok(changes)
}

/// The smallest value above `hi` in slot `slot`'s class (≡ slot + 1 mod stride).
pub fn next_in_class(hi: i64, slot: i64, stride: i64) -> i64 {
    let base = hi.max(0) + 1;
    base + (slot + 1 - base).rem_euclid(stride)
}

/// A DO block for the session to run on each shard inside a DDL's
/// transaction: every sequence of these sharded tables that does not
/// follow the scheme is restarted in the shard's slot's class, above the
/// column's highest id on the shard (a table just created has none). A
/// shard without a slot yet is left to the start/reload check. Failures
/// become a WARNING (a subtransaction), never the DDL's error.
pub fn ddl_fix_sql(stride: u32, tables: &[String]) -> String {
    let list = tables
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DO $shardproxy$ DECLARE r record; sl int8; hi int8; v int8; st constant int8 := {stride}; \
         BEGIN \
           IF pg_catalog.to_regclass('shardproxy.id_slot') IS NULL THEN RETURN; END IF; \
           SELECT slot INTO sl FROM shardproxy.id_slot; \
           IF sl IS NULL THEN RETURN; END IF; \
           FOR r IN SELECT d.objid::regclass AS seq, d.refobjid::regclass AS tbl, a.attname AS col, s.seqincrement AS inc, \
                  coalesce(pg_catalog.pg_sequence_last_value(d.objid) + s.seqincrement, s.seqstart) AS nxt \
                FROM unnest(ARRAY[{list}]::text[]) AS t(name) \
                JOIN pg_catalog.pg_depend d ON d.refobjid = pg_catalog.to_regclass(t.name) \
                 AND d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                 AND d.deptype IN ('a', 'i') \
                JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid \
                JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
           LOOP \
             CONTINUE WHEN r.inc = st AND mod(r.nxt - (sl + 1), st) = 0; \
             BEGIN \
               EXECUTE format('SELECT coalesce(max(%I), 0)::int8 FROM %s', r.col, r.tbl) INTO hi; \
               hi := greatest(hi, r.nxt - 1, 0); \
               v := hi + 1 + mod(mod(sl + 1 - (hi + 1), st) + st, st); \
               EXECUTE format('ALTER SEQUENCE %s INCREMENT BY %s START WITH %s RESTART WITH %s', r.seq, st, v, v); \
             EXCEPTION WHEN OTHERS THEN \
               RAISE WARNING 'shardproxy could not interleave sequence %: %', r.seq, SQLERRM; \
             END; \
           END LOOP; \
         END $shardproxy$"
    )
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(increment: i64, next: i64) -> SeqState {
        SeqState {
            table: "t".into(),
            column: "id".into(),
            sequence: "t_id_seq".into(),
            increment,
            next,
            max_id: None,
        }
    }

    #[test]
    fn classes_are_disjoint_and_restarts_land_above_the_high_mark() {
        for stride in [2, 3, 64] {
            for slot in 0..stride {
                for hi in [0, 1, 5, 63, 64, 65, 1000] {
                    let v = next_in_class(hi, slot, stride);
                    assert!(v > hi && v - hi <= stride);
                    assert_eq!((v - slot - 1).rem_euclid(stride), 0);
                }
            }
        }
        assert_eq!(next_in_class(0, 0, 64), 1);
        assert_eq!(next_in_class(0, 3, 64), 4);
        assert_eq!(next_in_class(100, 3, 64), 132);
    }

    #[test]
    fn statuses_say_why() {
        assert_eq!(status(&seq(64, 4), Some(3), 64, false), Status::Ok);
        assert_eq!(status(&seq(64, 68), Some(3), 64, false), Status::Ok);
        assert!(
            matches!(status(&seq(1, 4), Some(3), 64, false), Status::Collides(w) if w.contains("counts by 1"))
        );
        assert!(matches!(
            status(&seq(64, 5), Some(3), 64, false),
            Status::Collides(_)
        ));
        assert!(
            matches!(status(&seq(64, 4), None, 64, false), Status::Collides(w) if w.contains("no id slot"))
        );
        assert!(
            matches!(status(&seq(64, 4), Some(3), 64, true), Status::Collides(w) if w.contains("slot 3 too"))
        );
    }

    #[test]
    fn the_ddl_fix_quotes_table_names() {
        let sql = ddl_fix_sql(64, &["it's".into(), "orders".into()]);
        assert!(sql.contains("ARRAY['it''s', 'orders']"), "{sql}");
        assert!(sql.contains("st constant int8 := 64"));
    }
}
