//! The CLI's line to a running `serve`: a best-effort wake-up after it changes the store, so
//! the server acts at once instead of at its fallback poll.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::web::WAKE_PATH;

/// How long to wait for a server that may not be there.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Header carrying the store's wake secret (see `Service::wake_secret`).
pub const WAKE_SECRET_HEADER: &str = "x-orchestrator-wake-secret";

/// Tells the server at `addr` to look at the store again, with the wake secret the server
/// requires once users exist. Returns whether an orchestrator server accepted (false:
/// nothing listening, something else is, or the secret was refused).
pub async fn wake(addr: SocketAddr, secret: Option<&str>) -> bool {
    tokio::time::timeout(TIMEOUT, post(addr, WAKE_PATH, secret))
        .await
        .ok()
        .flatten()
        .is_some_and(|status| status == 204)
}

async fn post(addr: SocketAddr, path: &str, secret: Option<&str>) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    // The secret is URL-safe base64: it cannot break the header line.
    let secret = secret
        .filter(|s| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|s| format!("{WAKE_SECRET_HEADER}: {s}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{secret}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
