//! Fuzzes the session memo's template match: for two texts (the input split
//! at its first NUL byte: the session's last text, then the next one), a
//! match of the next text against the last one's template must be exactly
//! what normalizing it gives, and nothing may panic. The property lives in
//! `shardproxy::data::planner::properties`; the planner's proptests run it
//! on stable too.
//!
//! Run: `cargo +nightly fuzz run template_match` from the repository root.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardproxy::data::planner::properties::check_template_match;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (last, next) = text.split_once('\0').unwrap_or((text, text));
    check_template_match(last, next);
});
