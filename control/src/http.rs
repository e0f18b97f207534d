//! A minimal HTTP/1.1 client for the db sidecars' admin API (tablet actions): one request
//! per connection, plain HTTP inside the cluster network, bounded response size.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response body accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// A request failed before an HTTP status came back, or with a non-2xx one.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

/// `method` `path` on `host:port`, with `token` as a bearer token when given; the body
/// of a 2xx answer.
pub async fn request(
    method: &str,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
    token: Option<&str>,
) -> Result<String, HttpError> {
    let url = format!("http://{host}:{port}{path}");
    let attempt = async {
        let transport = |e: std::io::Error| HttpError::Transport {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut stream = TcpStream::connect((host, port)).await.map_err(transport)?;
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.map_err(transport)?;
        let mut response = Vec::new();
        let mut limited = (&mut stream).take(MAX_RESPONSE as u64 + 4096);
        limited
            .read_to_end(&mut response)
            .await
            .map_err(transport)?;
        parse(&url, &response)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout { url, timeout }),
    }
}

fn parse(url: &str, response: &[u8]) -> Result<String, HttpError> {
    let malformed = || HttpError::Transport {
        url: url.to_string(),
        message: "malformed HTTP response".to_string(),
    };
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| malformed())?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let raw = &response[split + 4..];
    let body = if chunked {
        dechunk(raw).ok_or_else(malformed)?
    } else {
        raw.to_vec()
    };
    let body = String::from_utf8_lossy(&body).trim_end().to_string();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(HttpError::Status {
            url: url.to_string(),
            status,
            body,
        })
    }
}

/// Decodes a chunked body.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_answers() {
        let ok = parse("u", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!(ok, "{}");
        let chunked = parse(
            "u",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked, "abcde");
        match parse("u", b"HTTP/1.1 409 Conflict\r\n\r\nnot reached\n") {
            Err(HttpError::Status {
                status: 409, body, ..
            }) => assert_eq!(body, "not reached"),
            other => panic!("{other:?}"),
        }
        assert!(parse("u", b"garbage").is_err());
    }
}
