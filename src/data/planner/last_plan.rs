//! A session's last normalized statement shape and its plan.
//!
//! OLTP clients on the simple protocol send one statement shape over and
//! over with new literals. Checking the next text against the session's
//! last template (while scanning it once) skips building the template,
//! hashing it and taking the shared plan cache's lock. The plan names the
//! planner that made it: after a RELOAD swaps the planner (and with it the
//! table definitions), the memo no longer matches and is replaced.

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
    /// The memo's plan and `sql`'s literals, when `sql` has the memo's shape
    /// and `planner` made the memo.
    pub(super) fn hit<'a>(&self, planner: u64, sql: &'a str) -> Option<(Arc<Plan>, Literals<'a>)> {
        let plan = self.plan.as_ref().filter(|p| p.made_by == planner)?;
        let literals = normalize::literals_if_template(sql, &self.template)?;
        Some((plan.clone(), literals))
    }

    pub(super) fn remember(&mut self, template: String, plan: Arc<Plan>) {
        self.template = template;
        self.plan = Some(plan);
    }
}
