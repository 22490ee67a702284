//! The one HTTP exchange identity makes with outside servers (JWK Sets,
//! introspection endpoints): a request answered `200` within a timeout, its
//! body capped. Redirects are not followed.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use meridian_core::client::AdminClient;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("larger than {0} bytes")]
    TooLarge(usize),
}

/// Send `req`; the body of a `200` answer of at most `max_bytes`, all within `timeout`.
pub async fn exchange(
    client: &AdminClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Bytes, FetchError> {
    let work = async {
        let resp = client.request(req).await.map_err(|e| FetchError::Request(e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::Status(resp.status()));
        }
        let body = Limited::new(resp.into_body(), max_bytes).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                FetchError::TooLarge(max_bytes)
            } else {
                FetchError::Request(e.to_string())
            }
        })?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(timeout, work).await.map_err(|_| FetchError::Timeout(timeout))?
}
