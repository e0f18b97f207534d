//! A minimal HTTP/1.0 GET (and body-less POST) to loopback over a raw `TcpStream`: enough
//! for the admin endpoints and etcd's `/health`, for the local cluster and the tests,
//! without an HTTP client dependency.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// GETs `path` from `127.0.0.1:port`; returns the status code and the body.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(LOOPBACK, port, "GET", path, None)
}

/// POSTs to `path` (no body) on `127.0.0.1:port`; returns the status code and the body.
pub fn http_post(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(LOOPBACK, port, "POST", path, None)
}

/// [`http_post`] with `token` as the bearer token (an admin action).
pub fn http_post_as(port: u16, path: &str, token: &str) -> anyhow::Result<(u16, String)> {
    http_request(LOOPBACK, port, "POST", path, Some(token))
}

/// [`http_get`] from `host:port` (a network namespace's address).
pub fn http_get_at(host: IpAddr, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    http_request(host, port, "GET", path, None)
}

fn http_request(
    host: IpAddr,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let timeout = Duration::from_secs(5);
    let addr = std::net::SocketAddr::from((host, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to {method} {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{method} {path} from {addr}: no header end in {text:?}");
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("{method} {path} from {addr}: bad status line in {head:?}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        body = after.trim_start_matches("\r\n");
    }
    out
}
