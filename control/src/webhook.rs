//! The sidecar-injection admission webhook's HTTPS endpoint
//! (`shardcar-control webhook --listen ADDR --cert F --key F`): `POST /inject` (and
//! `/inject/app`, `/inject/db` or `?default=app|db` with a namespace default) answers an `AdmissionReview` with
//! [`crate::inject::answer`]; `GET /healthz` for probes. The Kubernetes API server only
//! calls webhooks over TLS, so there is no plain-HTTP mode.

use std::path::Path;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::http_server::{self, reply, Reply, JSON, TEXT};
use crate::inject::{self, InjectConfig, Role};

/// The largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
const MAX_REVIEW: usize = 4 << 20;

/// The TLS configuration from a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    let read = |p: &Path| {
        std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .with_context(|| format!("opening {}", p.display()))
    };
    let certs = rustls_pemfile::certs(&mut read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut read(key)?)
        .with_context(|| format!("reading {}", key.display()))?
        .with_context(|| format!("{} holds no PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves the webhook on `listener` over `tls` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    config: InjectConfig,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    info!(address = %listener.local_addr()?, "injection webhook listening (HTTPS)");
    let config = Arc::new(config);
    http_server::serve(
        listener,
        Some(tls),
        shutdown,
        "webhook",
        move |req, peer| {
            let config = config.clone();
            Box::pin(async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, "/healthz") => reply(StatusCode::OK, TEXT, "ok\n"),
                    (&Method::POST, path @ ("/inject" | "/inject/app" | "/inject/db")) => {
                        // The namespace default: `/inject/app` (a webhook configuration's
                        // service path takes no query string), or `?default=app`.
                        let default = path
                            .strip_prefix("/inject/")
                            .or_else(|| {
                                req.uri()
                                    .query()
                                    .unwrap_or("")
                                    .split('&')
                                    .find_map(|kv| kv.strip_prefix("default="))
                            })
                            .map(str::to_string);
                        let body = http_body_util::Limited::new(req.into_body(), MAX_REVIEW)
                            .collect()
                            .await
                            .map(|b| b.to_bytes());
                        match body {
                            Ok(body) => review(&body, default.as_deref(), &config),
                            Err(e) => {
                                warn!(%peer, error = %e, "unreadable admission review");
                                reply(StatusCode::BAD_REQUEST, TEXT, format!("{e}\n"))
                            }
                        }
                    }
                    (_, "/healthz" | "/inject" | "/inject/app" | "/inject/db") => {
                        reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n")
                    }
                    _ => reply(StatusCode::NOT_FOUND, TEXT, "not found\n"),
                }
            })
        },
    )
    .await
}

/// The answer to one review body.
fn review(body: &[u8], default: Option<&str>, config: &InjectConfig) -> Reply {
    let default = match default {
        None => None,
        Some("app") => Some(Role::App),
        Some("db") => Some(Role::Db),
        Some(other) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("default={other}: expected app or db\n"),
            )
        }
    };
    let parsed: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("not an AdmissionReview: {e}\n"),
            )
        }
    };
    match inject::answer(&parsed, config, default) {
        Ok(answer) => {
            let response = &answer["response"];
            let uid = response["uid"].as_str().unwrap_or("");
            if response["allowed"] == false {
                warn!(%uid, message = %response["status"]["message"], "pod denied");
            } else {
                info!(%uid, patched = response.get("patch").is_some(), "pod reviewed");
            }
            reply(StatusCode::OK, JSON, answer.to_string())
        }
        Err(message) => reply(StatusCode::BAD_REQUEST, TEXT, format!("{message}\n")),
    }
}
