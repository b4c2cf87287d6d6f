//! From one parsed statement to its [`StmtPlan`]: the statement's kind, its
//! target (from the [`Analyzer`]'s decision for queries and DML), and the
//! flags the session needs.

use sqlparser::ast::{
    ContextModifier, Expr, Query, Reset, ResetStatement, Set, SetExpr, Statement, Value,
};

use super::catalog::Catalog;
use super::copy::plan_copy;
use super::dml::{key_update_message, DmlFacts, InsertRows, WriteTarget};
use super::from::lookup;
use super::keys::{name_parts, norm};
use super::plan::{FanOut, KeySource, StmtKind, StmtPlan, Target};
use super::scope::{Analyzer, ColRef, Decision, Restrict};
use super::session_state;
use super::standard_strings;

pub(crate) const UNSUPPORTED: &str = "0A000";

fn refused(message: String) -> Target {
    Target::Refused {
        sqlstate: UNSUPPORTED,
        message,
    }
}

/// Plans one parsed statement.
pub(crate) fn plan_statement(stmt: &Statement, cat: &dyn Catalog) -> StmtPlan {
    let mut p = plan_kind(stmt, cat);
    // EXPLAIN without ANALYZE executes nothing.
    let executes = !matches!(stmt, Statement::Explain { analyze: false, .. });
    if executes {
        let fx = session_state::scan(stmt);
        if p.session_state.is_none() {
            p.session_state = fx.session_state;
        }
        if fx.writes {
            p.read_only = false;
        }
        let set_off = matches!(&p.kind, StmtKind::Set { name, value, .. }
            if name.eq_ignore_ascii_case(standard_strings::NAME)
                && !value.as_deref().is_some_and(standard_strings::keeps_on));
        if fx.standard_strings_off || set_off {
            p.target = refused(standard_strings::REFUSAL.into());
        }
    }
    p
}

fn simple(kind: StmtKind, target: Target, read_only: bool) -> StmtPlan {
    let mut p = StmtPlan::new(kind, target);
    p.read_only = read_only;
    p
}

fn plan_kind(stmt: &Statement, cat: &dyn Catalog) -> StmtPlan {
    use StmtKind as K;
    match stmt {
        Statement::Query(q) => plan_query_stmt(q, cat),
        Statement::Insert(i) => {
            let mut an = Analyzer::new(cat);
            let facts = an.insert(i);
            dml_plan(K::Insert, facts, an)
        }
        Statement::Update(u) => {
            let mut an = Analyzer::new(cat);
            let facts = an.update(u);
            dml_plan(K::Update, facts, an)
        }
        Statement::Delete(d) => {
            let mut an = Analyzer::new(cat);
            let facts = an.delete(d);
            dml_plan(K::Delete, facts, an)
        }
        Statement::Merge(_) => merge_plan(stmt, cat),
        Statement::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => plan_copy(source, *to, target, options, legacy_options, cat, &|q| {
            plan_select(q, cat)
        }),
        Statement::StartTransaction { .. } => simple(K::Begin, Target::AnyShard, true),
        Statement::Commit { .. } => simple(K::Commit, Target::AnyShard, true),
        Statement::Rollback {
            savepoint: None, ..
        } => simple(K::Rollback, Target::AnyShard, true),
        Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => simple(K::Savepoint, Target::AnyShard, true),
        Statement::Set(s) => simple(set_kind(s), Target::AnyShard, true),
        Statement::Reset(ResetStatement { reset }) => {
            let name = match reset {
                Reset::ALL => None,
                Reset::SessionAuthorization => Some("session_authorization".to_string()),
                Reset::ConfigurationParameter(n) => Some(dotted(n)),
            };
            simple(K::Reset { name }, Target::AnyShard, true)
        }
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCollation { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. } => simple(K::Show, Target::AnyShard, true),
        Statement::Discard { .. } => simple(K::Discard, Target::AnyShard, true),
        Statement::Explain {
            analyze, statement, ..
        } => explain_plan(*analyze, statement, cat),
        Statement::Analyze(_) | Statement::Vacuum(_) => {
            simple(K::Utility, Target::AllShards(FanOut::Maintenance), false)
        }
        Statement::Lock(l) => {
            let mut p = simple(K::Utility, Target::AnyShard, false);
            for t in &l.tables {
                if let Some(parts) = name_parts(&t.name) {
                    match lookup(cat, &parts) {
                        Some(m) => {
                            p.tables.push(m.name.to_string());
                            // Locking a sharded or reference table means locking
                            // it on every shard.
                            p.target = Target::AllShards(FanOut::Write);
                        }
                        None => p.tables.push(parts.join(".")),
                    }
                }
            }
            p
        }
        Statement::LISTEN { .. } | Statement::UNLISTEN { .. } | Statement::NOTIFY { .. } => {
            simple(K::Other, Target::AnyShard, true)
        }
        Statement::Prepare { .. }
        | Statement::Execute { .. }
        | Statement::Deallocate { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Call(_) => simple(K::Other, Target::AnyShard, false),
        Statement::Declare { stmts, .. } => {
            let mut p = simple(K::Other, Target::AnyShard, true);
            for d in stmts {
                if let Some(q) = &d.for_query {
                    let inner = plan_select(q, cat);
                    p.tables.extend(inner.tables);
                    p.read_only &= inner.read_only;
                    p.target = match inner.target {
                        t @ (Target::Keyed { .. } | Target::AnyShard) if !matches!(&t, Target::Keyed { keys, .. } if keys.len() > 1) => {
                            t
                        }
                        Target::Refused { sqlstate, message } => {
                            Target::Refused { sqlstate, message }
                        }
                        _ => refused(
                            "a cursor over a query that spans shards is not supported: add a \
                             condition on the shard key"
                                .into(),
                        ),
                    };
                }
            }
            p
        }
        Statement::CreateTable(ct) => {
            let source = ct.query.as_deref();
            create_like(source, ct.temporary, cat)
        }
        Statement::CreateView(cv) => create_like(None, cv.temporary, cat),
        Statement::CreateSequence { temporary, .. } => create_like(None, *temporary, cat),
        other => fallback(other),
    }
}

/// CREATE TABLE [AS], CREATE VIEW, CREATE SEQUENCE: DDL on every shard,
/// except temporary objects (the session's current shard).
fn create_like(source: Option<&Query>, temporary: bool, cat: &dyn Catalog) -> StmtPlan {
    let mut p = simple(StmtKind::Ddl, Target::AllShards(FanOut::Ddl), false);
    if let Some(q) = source {
        let inner = plan_select(q, cat);
        p.tables = inner.tables;
        if inner.group.is_some()
            || matches!(inner.target, Target::Keyed { .. } | Target::AllShards(_))
        {
            p.target = refused(
                "creating a table from a query on sharded tables is not supported: create the \
                 table, then INSERT"
                    .into(),
            );
            return p;
        }
        if !p
            .tables
            .iter()
            .all(|t| lookup(cat, std::slice::from_ref(t)).is_some())
        {
            // The source has unknown (unsharded) tables: they live on one shard.
            p.target = Target::AnyShard;
        }
    }
    if temporary {
        p.target = Target::AnyShard;
    }
    p
}

/// Statements not matched explicitly: DDL by their first keyword, else Other.
fn fallback(stmt: &Statement) -> StmtPlan {
    let text = stmt.to_string();
    let first = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE" | "REFRESH"
        | "SECURITY" => simple(StmtKind::Ddl, Target::AllShards(FanOut::Ddl), false),
        _ => simple(StmtKind::Other, Target::AnyShard, false),
    }
}

fn explain_plan(analyze: bool, inner: &Statement, cat: &dyn Catalog) -> StmtPlan {
    let inner = plan_statement(inner, cat);
    let target = match inner.target {
        Target::InsertMulti {
            group,
            key_type,
            rows,
        } if !analyze => Target::Keyed {
            group,
            key_type,
            keys: rows.into_iter().take(1).collect(),
        },
        Target::InsertMulti { .. } | Target::CopyIn(_) => refused(
            "EXPLAIN ANALYZE of a statement whose rows go to several shards is not supported"
                .into(),
        ),
        t => t,
    };
    let mut p = StmtPlan::new(StmtKind::Utility, target);
    p.tables = inner.tables;
    p.group = inner.group;
    p.merge = inner.merge;
    p.read_only = !analyze || inner.read_only;
    if analyze {
        p.session_state = inner.session_state;
    }
    p
}

fn set_kind(s: &Set) -> StmtKind {
    let (name, local, values): (String, bool, Vec<&Expr>) = match s {
        Set::SingleAssignment {
            scope,
            variable,
            values,
            ..
        } => (
            dotted(variable),
            *scope == Some(ContextModifier::Local),
            values.iter().collect(),
        ),
        Set::MultipleAssignments { assignments } => match assignments.first() {
            Some(a) => (
                dotted(&a.name),
                a.scope == Some(ContextModifier::Local),
                vec![&a.value],
            ),
            None => return StmtKind::Other,
        },
        Set::SetTimeZone { local, value } => ("timezone".into(), *local, vec![value]),
        Set::SetRole {
            context_modifier, ..
        } => (
            "role".into(),
            *context_modifier == Some(ContextModifier::Local),
            Vec::new(),
        ),
        Set::SetSessionAuthorization(_) => ("session_authorization".into(), false, Vec::new()),
        Set::SetNames { charset_name, .. } => {
            return StmtKind::Set {
                name: "client_encoding".into(),
                local: false,
                value: Some(charset_name.value.clone()),
            }
        }
        Set::SetNamesDefault {} => ("client_encoding".into(), false, Vec::new()),
        Set::SetTransaction { session, .. } => {
            let name = if *session {
                "session_characteristics"
            } else {
                "transaction"
            };
            (name.into(), !*session, Vec::new())
        }
        _ => return StmtKind::Other,
    };
    let value = (!values.is_empty()).then(|| {
        values
            .iter()
            .map(|e| match e {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s)
                    | Value::EscapedStringLiteral(s)
                    | Value::Number(s, _) => s.clone(),
                    Value::DollarQuotedString(d) => d.value.clone(),
                    other => other.to_string(),
                },
                Expr::Identifier(id) => id.value.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    StmtKind::Set { name, local, value }
}

/// `Shardproxy.Shard_Key` → "shardproxy.shard_key".
fn dotted(n: &sqlparser::ast::ObjectName) -> String {
    n.0.iter()
        .map(|p| p.as_ident().map(norm).unwrap_or_else(|| p.to_string()))
        .collect::<Vec<_>>()
        .join(".")
}

/// A statement whose outermost part is a query: SELECT (and set operations),
/// or a data-modifying statement with WITH.
fn plan_query_stmt(q: &Query, cat: &dyn Catalog) -> StmtPlan {
    let dml = match q.body.as_ref() {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => s,
        SetExpr::Merge(_) => return merge_plan(&Statement::Query(Box::new(q.clone())), cat),
        _ => return plan_select(q, cat),
    };
    let mut an = Analyzer::new(cat);
    if let Some(with) = &q.with {
        an.push_ctes(with);
    }
    let (kind, facts) = match dml {
        Statement::Insert(i) => (StmtKind::Insert, an.insert(i)),
        Statement::Update(u) => (StmtKind::Update, an.update(u)),
        Statement::Delete(d) => (StmtKind::Delete, an.delete(d)),
        other => return fallback(other),
    };
    dml_plan(kind, facts, an)
}

/// Fills the fields every analyzed statement shares.
fn finish(kind: StmtKind, target: Target, an: Analyzer<'_>) -> StmtPlan {
    let mut p = StmtPlan::new(kind, target);
    p.read_only = !an.writes;
    if let Some(first) = an.occs.first() {
        if an.occs.iter().all(|o| o.group == first.group) {
            p.group = Some(first.group);
        }
        let mut merge = an.merge;
        merge.key_type = Some(first.key_type);
        p.merge = Some(merge);
    }
    p.tables = an.tables;
    p
}

/// The target for the analyzer's decision on a statement that reads (or
/// writes through WITH) sharded tables.
fn decision_target(an: &mut Analyzer<'_>) -> Target {
    if let Some(r) = &an.refusal {
        return refused(r.clone());
    }
    match an.decide() {
        Decision::Unsharded => Target::AnyShard,
        Decision::Keyed {
            group,
            key_type,
            keys,
            multi_shard_problem,
        } => {
            an.merge.unsupported = multi_shard_problem;
            Target::Keyed {
                group,
                key_type,
                keys,
            }
        }
        Decision::FanOut { .. } if an.modifies => Target::AllShards(FanOut::Write),
        Decision::FanOut { .. } => Target::AllShards(FanOut::Read),
        Decision::Refuse(r) => refused(format!(
            "this statement cannot run across shards: {r} (add a condition on the shard key)"
        )),
    }
}

/// Plans a SELECT (or any query without top-level DML).
pub(crate) fn plan_select(q: &Query, cat: &dyn Catalog) -> StmtPlan {
    let mut an = Analyzer::new(cat);
    an.query(q, false);
    let into = match q.body.as_ref() {
        SetExpr::Select(s) => s.into.as_ref(),
        _ => None,
    };
    let target = match into {
        Some(into) => {
            if !an.occs.is_empty() {
                refused(
                    "SELECT INTO a new table from sharded tables is not supported: create the \
                     table, then INSERT"
                        .into(),
                )
            } else if into.temporary
                || !an
                    .tables
                    .iter()
                    .all(|t| lookup(cat, std::slice::from_ref(t)).is_some())
            {
                Target::AnyShard
            } else {
                Target::AllShards(FanOut::Ddl)
            }
        }
        None => decision_target(&mut an),
    };
    let kind = if into.is_some() {
        StmtKind::Ddl
    } else {
        StmtKind::Select
    };
    let select = kind == StmtKind::Select;
    let mut p = finish(kind, target, an);
    if select {
        plan_distributed(q, &mut p);
    }
    p
}

/// Adds the distributed plan to a read that may span shards: every shard,
/// or several keys (which may resolve to several shards at Bind). A read
/// no merge can answer exactly is refused (every shard) or marked so that
/// a multi-shard resolution refuses it (several keys).
fn plan_distributed(q: &Query, p: &mut StmtPlan) {
    let spans = match &p.target {
        Target::AllShards(FanOut::Read) => true,
        Target::Keyed { keys, .. } => keys.len() > 1,
        _ => false,
    };
    let Some(merge) = p.merge.as_mut().filter(|_| spans) else {
        return;
    };
    if merge.unsupported.is_some() {
        return;
    }
    match super::distributed::plan(q, merge) {
        Ok(d) => p.dist = d.map(|d| super::plan::DistRef(std::sync::Arc::new(d))),
        Err(what) => {
            let message =
                format!("{what} is not supported across shards: this query reads several shards");
            match p.target {
                Target::AllShards(_) => p.target = refused(message),
                _ => merge.unsupported = Some(what),
            }
        }
    }
}

fn pin_occ(an: &mut Analyzer<'_>, occ: usize, keys: &[KeySource]) {
    let c = ColRef {
        occ,
        local: true,
        pinnable: true,
    };
    an.pin(&[c], keys, Restrict::Local);
}

/// INSERT / UPDATE / DELETE.
fn dml_plan(kind: StmtKind, facts: DmlFacts, an: Analyzer<'_>) -> StmtPlan {
    let needs_columns = match &facts.rows {
        Some(InsertRows::NeedsColumns(t)) => Some(t.clone()),
        _ => None,
    };
    let implicit_columns = facts.implicit_columns.clone();
    let mut p = dml_target(kind, facts, an);
    p.needs_columns = needs_columns;
    p.implicit_columns = implicit_columns;
    p
}

fn dml_target(kind: StmtKind, facts: DmlFacts, mut an: Analyzer<'_>) -> StmtPlan {
    if let Some(r) = &an.refusal {
        let t = refused(r.clone());
        return finish(kind, t, an);
    }
    let target = match &facts.target {
        WriteTarget::Sharded(occ) => {
            let occ = *occ;
            let (table, key) = (an.occs[occ].table.clone(), an.occs[occ].key.clone());
            match &facts.rows {
                Some(InsertRows::Refused(m)) => refused(m.clone()),
                // Shown only when the columns cannot be learnt, or the
                // values outnumber them.
                Some(InsertRows::NeedsColumns(_)) => Target::Refused {
                    sqlstate: "42601",
                    message: format!(
                        "INSERT has more expressions than target columns (table \"{table}\" as the shards describe it)"
                    ),
                },
                Some(InsertRows::Select) => refused(format!(
                    "INSERT … SELECT into sharded table \"{table}\" is not supported: each row \
                     must be routed by its shard key (use INSERT … VALUES or COPY)"
                )),
                Some(InsertRows::NotSharded) => refused(format!(
                    "INSERT into sharded table \"{table}\" must set its shard key column \"{key}\""
                )),
                Some(InsertRows::Keys(rows)) if facts.key_update.is_some() => {
                    let _ = rows;
                    refused(format!(
                        "ON CONFLICT DO UPDATE of shard key column \"{key}\" of table \"{table}\" \
                         is not supported: it would move the row between shards"
                    ))
                }
                Some(InsertRows::Keys(rows)) => insert_target(&mut an, occ, rows, &table),
                None => update_delete_target(&mut an, &facts, &table, &key, &kind),
            }
        }
        WriteTarget::Reference(t) => match an.occs.first() {
            Some(o) => refused(format!(
                "a write to reference table \"{t}\" cannot read sharded table \"{}\": the copies \
                 on each shard would diverge",
                o.table
            )),
            None => Target::AllShards(FanOut::ReferenceWrite),
        },
        WriteTarget::Unknown(t) => match decision_target(&mut an) {
            target @ (Target::AnyShard | Target::Refused { .. }) => target,
            target @ Target::Keyed { .. } if matches!(&target, Target::Keyed { keys, .. } if keys.len() == 1) => {
                target
            }
            _ => refused(format!(
                "a write to table \"{t}\", which is not in the shard map, can only read sharded \
                 tables restricted to one shard key"
            )),
        },
    };
    finish(kind, target, an)
}

fn insert_target(an: &mut Analyzer<'_>, occ: usize, rows: &[KeySource], table: &str) -> Target {
    let o = &an.occs[occ];
    let (group, key_type) = (o.group, o.key_type);
    if rows.len() > 1 {
        if an.occs.len() > 1 {
            return refused(format!(
                "a multi-row INSERT into \"{table}\" cannot read sharded tables in subqueries"
            ));
        }
        return Target::InsertMulti {
            group,
            key_type,
            rows: rows.to_vec(),
        };
    }
    pin_occ(an, occ, rows);
    match an.decide() {
        Decision::Keyed {
            keys,
            multi_shard_problem: None,
            ..
        } if keys.len() == 1 => Target::Keyed {
            group,
            key_type,
            keys,
        },
        _ => refused(format!(
            "an INSERT into \"{table}\" reads sharded tables that are not restricted to the \
             inserted row's shard key"
        )),
    }
}

fn update_delete_target(
    an: &mut Analyzer<'_>,
    facts: &DmlFacts,
    table: &str,
    key: &str,
    kind: &StmtKind,
) -> Target {
    let target = decision_target(an);
    if let Some(ku) = &facts.key_update {
        // `SET key = v WHERE key = v` (ORMs that write every column) is fine.
        let same = matches!(&target, Target::Keyed { keys, .. }
            if keys.len() == 1 && ku.value.as_ref() == keys.first());
        if !same {
            return refused(key_update_message(table, &ku.column));
        }
    }
    match target {
        Target::Refused { sqlstate, message } if an.refusal.is_none() => {
            let verb = if *kind == StmtKind::Update {
                "UPDATE"
            } else {
                "DELETE"
            };
            let reason = message
                .strip_prefix("this statement cannot run across shards: ")
                .unwrap_or(&message);
            Target::Refused {
                sqlstate,
                message: format!(
                    "{verb} of sharded table \"{table}\" without a condition on its shard key \
                     \"{key}\" cannot run on every shard: {reason}"
                ),
            }
        }
        t => t,
    }
}

/// MERGE: supported only on tables that aren't sharded.
fn merge_plan(stmt: &Statement, cat: &dyn Catalog) -> StmtPlan {
    let mut p = simple(StmtKind::Other, Target::AnyShard, false);
    let mut sharded = None;
    let mut target_is_reference = None;
    let _ = sqlparser::ast::visit_relations(stmt, |r| {
        let meta = name_parts(r).and_then(|parts| {
            let m = lookup(cat, &parts);
            let name = m
                .map(|m| m.name.to_string())
                .unwrap_or_else(|| parts.join("."));
            if !p.tables.contains(&name) {
                p.tables.push(name);
            }
            m
        });
        // The first relation visited is the MERGE target.
        target_is_reference.get_or_insert(meta.is_some_and(|m| m.reference));
        if let Some(m) = meta.filter(|m| !m.reference && m.shard_key.is_some()) {
            sharded.get_or_insert(m.name.to_string());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    p.target = match (sharded, target_is_reference) {
        (Some(t), _) => refused(format!("MERGE on sharded table \"{t}\" is not supported")),
        (None, Some(true)) => Target::AllShards(FanOut::ReferenceWrite),
        _ => Target::AnyShard,
    };
    p
}
