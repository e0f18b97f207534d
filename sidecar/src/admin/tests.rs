//! Tests of the health flags and of the admin server over real loopback sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

#[test]
fn ready_only_when_ready_and_not_draining() {
    let h = Health::new();
    assert!(!h.is_ready());
    assert_eq!(h.not_ready_reason(), Some("starting"));
    h.set_ready(true);
    assert!(h.is_ready());
    h.set_draining(true);
    assert!(!h.is_ready());
    assert_eq!(h.not_ready_reason(), Some("draining"));
    h.set_draining(false);
    assert!(h.is_ready());
}

/// Sends one raw request and returns the whole response (the request asks to close).
async fn raw(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("response timed out"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn admin_server_answers_real_requests() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let metrics = Metrics::new();
    let health = Health::new();
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(serve(listener, metrics.clone(), health.clone(), stopped));

    metrics.command(0x03, 0.01);
    let r = get(addr, "/metrics").await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("application/openmetrics-text"), "{r}");
    assert!(
        r.contains("shardcar_commands_total{command=\"query\"} 1"),
        "{r}"
    );

    let r = get(addr, "/healthz").await?;
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n"), "{r}");

    let r = get(addr, "/ready").await?;
    assert!(
        r.starts_with("HTTP/1.1 503") && r.ends_with("not ready: starting\n"),
        "{r}"
    );
    health.set_ready(true);
    let r = get(addr, "/ready").await?;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("ready\n"),
        "{r}"
    );
    health.set_draining(true);
    let r = get(addr, "/ready").await?;
    assert!(r.ends_with("not ready: draining\n"), "{r}");

    let r = get(addr, "/nope").await?;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = raw(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");

    // Garbage gets a 400 or a closed connection, and the server keeps serving.
    let r = raw(addr, "\x00\x01 not http at all\r\n\r\n").await?;
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = get(addr, "/healthz").await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    stop.send(true)?;
    tokio::time::timeout(Duration::from_secs(5), server).await???;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
    Ok(())
}
