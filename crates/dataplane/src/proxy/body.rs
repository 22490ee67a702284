//! Bodies streamed through the proxy: the request body sent upstream (with the
//! size limit enforced as it streams) and the response body sent to the client
//! (which finishes the exchange's accounting when it ends or is dropped).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::finish::Finish;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body exceeded `limits.max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// Reading the client's body failed (malformed chunking, reset, ...).
#[derive(Debug, thiserror::Error)]
#[error("reading the request body: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);

/// What is sent upstream: nothing, or the client's body under a size limit.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Option<Incoming>,
    /// A body read whole before it is sent (validated, translated).
    full: Option<Bytes>,
    remaining: u64,
    limit: u64,
    /// Set once the client's body has been read to its end: until then a
    /// slow exchange may be the client's doing, not the upstream's. `None`:
    /// there is no client body (nothing to wait for, nothing allocated).
    complete: Option<Arc<AtomicBool>>,
}

impl UpstreamBody {
    pub fn empty() -> Self {
        Self { inner: None, full: None, remaining: 0, limit: 0, complete: None }
    }

    /// A body already in memory.
    pub fn full(bytes: Bytes) -> Self {
        Self { full: (!bytes.is_empty()).then_some(bytes), ..Self::empty() }
    }

    pub fn limited(body: Incoming, limit: u64) -> Self {
        if body.is_end_stream() {
            return Self::empty();
        }
        Self {
            inner: Some(body),
            full: None,
            remaining: limit,
            limit,
            complete: Some(Arc::new(AtomicBool::new(false))),
        }
    }

    /// Whether the client's body has been read whole, as it goes (`None`:
    /// there is no body).
    pub fn completion(&self) -> Option<Arc<AtomicBool>> {
        self.complete.clone()
    }

    fn ended(&mut self) {
        if let Some(c) = &self.complete {
            c.store(true, Ordering::Relaxed);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(full) = this.full.take() {
            return Poll::Ready(Some(Ok(Frame::data(full))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: this.limit }))));
                    }
                    this.remaining -= n;
                }
                if inner.is_end_stream() {
                    this.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.inner = None;
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e)))))
            }
            None => {
                this.ended();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.full.is_none() && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(full) = &self.full {
            return SizeHint::with_exact(full.len() as u64);
        }
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// What the client receives.
pub struct ProxyBody {
    inner: Inner,
    finish: Option<Finish>,
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        Self { inner: Inner::Full((!b.is_empty()).then_some(b)), finish: None }
    }

    pub fn empty() -> Self {
        Self { inner: Inner::Full(None), finish: None }
    }

    pub fn upstream(body: Incoming) -> Self {
        Self { inner: Inner::Upstream(body), finish: None }
    }

    /// Attach the exchange's accounting; it completes when the body ends or drops.
    pub(crate) fn with_finish(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }

    fn ended(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            let clean = self.ended();
            f.complete(clean);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match &mut this.inner {
            Inner::Full(b) => b.take().map(|d| Ok(Frame::data(d))),
            Inner::Upstream(b) => ready!(Pin::new(b).poll_frame(cx)).map(|r| r.map_err(|e| Box::new(e) as BoxError)),
        };
        if let (Some(Ok(f)), Some(fin)) = (&frame, this.finish.as_mut()) {
            if let Some(d) = f.data_ref() {
                fin.bytes_sent += d.len() as u64;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}
