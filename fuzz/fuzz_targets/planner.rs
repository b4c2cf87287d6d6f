//! Fuzzes the planner with arbitrary UTF-8: planning, resolving and
//! splitting must never panic (nor overflow the stack). The property lives in
//! `shardproxy::data::planner::properties`; the planner's proptests run it on
//! stable too.
//!
//! Run: `cargo +nightly fuzz run planner` from the repository root.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use shardproxy::data::planner::properties::{check_text, map, uncached_planner};
use shardproxy::data::planner::Planner;
use shardproxy::data::router::ShardMap;

fn setup() -> &'static (Planner, ShardMap) {
    static S: OnceLock<(Planner, ShardMap)> = OnceLock::new();
    S.get_or_init(|| {
        let map = map();
        (uncached_planner(&map), map)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let (planner, map) = setup();
        check_text(planner, map, sql);
    }
});
