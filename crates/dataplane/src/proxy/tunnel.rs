//! Upgraded connections (after a `101`): the two sides joined byte for byte,
//! tracked by the gateway, closed when quiet for `limits.idle_timeout` and
//! when the gateway stops, and counted (`meridian_tunnels` open now).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Gateway;

/// An I/O that counts its reads and writes, so the tunnel knows when it went quiet.
struct Watched<I> {
    inner: I,
    activity: Arc<AtomicU64>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once `activity` has not moved for `idle`.
async fn quiet_for(activity: &AtomicU64, idle: Duration) {
    let tick = idle.min(Duration::from_secs(1));
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    loop {
        tokio::time::sleep(tick).await;
        let now = activity.load(Ordering::Relaxed);
        if now == seen {
            quiet += tick;
            if quiet >= idle {
                return;
            }
        } else {
            seen = now;
            quiet = Duration::ZERO;
        }
    }
}

/// Join the client and upstream connections once both finished upgrading.
pub(crate) fn spawn(gw: &Gateway, client: OnUpgrade, upstream: Option<OnUpgrade>, name: Arc<str>) {
    let idle = gw.settings.limits.idle_timeout;
    let stop = gw.tunnel_stop.clone();
    let open = gw.metrics.tunnels.clone();
    gw.tunnels.spawn(async move {
        let Some(upstream) = upstream else {
            tracing::warn!(upstream = %name, "upstream answered 101 without an upgradable connection");
            return;
        };
        let (c, u) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(upstream = %name, error = %e, "upgrade did not complete");
                return;
            }
        };
        open.inc();
        let activity = Arc::new(AtomicU64::new(0));
        let mut c = Watched { inner: TokioIo::new(c), activity: activity.clone() };
        let mut u = Watched { inner: TokioIo::new(u), activity: activity.clone() };
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut c, &mut u) => match r {
                Ok((to_up, to_client)) => tracing::debug!(upstream = %name, to_up, to_client, "tunnel closed"),
                Err(e) => tracing::debug!(upstream = %name, error = %e, "tunnel ended with an error"),
            },
            _ = quiet_for(&activity, idle) => tracing::debug!(upstream = %name, "tunnel idle: closed"),
            _ = stop.cancelled() => tracing::debug!(upstream = %name, "gateway stopping: tunnel closed"),
        }
        open.dec();
    });
}
