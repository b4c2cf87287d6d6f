//! A session's last normalized statement shape and its plan.
//!
//! OLTP clients on the simple protocol send one statement shape over and
//! over with new literals. Checking the next text against the session's
//! last template (while scanning it once) skips building the template,
//! hashing it and taking the shared plan cache's lock. The session clears
//! the memo when a RELOAD gives it a new planner (new table definitions).

use std::sync::Arc;

use super::normalize::{self, Literals};
use super::plan::Plan;

/// Kept per session; empty until its first normalizable statement.
#[derive(Debug, Default)]
pub struct LastPlan {
    template: String,
    plan: Option<Arc<Plan>>,
}

impl LastPlan {
    /// The memo's plan and `sql`'s literals, when `sql` has the memo's shape.
    pub(super) fn hit<'a>(&self, sql: &'a str) -> Option<(Arc<Plan>, Literals<'a>)> {
        let plan = self.plan.as_ref()?;
        let literals = normalize::literals_if_template(sql, &self.template)?;
        Some((plan.clone(), literals))
    }

    pub(super) fn remember(&mut self, template: String, plan: Arc<Plan>) {
        self.template = template;
        self.plan = Some(plan);
    }
}
