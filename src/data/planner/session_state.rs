//! Statements whose effect outlives the transaction on one backend, so they
//! can't survive transaction pooling (the next transaction may get another
//! backend): LISTEN, temp tables, session advisory locks, SQL-level prepared
//! statements, holdable cursors. Also spots calls of well-known functions that
//! write, for `read_only`.

use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectName, OnCommit, SetExpr, Statement, Visit, Visitor};

/// Session-level advisory lock functions (the `_xact_` variants are released
/// at transaction end and are fine).
const SESSION_LOCKS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Built-in functions that write, take locks or need a primary (a
/// transaction id, the WAL write position): a SELECT calling them is not
/// read-only, so it never goes to a replica either.
const WRITING_FUNCTIONS: &[&str] = &[
    "txid_current",
    "pg_current_xact_id",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_switch_wal",
    "pg_logical_emit_message",
    "pg_create_restore_point",
    "nextval",
    "setval",
    "set_config",
    "pg_notify",
    "lo_create",
    "lo_creat",
    "lo_import",
    "lo_unlink",
    "lo_put",
    "lo_from_bytea",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// What the function scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effects {
    pub session_state: Option<&'static str>,
    pub writes: bool,
    /// A `set_config` call that may turn standard_conforming_strings off.
    pub standard_strings_off: bool,
}

struct FunctionScan(Effects);

impl FunctionScan {
    fn function(&mut self, name: &ObjectName) {
        let Some(id) = name.0.last().and_then(|p| p.as_ident()) else {
            return;
        };
        let n = id.value.to_ascii_lowercase();
        if let Some(s) = SESSION_LOCKS.iter().find(|s| **s == n) {
            self.0.session_state.get_or_insert(s);
            self.0.writes = true;
        } else if WRITING_FUNCTIONS.contains(&n.as_str()) {
            self.0.writes = true;
        }
    }
}

impl Visitor for FunctionScan {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = e {
            self.function(&f.name);
            if super::standard_strings::call_turns_off(f) {
                self.0.standard_strings_off = true;
            }
        }
        ControlFlow::Continue(())
    }

    // `SELECT * FROM pg_advisory_lock(1)`: a table factor with arguments.
    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.function(r);
        ControlFlow::Continue(())
    }
}

/// Scans a statement for session-state constructs and writing functions.
pub(crate) fn scan(stmt: &Statement) -> Effects {
    let mut scan = FunctionScan(Effects {
        session_state: statement_state(stmt),
        writes: false,
        standard_strings_off: false,
    });
    let _ = stmt.visit(&mut scan);
    scan.0
}

fn statement_state(stmt: &Statement) -> Option<&'static str> {
    match stmt {
        Statement::LISTEN { .. } => Some("LISTEN"),
        Statement::UNLISTEN { .. } => Some("UNLISTEN"),
        Statement::CreateTable(ct) if ct.temporary && ct.on_commit != Some(OnCommit::Drop) => {
            Some("CREATE TEMP TABLE")
        }
        Statement::CreateView(cv) if cv.temporary => Some("CREATE TEMP VIEW"),
        Statement::CreateSequence {
            temporary: true, ..
        } => Some("CREATE TEMP SEQUENCE"),
        Statement::Prepare { .. } => Some("PREPARE"),
        Statement::Execute { .. } => Some("EXECUTE"),
        // DEALLOCATE ALL only drops server-side statements, which the proxy
        // re-prepares where needed; naming one SQL-level statement (which
        // PREPARE above refuses to create) is not supported.
        Statement::Deallocate { name, .. } if !name.value.eq_ignore_ascii_case("all") => {
            Some("DEALLOCATE")
        }
        Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
            Some("DECLARE … WITH HOLD")
        }
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) if s.into.as_ref().is_some_and(|i| i.temporary) => {
                Some("SELECT INTO TEMP")
            }
            _ => None,
        },
        _ => None,
    }
}
