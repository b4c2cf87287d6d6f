//! Cross-shard merge of fan-out read results: typed decoding of the columns
//! a merge needs, comparison by type and collation, and the operators the
//! distributed planner's merge plans are made of.

pub mod agg_state;
pub mod collation;
pub mod compare;
pub mod datarow;
pub mod eval;
pub mod exec;
pub mod float_text;
pub mod group;
pub mod layout;
pub mod numeric;
pub mod request;
pub mod row_merge;
pub mod types;
pub mod value;
