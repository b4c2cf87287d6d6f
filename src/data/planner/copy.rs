//! `COPY` statements: which table, which direction, which data format.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Query,
};

use super::catalog::Catalog;
use super::from::lookup;
use super::keys::{name_parts, norm};
use super::lex::{Lex, Lexer};
use super::plan::{CopyFormat, CopySpec, FanOut, StmtKind, StmtPlan, Target};

const UNSUPPORTED: &str = "0A000";

fn refused(message: String) -> Target {
    Target::Refused {
        sqlstate: UNSUPPORTED,
        message,
    }
}

/// The data format named by the options (or the error that makes it unusable
/// for splitting).
fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat, String> {
    let mut f = CopyFormat::text();
    let mut binary = false;
    // FORMAT decides the defaults; the other options override them.
    for o in options {
        if let CopyOption::Format(id) = o {
            match id.value.to_ascii_lowercase().as_str() {
                "csv" => f = CopyFormat::csv(),
                "binary" => binary = true,
                _ => {}
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Csv(_) => f = CopyFormat::csv(),
            CopyLegacyOption::Binary => binary = true,
            _ => {}
        }
    }
    let mut escape = None;
    let byte = |c: &char, what: &str| -> Result<u8, String> {
        u8::try_from(*c)
            .ok()
            .filter(u8::is_ascii)
            .ok_or_else(|| format!("COPY {what} must be a single one-byte character"))
    };
    for o in options {
        match o {
            CopyOption::Delimiter(c) => f.delimiter = byte(c, "delimiter")?,
            CopyOption::Null(s) => f.null = s.clone(),
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Quote(c) => f.quote = byte(c, "quote")?,
            CopyOption::Escape(c) => escape = Some(byte(c, "escape")?),
            _ => {}
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Delimiter(c) => f.delimiter = byte(c, "delimiter")?,
            CopyLegacyOption::Null(s) => f.null = s.clone(),
            CopyLegacyOption::Header => f.header = true,
            CopyLegacyOption::Csv(csv) => {
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => f.header = true,
                        CopyLegacyCsvOption::Quote(q) => f.quote = byte(q, "quote")?,
                        CopyLegacyCsvOption::Escape(e) => escape = Some(byte(e, "escape")?),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    // ESCAPE defaults to QUOTE in CSV.
    f.escape = escape.unwrap_or(f.quote);
    if binary {
        return Err(
            "binary COPY FROM into a sharded table is not supported: use text or CSV format".into(),
        );
    }
    Ok(f)
}

/// Plans a COPY statement. `query_plan` plans `COPY (query) TO`.
pub(crate) fn plan_copy(
    source: &CopySource,
    to: bool,
    target: &CopyTarget,
    options: &[CopyOption],
    legacy: &[CopyLegacyOption],
    cat: &dyn Catalog,
    query_plan: &dyn Fn(&Query) -> StmtPlan,
) -> StmtPlan {
    let kind = if to {
        StmtKind::CopyTo
    } else {
        StmtKind::CopyFrom
    };
    let (table_name, columns) = match source {
        CopySource::Query(q) => {
            let mut p = query_plan(q);
            p.kind = kind;
            // COPY output is concatenated, never merged.
            if let (Target::AllShards(_) | Target::Keyed { .. }, Some(m)) = (&p.target, &p.merge) {
                let needs_merge = !m.order_by.is_empty()
                    || m.limit.is_some()
                    || m.offset.is_some()
                    || m.aggregates
                    || m.distinct;
                let multi = matches!(&p.target, Target::AllShards(_))
                    || matches!(&p.target, Target::Keyed { keys, .. } if keys.len() > 1);
                if needs_merge && multi {
                    p.target = refused(
                        "COPY (query) TO across shards cannot ORDER BY, LIMIT, aggregate or \
                         DISTINCT: COPY output is concatenated, not merged"
                            .into(),
                    );
                }
            }
            return p;
        }
        CopySource::Table {
            table_name,
            columns,
        } => (table_name, columns),
    };
    let mut plan = StmtPlan::new(kind, Target::AnyShard);
    plan.read_only = to;
    let Some(parts) = name_parts(table_name) else {
        return plan;
    };
    let Some(meta) = lookup(cat, &parts) else {
        plan.tables.push(parts.join("."));
        return plan;
    };
    plan.tables.push(meta.name.to_string());
    let key = match meta.shard_key {
        Some(k) if !meta.reference => k,
        _ => {
            if !to {
                plan.target = Target::AllShards(FanOut::ReferenceWrite);
            }
            return plan;
        }
    };
    plan.group = Some(meta.group);
    if to {
        // Each shard's rows, concatenated (with HEADER, every shard sends one:
        // the session keeps the first).
        plan.target = Target::AllShards(FanOut::Read);
        return plan;
    }
    if !matches!(target, CopyTarget::Stdin) {
        plan.target = refused(format!(
            "COPY \"{}\" FROM a server file or program is not supported for a sharded table: \
             use COPY FROM STDIN",
            meta.name
        ));
        return plan;
    }
    let columns: Vec<String> = columns.iter().map(norm).collect();
    if !columns.is_empty() && !columns.iter().any(|c| c == key) {
        plan.target = refused(format!(
            "COPY into sharded table \"{}\" must include its shard key column \"{key}\"",
            meta.name
        ));
        return plan;
    }
    plan.target = match copy_format(options, legacy) {
        Ok(format) => Target::CopyIn(CopySpec {
            table: meta.name.to_string(),
            group: meta.group,
            key_type: meta.key_type,
            key_column: key.to_string(),
            columns,
            format,
        }),
        Err(e) => refused(e),
    };
    plan
}

/// `COPY … WITH (FREEZE ON, HEADER OFF)`: Postgres takes ON/OFF for boolean
/// options, sqlparser 0.64 only TRUE/FALSE (pgbench -i sends `freeze on`).
/// Returns the text with bare `on`/`off` after `WITH` spelt `true`/`false`,
/// or None when it is not such a COPY.
pub(super) fn spell_option_booleans(sql: &str) -> Option<String> {
    let mut words = Lexer::new(sql).filter_map(|l| match l {
        Lex::Word(w) => Some(w),
        _ => None,
    });
    if !words.next()?.eq_ignore_ascii_case("copy") {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut copied = 0;
    let mut after_with = false;
    for w in words {
        if w.eq_ignore_ascii_case("with") {
            after_with = true;
            continue;
        }
        let spelt = match w.to_ascii_lowercase().as_str() {
            "on" if after_with => "true",
            "off" if after_with => "false",
            _ => continue,
        };
        // Words are slices of `sql`: their offset is the pointer difference.
        let at = w.as_ptr() as usize - sql.as_ptr() as usize;
        out.push_str(&sql[copied..at]);
        out.push_str(spelt);
        copied = at + w.len();
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&sql[copied..]);
    Some(out)
}

#[cfg(test)]
mod spell_tests {
    use super::spell_option_booleans as spell;

    #[test]
    fn on_off_after_with_become_true_false() {
        assert_eq!(
            spell("copy pgbench_accounts from stdin with (freeze on)").as_deref(),
            Some("copy pgbench_accounts from stdin with (freeze true)")
        );
        assert_eq!(
            spell("COPY t (\"on\") FROM STDIN WITH (FORMAT csv, HEADER Off, FREEZE ON)").as_deref(),
            Some("COPY t (\"on\") FROM STDIN WITH (FORMAT csv, HEADER false, FREEZE true)")
        );
        assert_eq!(spell("copy t from stdin with (freeze true)"), None);
        assert_eq!(spell("select 'on' from t where x = on"), None);
    }
}
