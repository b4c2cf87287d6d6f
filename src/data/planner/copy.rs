//! `COPY` statements: which table, which direction, which data format.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Query,
};

use super::catalog::Catalog;
use super::from::lookup;
use super::keys::{name_parts, norm};
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
    f.binary = binary;
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
    // Each shard's COPY … TO (HEADER) would start with its own header line.
    let header = to && copy_format(options, legacy).is_ok_and(|f| f.header);
    let header_refusal = || {
        refused(
            "COPY … TO with HEADER across shards is not supported: every shard would send its own header line"
                .into(),
        )
    };
    let (table_name, columns) = match source {
        CopySource::Query(q) => {
            let mut p = query_plan(q);
            p.kind = kind;
            let multi = matches!(&p.target, Target::AllShards(_))
                || matches!(&p.target, Target::Keyed { keys, .. } if keys.len() > 1);
            if header && multi {
                p.target = header_refusal();
                return p;
            }
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
        // Each shard's rows, concatenated (binary: one header and trailer
        // for all, see `session/copy_out.rs`).
        plan.target = if header {
            header_refusal()
        } else {
            Target::AllShards(FanOut::Read)
        };
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

/// COPY options with Postgres' other boolean spellings (`FREEZE ON`,
/// `HEADER off`, `1`/`0`), which sqlparser 0.64 rejects, rewritten to
/// TRUE/FALSE so the statement can be planned (pgbench -i sends
/// `COPY … FROM STDIN WITH (FREEZE ON)`). None when `sql` is not a COPY with
/// such an option.
pub(crate) fn boolean_options_compat(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !lower.trim_start().starts_with("copy") {
        return None;
    }
    let at = lower.find("stdin").or_else(|| lower.find("stdout"))?;
    let mut out = String::with_capacity(sql.len() + 8);
    out.push_str(&sql[..at]);
    let mut changed = false;
    let tail = &sql[at..];
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, changed: &mut bool| {
        let w = word.to_ascii_lowercase();
        let rep = match w.as_str() {
            "on" | "1" => Some("TRUE"),
            "off" | "0" => Some("FALSE"),
            _ => None,
        };
        match rep {
            Some(r) => {
                out.push_str(r);
                *changed = true;
            }
            None => out.push_str(word),
        }
        word.clear();
    };
    let mut in_quote = false;
    for c in tail.chars() {
        if c == '\'' {
            in_quote = !in_quote;
        }
        if !in_quote && (c.is_ascii_alphanumeric() || c == '_') {
            word.push(c);
        } else {
            flush(&mut word, &mut out, &mut changed);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, &mut changed);
    changed.then_some(out)
}

#[cfg(test)]
mod compat_tests {
    use super::boolean_options_compat as compat;

    #[test]
    fn rewrites_only_boolean_option_words_after_stdin() {
        assert_eq!(
            compat("copy pgbench_accounts from stdin with (freeze on)").as_deref(),
            Some("copy pgbench_accounts from stdin with (freeze TRUE)")
        );
        assert_eq!(
            compat("COPY t (a, b) FROM STDIN (FORMAT csv, HEADER off, DELIMITER ';')").as_deref(),
            Some("COPY t (a, b) FROM STDIN (FORMAT csv, HEADER FALSE, DELIMITER ';')")
        );
        assert_eq!(compat("COPY t FROM STDIN (NULL 'on')"), None);
        assert_eq!(compat("COPY t FROM STDIN"), None);
        assert_eq!(compat("SELECT 1"), None);
    }
}
