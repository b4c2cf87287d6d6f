//! INSERT, UPDATE and DELETE: the written table, the shard keys of inserted
//! rows, and assignments to the shard key column.

use sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Delete, Expr, FromTable, Insert, OnConflictAction, OnInsert,
    SetExpr, Statement, TableFactor, TableObject, Update, UpdateTableFromKind,
};

use super::from::lookup;
use super::keys::{key_source, name_parts, norm};
use super::plan::KeySource;
use super::scope::{Analyzer, Occ, Restrict, Scope};

/// The table a statement writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WriteTarget {
    /// A sharded table: its occurrence.
    Sharded(usize),
    Reference(String),
    /// Not in the catalog (or a function/subquery target).
    Unknown(String),
}

/// `SET key = value` on the written sharded table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyUpdate {
    pub column: String,
    /// The assigned value when it is a literal or parameter.
    pub value: Option<KeySource>,
}

/// What an INSERT's source looks like.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum InsertRows {
    /// `VALUES` rows: the shard key of each (only for sharded targets).
    Keys(Vec<KeySource>),
    /// A refusal found while reading the rows.
    Refused(String),
    /// `INSERT … SELECT` (or anything else than VALUES).
    Select,
    /// The target is not sharded: rows don't matter for routing.
    NotSharded,
    /// `INSERT INTO t VALUES …` without a column list, and the table's
    /// column order is not known (or has fewer columns than the values):
    /// the session reads it from a shard and plans again.
    NeedsColumns(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DmlFacts {
    pub target: WriteTarget,
    pub key_update: Option<KeyUpdate>,
    pub rows: Option<InsertRows>,
    /// An INSERT without a column list: the columns its values fill, from
    /// the catalog (the statement sent to the shards names them).
    pub implicit_columns: Option<Vec<String>>,
}

impl Analyzer<'_> {
    /// The written table of a FROM-style relation, creating its occurrence
    /// (through `bind_from`) first.
    fn write_target(&self, start_occ: usize, relation: &TableFactor) -> WriteTarget {
        let TableFactor::Table { name, .. } = relation else {
            return WriteTarget::Unknown(relation.to_string());
        };
        let Some(parts) = name_parts(name) else {
            return WriteTarget::Unknown(name.to_string());
        };
        match lookup(self.cat, &parts) {
            Some(m) if m.reference => WriteTarget::Reference(m.name.to_string()),
            Some(m) if m.shard_key.is_some() && self.occs.len() > start_occ => {
                WriteTarget::Sharded(start_occ)
            }
            _ => WriteTarget::Unknown(parts.join(".")),
        }
    }

    /// Finds `SET key = …` among assignments on a sharded target.
    fn key_assignment(
        &self,
        target: &WriteTarget,
        assignments: &[sqlparser::ast::Assignment],
    ) -> Option<KeyUpdate> {
        let WriteTarget::Sharded(occ) = target else {
            return None;
        };
        let key = &self.occs[*occ].key;
        for a in assignments {
            match &a.target {
                AssignmentTarget::ColumnName(n) => {
                    if n.0
                        .last()
                        .and_then(|p| p.as_ident())
                        .is_some_and(|id| norm(id) == *key)
                    {
                        return Some(KeyUpdate {
                            column: key.clone(),
                            value: key_source(&a.value),
                        });
                    }
                }
                AssignmentTarget::Tuple(names) => {
                    let pos = names.iter().position(|n| {
                        n.0.last()
                            .and_then(|p| p.as_ident())
                            .is_some_and(|id| norm(id) == *key)
                    });
                    if let Some(pos) = pos {
                        let value = match &a.value {
                            Expr::Tuple(vals) => vals.get(pos).and_then(key_source),
                            _ => None,
                        };
                        return Some(KeyUpdate {
                            column: key.clone(),
                            value,
                        });
                    }
                }
            }
        }
        None
    }

    pub fn update(&mut self, u: &Update) -> DmlFacts {
        self.writes = true;
        self.modifies = true;
        self.scopes.push(Scope::default());
        let start = self.occs.len();
        self.bind_from(&u.table);
        let target = self.write_target(start, &u.table.relation);
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &u.from
        {
            for twj in from {
                self.bind_from(twj);
            }
        }
        if let Some(sel) = &u.selection {
            self.condition(sel, Restrict::Local);
        }
        for a in &u.assignments {
            self.walk(&a.value);
        }
        if let Some(r) = &u.returning {
            self.walk(r);
        }
        let key_update = self.key_assignment(&target, &u.assignments);
        self.scopes.pop();
        DmlFacts {
            target,
            key_update,
            rows: None,
            implicit_columns: None,
        }
    }

    pub fn delete(&mut self, d: &Delete) -> DmlFacts {
        self.writes = true;
        self.modifies = true;
        self.scopes.push(Scope::default());
        let start = self.occs.len();
        let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &d.from;
        for twj in from {
            self.bind_from(twj);
        }
        let target = match from.first() {
            Some(twj) => self.write_target(start, &twj.relation),
            None => WriteTarget::Unknown(String::new()),
        };
        if let Some(using) = &d.using {
            for twj in using {
                self.bind_from(twj);
            }
        }
        if let Some(sel) = &d.selection {
            self.condition(sel, Restrict::Local);
        }
        if let Some(r) = &d.returning {
            self.walk(r);
        }
        self.scopes.pop();
        DmlFacts {
            target,
            key_update: None,
            rows: None,
            implicit_columns: None,
        }
    }

    pub fn insert(&mut self, ins: &Insert) -> DmlFacts {
        self.writes = true;
        self.modifies = true;
        let (target, key) = match &ins.table {
            TableObject::TableName(name) => match name_parts(name) {
                Some(parts) => match lookup(self.cat, &parts) {
                    Some(m) => {
                        self.note_table(m.name);
                        match m.shard_key {
                            _ if m.reference => (WriteTarget::Reference(m.name.to_string()), None),
                            Some(key) => {
                                let occ = self.add_occ(Occ {
                                    table: m.name.to_string(),
                                    key: key.to_string(),
                                    group: m.group,
                                    key_type: m.key_type,
                                });
                                (WriteTarget::Sharded(occ), Some(key.to_string()))
                            }
                            None => (WriteTarget::Unknown(m.name.to_string()), None),
                        }
                    }
                    None => {
                        self.note_table(&parts.join("."));
                        (WriteTarget::Unknown(parts.join(".")), None)
                    }
                },
                None => (WriteTarget::Unknown(name.to_string()), None),
            },
            other => {
                self.walk(other);
                (WriteTarget::Unknown(other.to_string()), None)
            }
        };
        self.scopes.push(Scope::default());
        let mut implicit_columns = None;
        let rows = match (&key, &ins.source) {
            (Some(key), source) => {
                let table = match &target {
                    WriteTarget::Sharded(o) => self.occs[*o].table.clone(),
                    _ => String::new(),
                };
                self.sharded_rows(&table, key, ins, source.as_deref(), &mut implicit_columns)
            }
            (None, Some(q)) => {
                self.query(q, true);
                InsertRows::NotSharded
            }
            (None, None) => InsertRows::NotSharded,
        };
        let mut key_update = None;
        if let Some(OnInsert::OnConflict(oc)) = &ins.on {
            if let OnConflictAction::DoUpdate(du) = &oc.action {
                key_update = self.key_assignment(&target, &du.assignments);
                // `SET key = EXCLUDED.key` when the conflict is on the key:
                // the conflicting row already has that key (upserts that
                // write every column do this).
                if let (Some(ku), Some(ConflictTarget::Columns { columns, .. })) =
                    (&key_update, &oc.conflict_target)
                {
                    let on_key = columns.iter().any(|c| norm(c) == ku.column);
                    if on_key && self.is_excluded_key(&du.assignments, &ku.column) {
                        key_update = None;
                    }
                }
                for a in &du.assignments {
                    self.walk(&a.value);
                }
                if let Some(sel) = &du.selection {
                    self.walk(sel);
                }
            }
        }
        if let Some(r) = &ins.returning {
            self.walk(r);
        }
        self.scopes.pop();
        DmlFacts {
            target,
            key_update,
            rows: Some(rows),
            implicit_columns,
        }
    }

    /// The key's assignment is `key = EXCLUDED.key`.
    fn is_excluded_key(&self, assignments: &[sqlparser::ast::Assignment], key: &str) -> bool {
        assignments.iter().any(|a| {
            let target_is_key = matches!(&a.target, AssignmentTarget::ColumnName(n)
                if n.0.last().and_then(|p| p.as_ident()).is_some_and(|id| norm(id) == key));
            let value_is_excluded = matches!(&a.value, Expr::CompoundIdentifier(ids)
                if ids.len() == 2 && norm(&ids[0]) == "excluded" && norm(&ids[1]) == key);
            target_is_key && value_is_excluded
        })
    }

    /// The shard key of each VALUES row of an INSERT into a sharded table.
    fn sharded_rows(
        &mut self,
        table: &str,
        key: &str,
        ins: &Insert,
        source: Option<&sqlparser::ast::Query>,
        implicit_columns: &mut Option<Vec<String>>,
    ) -> InsertRows {
        let missing = || {
            InsertRows::Refused(format!(
                "INSERT into sharded table \"{table}\" must set its shard key column \"{key}\" \
                 (name the columns explicitly)"
            ))
        };
        let pos = if ins.columns.is_empty() {
            // VALUES fill the table's first columns, in the catalog's order.
            let width = match source.map(|q| q.body.as_ref()) {
                Some(SetExpr::Values(v)) => v.rows.iter().map(|r| r.content.len()).max(),
                _ => None,
            };
            let Some(width) = width else {
                return InsertRows::Refused(format!(
                    "INSERT … SELECT into sharded table \"{table}\" needs a column list that names \
                     its shard key column \"{key}\""
                ));
            };
            let Some(cols) = self.cat.columns(table).filter(|c| c.len() >= width) else {
                return InsertRows::NeedsColumns(table.to_string());
            };
            let cols = &cols[..width];
            let Some(pos) = cols.iter().position(|c| c == key) else {
                return missing();
            };
            *implicit_columns = Some(cols.to_vec());
            pos
        } else {
            let Some(pos) = ins.columns.iter().position(|c| {
                c.0.last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|id| norm(id) == key)
            }) else {
                return missing();
            };
            pos
        };
        let Some(q) = source else {
            return missing();
        };
        let SetExpr::Values(values) = q.body.as_ref() else {
            self.query(q, true);
            return InsertRows::Select;
        };
        if q.with.is_some() || q.order_by.is_some() || q.limit_clause.is_some() {
            self.query(q, true);
            return InsertRows::Select;
        }
        let mut keys = Vec::with_capacity(values.rows.len());
        let mut refusal = None;
        for row in &values.rows {
            for e in &row.content {
                self.walk(e);
            }
            match row.content.get(pos).map(|e| (e, key_source(e))) {
                Some((_, Some(k))) => keys.push(k),
                Some((e, None)) => {
                    refusal.get_or_insert_with(|| {
                        format!(
                            "the shard key \"{key}\" of an INSERT into \"{table}\" must be a \
                             literal or a parameter, not {e}"
                        )
                    });
                }
                None => {
                    refusal.get_or_insert_with(|| {
                        format!(
                            "an INSERT row into \"{table}\" has no value for shard key \"{key}\""
                        )
                    });
                }
            }
        }
        match refusal {
            Some(r) => InsertRows::Refused(r),
            None => InsertRows::Keys(keys),
        }
    }

    /// A data-modifying statement inside WITH: analyzed like the top level but
    /// anything that can't be proven single-shard-safe is refused.
    pub fn nested_dml(&mut self, stmt: &Statement) {
        let facts = match stmt {
            Statement::Insert(i) => self.insert(i),
            Statement::Update(u) => self.update(u),
            Statement::Delete(d) => self.delete(d),
            other => {
                self.writes = true;
                self.modifies = true;
                self.walk(other);
                return;
            }
        };
        match &facts.target {
            WriteTarget::Sharded(o) if facts.rows.is_some() => {
                let t = self.occs[*o].table.clone();
                self.refuse(format!(
                    "INSERT into sharded table \"{t}\" inside WITH is not supported"
                ));
            }
            WriteTarget::Sharded(o) if facts.key_update.is_some() => {
                let (t, k) = (self.occs[*o].table.clone(), self.occs[*o].key.clone());
                self.refuse(key_update_message(&t, &k));
            }
            WriteTarget::Reference(t) => {
                let t = t.clone();
                self.refuse(format!(
                    "a write to reference table \"{t}\" inside WITH is not supported (it must reach \
                     every shard)"
                ));
            }
            _ => {}
        }
    }
}

pub(crate) fn key_update_message(table: &str, key: &str) -> String {
    format!(
        "UPDATE of shard key column \"{key}\" of table \"{table}\" is not supported: it would move \
         the row between shards"
    )
}
