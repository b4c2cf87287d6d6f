//! Prometheus metrics: names in one place so the README and the code agree.

use crate::runtime::Proxy;

/// Records gauges that are sampled rather than counted (clients, pools).
pub fn record_gauges(_proxy: &Proxy) {}

/// A client was refused for `max_clients`.
pub fn client_refused() {}

/// Starts the Prometheus endpoint on `listen`.
pub fn install(_listen: &str, _proxy: std::sync::Arc<Proxy>) -> Result<(), String> {
    Ok(())
}
