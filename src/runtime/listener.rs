//! Accepting clients, and the process lifecycle: SIGHUP reloads, SIGTERM and
//! SIGINT drain (no new clients; sessions leave once their transaction is
//! done; after `shutdown_timeout_ms` the rest are closed with 57P01).

use super::Proxy;
use crate::data::codec::error::sqlstate;
use crate::data::codec::startup::read_startup;
use crate::data::codec::SqlError;
use crate::data::session::{self, startup};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Serves clients on `listener` until a shutdown completes.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) -> std::io::Result<()> {
    let mut shutdown = proxy.shutdown.subscribe();
    spawn_housekeeping(proxy.clone());
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((socket, peer)) => {
                    let p = proxy.clone();
                    tokio::spawn(async move { handle_connection(p, socket, peer).await });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let timeout = Duration::from_millis(proxy.runtime().config.proxy.shutdown_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    while proxy.clients.count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if proxy.clients.count() > 0 {
        tracing::warn!(
            "{} clients still connected after {:?}; closing them",
            proxy.clients.count(),
            timeout
        );
    }
    for pool in &proxy.runtime().pools {
        pool.close_idle();
    }
    Ok(())
}

/// Starts a drain (what SIGTERM does).
pub fn begin_shutdown(proxy: &Proxy) {
    proxy.draining.store(true, Ordering::SeqCst);
    let _ = proxy.shutdown.send(true);
}

/// Installs SIGTERM/SIGINT (drain) and SIGHUP (reload) handlers.
pub fn install_signal_handlers(proxy: Arc<Proxy>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); begin_shutdown(&proxy); }
                _ = int.recv() => { tracing::info!("SIGINT: draining"); begin_shutdown(&proxy); }
                _ = hup.recv() => match proxy.reload() {
                    Ok(s) => {
                        tracing::info!("SIGHUP: {s}");
                        crate::control::shard_checks::spawn_after_load(&proxy);
                    }
                    Err(e) => tracing::error!("SIGHUP: reload failed, keeping the running config: {e}"),
                },
            }
        }
    });
    Ok(())
}

/// Closes idle backends past their idle timeout, every few seconds.
fn spawn_housekeeping(proxy: Arc<Proxy>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            for pool in &proxy.runtime().pools {
                pool.reap_idle();
            }
            crate::metrics::record_gauges(&proxy);
        }
    });
}

async fn handle_connection(proxy: Arc<Proxy>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let rt = proxy.runtime();
    if proxy.draining.load(Ordering::Relaxed) {
        refuse_early(
            socket,
            SqlError::fatal(sqlstate::ADMIN_SHUTDOWN, "the proxy is shutting down"),
        )
        .await;
        return;
    }
    if proxy.clients.count() >= rt.config.proxy.max_clients {
        crate::metrics::client_refused();
        refuse_early(
            socket,
            SqlError::fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                "sorry, too many clients already",
            )
            .with_hint("Raise proxy.max_clients or use fewer client connections."),
        )
        .await;
        return;
    }
    let info = proxy.clients.register(Some(peer));
    let timeout = Duration::from_millis(rt.config.proxy.startup_timeout_ms);
    match tokio::time::timeout(timeout, startup::handshake(socket, &proxy, &rt, &info)).await {
        Ok(Ok(startup::Opening::Client(hs))) => {
            drop(rt);
            if hs.admin {
                crate::control::admin::run(proxy.clone(), info.clone(), hs).await;
            } else {
                session::run(proxy.clone(), info.clone(), hs).await;
            }
        }
        Ok(Ok(startup::Opening::Cancelled)) => {}
        Ok(Err(refused)) => {
            if let Some(mut s) = refused.stream {
                let mut out = BytesMut::new();
                refused.error.encode(&mut out);
                let _ = s.write_all(&out).await;
                let _ = s.shutdown().await;
            }
        }
        Err(_) => tracing::debug!("client {peer} did not finish startup within {timeout:?}"),
    }
    proxy.clients.unregister(info.id);
}

/// Reads the startup packet (briefly) so the client sees the error, then closes.
async fn refuse_early(mut socket: TcpStream, e: SqlError) {
    let _ = tokio::time::timeout(Duration::from_secs(2), read_startup(&mut socket)).await;
    let mut out = BytesMut::new();
    e.encode(&mut out);
    let _ = socket.write_all(&out).await;
    let _ = socket.shutdown().await;
}
