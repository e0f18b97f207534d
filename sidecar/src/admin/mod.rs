//! The admin HTTP server: `/metrics` for Prometheus, `/healthz` for liveness and
//! `/ready` for readiness probes, plus the [`Health`] flags that `/ready` reports, and
//! `/debug/...` pages a role registers ([`DebugPages`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, StatusCode};
use shardcar_control::http_server::{self, reply, Reply, ReplyFuture, JSON, OPENMETRICS, TEXT};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// A role's `/debug/<name>` pages and actions.
pub type DebugPages = Arc<dyn Fn(&DebugRequest<'_>) -> DebugReply + Send + Sync>;

/// A request for `/debug/<name>`: a page (GET) or an action (POST).
#[derive(Debug, Clone, Copy)]
pub struct DebugRequest<'a> {
    pub name: &'a str,
    /// The query string, without `?` (empty when there is none).
    pub query: &'a str,
    pub post: bool,
}

impl DebugRequest<'_> {
    /// The value of `key` in the query string (no percent-decoding: values are numbers
    /// and words).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// What a debug page or action answers.
pub enum DebugReply {
    Json(String),
    NotFound,
    /// 400 with the message.
    BadRequest(String),
    /// 405: an action asked with GET, or a page with POST.
    WrongMethod,
    /// 409 with the message: the action cannot be done in the current state.
    Conflict(String),
    /// An action that takes time (a tablet action waiting for replication): the reply
    /// comes when it finishes.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = DebugReply> + Send>>),
}

impl std::fmt::Debug for DebugReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DebugReply::Json(j) => f.debug_tuple("Json").field(j).finish(),
            DebugReply::NotFound => f.write_str("NotFound"),
            DebugReply::BadRequest(m) => f.debug_tuple("BadRequest").field(m).finish(),
            DebugReply::WrongMethod => f.write_str("WrongMethod"),
            DebugReply::Conflict(m) => f.debug_tuple("Conflict").field(m).finish(),
            DebugReply::Later(_) => f.write_str("Later"),
        }
    }
}

/// Whether the sidecar should receive traffic: ready (set once listening and able to
/// reach the upstream), the upstream still answering where the role probes it, and not
/// draining.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
    /// Set by a role that probes its upstream (the db role) while the probe fails.
    upstream_down: AtomicBool,
}

impl Health {
    /// Not ready, not draining.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Release);
    }

    pub fn set_upstream_down(&self, down: bool) {
        self.upstream_down.store(down, Ordering::Release);
    }

    /// Ready and not draining.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }

    /// Why `/ready` answers 503, if it does.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("draining")
        } else if !self.ready.load(Ordering::Acquire) {
            Some("starting")
        } else if self.upstream_down.load(Ordering::Acquire) {
            Some("upstream unreachable")
        } else {
            None
        }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` turns true (or its sender
/// goes away), then stops accepting and returns; requests in flight finish on their own.
///
/// `/ready` reports draining only while this server runs, so a caller that wants probes
/// to see the drain should pass a receiver that flips at the end of the drain.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_with(listener, metrics, health, None, None, shutdown).await
}

/// [`serve`], with `/debug/...` pages; with `token`, a `POST` (an action) must carry it
/// as a bearer token or is refused with 401.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    pages: Option<DebugPages>,
    token: Option<Arc<[u8]>>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    http_server::serve(listener, None, shutdown, "admin", move |req, peer| {
        if req.method() == Method::POST && !authorized(&req, token.as_deref()) {
            tracing::warn!(%peer, path = %req.uri().path(), "admin action refused: missing or wrong bearer token");
            return Box::pin(std::future::ready(unauthorized()));
        }
        route(&req, &metrics, &health, pages.as_ref())
    })
    .await
}

/// The response to `req`: at once for everything but a [`DebugReply::Later`] action.
fn route(
    req: &Request<Incoming>,
    metrics: &Metrics,
    health: &Health,
    pages: Option<&DebugPages>,
) -> ReplyFuture {
    let post = req.method() == Method::POST;
    let debug = req.uri().path().strip_prefix("/debug/");
    if req.method() != Method::GET && req.method() != Method::HEAD && !(post && debug.is_some()) {
        return Box::pin(std::future::ready(method_not_allowed()));
    }
    let reply = match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n"),
        "/ready" => match health.not_ready_reason() {
            None => reply(StatusCode::OK, TEXT, "ready\n"),
            Some(reason) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                TEXT,
                format!("not ready: {reason}\n"),
            ),
        },
        _ if post && debug.is_none() => method_not_allowed(),
        _ => match (debug, pages) {
            (Some(name), Some(pages)) => {
                let request = DebugRequest {
                    name,
                    query: req.uri().query().unwrap_or(""),
                    post,
                };
                match pages(&request) {
                    DebugReply::Later(action) => {
                        return Box::pin(async move { debug_response(action.await) })
                    }
                    other => debug_response(other),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        },
    };
    Box::pin(std::future::ready(reply))
}

fn debug_response(r: DebugReply) -> Reply {
    match r {
        DebugReply::Json(json) => reply(StatusCode::OK, JSON, json),
        DebugReply::NotFound => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        DebugReply::BadRequest(m) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{m}\n")),
        DebugReply::Conflict(m) => reply(StatusCode::CONFLICT, TEXT, format!("{m}\n")),
        DebugReply::WrongMethod => method_not_allowed(),
        DebugReply::Later(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            "nested deferred reply\n",
        ),
    }
}

/// Whether `req` carries `token` as its bearer token (always, without a token).
fn authorized(req: &Request<Incoming>, token: Option<&[u8]>) -> bool {
    token.is_none_or(|t| {
        http_server::bearer_token_matches(req.headers().get(hyper::header::AUTHORIZATION), t)
    })
}

fn unauthorized() -> Reply {
    let mut r = reply(
        StatusCode::UNAUTHORIZED,
        TEXT,
        "admin actions need the bearer token of admin_token_file\n",
    );
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    r
}

fn method_not_allowed() -> Reply {
    let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    r.headers_mut().insert(
        ALLOW,
        HeaderValue::from_static("GET, HEAD; POST for /debug actions"),
    );
    r
}

#[cfg(test)]
mod tests;
