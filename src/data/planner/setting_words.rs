//! Which statement texts may change a backend's session: SET, RESET,
//! DISCARD, DEALLOCATE or a `set_config` call. Decided once per planned text
//! and kept in the [`super::Plan`], so a cached statement costs no scan; the
//! session then reads the backend's settings back (see
//! `session/settings.rs`) only after statements that set this.

/// True when running `sql` may change session settings or server-side
/// prepared statements: some statement in it starts with SET, RESET, DISCARD
/// or DEALLOCATE, or it calls set_config. A cheap check that errs on the side
/// of checking (a `;` inside a string literal only causes an extra read-back).
pub fn may_change_settings(sql: &str) -> bool {
    if contains_ignore_case(sql, "set_config") {
        return true;
    }
    sql.split(';').any(|stmt| {
        let first = skip_space_and_comments(stmt).as_bytes();
        let len = first.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let word = &first[..len];
        [&b"set"[..], b"reset", b"discard", b"deallocate"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
    })
}

/// Case-insensitive substring test. For a needle with an underscore, memchr
/// jumps between underscores, so a text without one costs one scan.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let Some(at) = memchr::memchr(b'_', n) else {
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    };
    memchr::memchr_iter(b'_', h).any(|u| {
        u >= at
            && h.get(u - at..u - at + n.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

fn skip_space_and_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map(|x| x.1).unwrap_or("");
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map(|x| x.1).unwrap_or("");
        } else {
            return s;
        }
    }
}

/// True when `sql` may drop the backend's prepared statements.
pub fn may_drop_statements(sql: &str) -> bool {
    contains_ignore_case(sql, "discard") || contains_ignore_case(sql, "deallocate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_set_words_only() {
        assert!(may_change_settings("SET search_path = x"));
        assert!(may_change_settings("begin; reset all"));
        assert!(may_change_settings("DISCARD ALL"));
        assert!(!may_change_settings("select offset_x from settings"));
        assert!(!may_change_settings("SELECT * FROM t WHERE id = 1"));
        assert!(!may_change_settings("update t set a = 1"));
        assert!(may_change_settings("/* hint */ -- c\n  set x = 1"));
        assert!(may_change_settings(
            "select pg_catalog.SET_CONFIG('a', 'b', false)"
        ));
        assert!(may_change_settings("select set_config('a', 'b', false)"));
        assert!(may_change_settings(
            "select x_y, Set_Config('a', 'b', true)"
        ));
        assert!(!may_change_settings("select set_conf, _config from t_u"));
        assert!(!may_change_settings("select _config"));
        assert!(may_drop_statements("DISCARD ALL"));
        assert!(may_drop_statements("set x = 1; Deallocate s1"));
        assert!(!may_drop_statements("RESET ALL"));
    }
}
