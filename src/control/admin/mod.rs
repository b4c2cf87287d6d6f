//! The admin console (`psql -d shardproxy`).

use crate::data::session::startup::Handshake;
use crate::runtime::{ClientInfo, Proxy};
use std::sync::Arc;

pub async fn run(_proxy: Arc<Proxy>, _info: Arc<ClientInfo>, _hs: Handshake) {}
