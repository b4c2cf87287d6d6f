//! A session's last normalized statement shape and its plan.
//!
//! OLTP clients on the simple protocol send one statement shape over and
//! over with new literals. Matching the next text against the session's
//! last template (`template_match.rs`) skips the normalizing scan, building
//! the template, hashing it and taking the shared plan cache's lock. The session clears
//! the memo when a RELOAD gives it a new planner (new table definitions).

use std::sync::Arc;

use super::normalize::{Literals, Slots};
use super::plan::Plan;
use super::template_match::literals_if_template;

/// Kept per session; empty until its first normalizable statement.
#[derive(Debug, Default)]
pub struct LastPlan {
    template: String,
    slots: Slots,
    plan: Option<Arc<Plan>>,
}

impl LastPlan {
    /// The memo's plan and `sql`'s literals, when `sql` has the memo's shape.
    pub(super) fn hit<'a>(&self, sql: &'a str) -> Option<(Arc<Plan>, Literals<'a>)> {
        let plan = self.plan.as_ref()?;
        let literals = literals_if_template(sql, &self.template, &self.slots)?;
        Some((plan.clone(), literals))
    }

    /// Keeps a normalized text's template and slots.
    pub(super) fn remember(&mut self, template: String, slots: Slots, plan: Arc<Plan>) {
        self.template = template;
        self.slots = slots;
        self.plan = Some(plan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::planner::normalize::normalize;

    #[test]
    fn a_text_of_the_last_shape_is_a_hit() {
        let mut last = LastPlan::default();
        assert!(last.hit("SELECT v FROM t WHERE id = 1").is_none());
        let n = normalize("SELECT v FROM t WHERE id = 1").unwrap();
        last.remember(n.template, n.slots, Arc::new(Plan::default()));
        let (_, literals) = last.hit("SELECT v FROM t WHERE id = -42").unwrap();
        assert_eq!(literals.as_slice(), ["-42"]);
        assert!(last.hit("SELECT v FROM t WHERE id = 1 AND x = 2").is_none());
    }
}
