//! The CLI's line to a running `serve`: a best-effort wake-up after it changes the store, so
//! the server acts at once instead of at its fallback poll.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::web::WAKE_PATH;

/// How long to wait for a server that may not be there.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Tells the server at `addr` to look at the store again. Returns whether an orchestrator
/// server answered (false: nothing listening, or something else is).
pub async fn wake(addr: SocketAddr) -> bool {
    tokio::time::timeout(TIMEOUT, post(addr, WAKE_PATH))
        .await
        .ok()
        .flatten()
        .is_some_and(|status| status == 204)
}

async fn post(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}
