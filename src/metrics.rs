//! Prometheus metrics: names in one place so the README and the code agree.
