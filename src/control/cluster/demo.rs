//! `shardproxy demo`: shards, schema, config and data for a local demo (in progress).
