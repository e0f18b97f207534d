//! The small HTTP/1.1 server behind the sidecar's admin endpoints and the control API:
//! an accept loop that outlives per-connection failures and stops on shutdown, a
//! header-read timeout per connection, and the pieces both answer with (plain replies,
//! the bearer-token check).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A client that has not sent its request headers by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Content types of the replies.
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json";
/// The OpenMetrics text `/metrics` answers with.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A whole response.
pub type Reply = Response<Full<Bytes>>;
/// A response still being worked out (an action that takes a while).
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Serves `handler` on `listener` until `shutdown` turns true (or its sender goes
/// away); requests in flight finish on their own. With `tls` each connection's TLS
/// handshake comes first (a failed one drops it). `what` names the server in logs.
pub async fn serve<H>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    what: &'static str,
    handler: H,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> ReplyFuture + Clone + Send + Sync + 'static,
{
    if *shutdown.borrow() {
        return Ok(());
    }
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Per-connection failures (ECONNABORTED, EMFILE) must not stop the
                    // server; back off briefly so EMFILE does not spin.
                    tracing::warn!(server = what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return Ok(());
                }
                continue;
            }
        };
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = handler(req, peer);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let builder = || {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .keep_alive(true);
                b
            };
            let result = match tls {
                None => {
                    builder()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(tls) => {
                    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            builder()
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(server = what, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(server = what, %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(server = what, %peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// A response with `status`, `content_type` and `body`.
pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether an `Authorization` header carries `token` as its bearer token, compared in
/// time independent of where they differ.
pub fn bearer_token_matches(authorization: Option<&HeaderValue>, token: &[u8]) -> bool {
    let given = authorization
        .map(HeaderValue::as_bytes)
        .and_then(|v| v.strip_prefix(b"Bearer ".as_slice()))
        .unwrap_or_default();
    given.len() == token.len() && given.iter().zip(token).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_whole() {
        let header = |v: &'static str| HeaderValue::from_static(v);
        assert!(bearer_token_matches(
            Some(&header("Bearer s3cret")),
            b"s3cret"
        ));
        assert!(!bearer_token_matches(
            Some(&header("Bearer s3cre")),
            b"s3cret"
        ));
        assert!(!bearer_token_matches(
            Some(&header("Bearer s3cretx")),
            b"s3cret"
        ));
        assert!(!bearer_token_matches(
            Some(&header("Basic s3cret")),
            b"s3cret"
        ));
        assert!(!bearer_token_matches(None, b"s3cret"));
    }
}
