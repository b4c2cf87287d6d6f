//! Checks that the config files shipped under shardmap/ parse and validate (in progress).
