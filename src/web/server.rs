//! The HTTP listener of `serve`: our own accept loop over hyper's HTTP/1 connection builder,
//! so that every route — today's and any added later — inherits the same defences against
//! slow, idle or greedy clients: a header-read timeout, an idle timeout, a cap on open
//! connections, and a graceful shutdown driven by the daemon's `CancellationToken`.
//! `axum::serve` offers none of these knobs. Called by `daemon::serve`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a request's headers. hyper starts this clock whenever it
/// waits for a request, so it also closes kept-alive connections that stay silent between
/// requests, and connections that never send a byte.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection on which nothing is read or written for this long is closed: a stalled
/// upload, a client that stopped reading its response, a stream with nothing to say.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Long-lived responses (the dashboard's server-sent events, live logs) must send
/// something — an SSE comment line such as `:\n\n` — at least this often, so the
/// [`IDLE_TIMEOUT`] never closes a stream that is merely quiet. Use it with axum's
/// `Sse::keep_alive(KeepAlive::new().interval(STREAM_KEEP_ALIVE))`.
pub const STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

// A stream that keeps alive at this pace survives a lost keep-alive or two.
const _: () = assert!(STREAM_KEEP_ALIVE.as_secs() * 2 <= IDLE_TIMEOUT.as_secs());

/// Default cap on open client connections (`max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Descriptors kept for everything but client connections: the state database, the
/// warehouse, log and DAG files, task pipes.
const RESERVED_FDS: u64 = 256;

/// How long the accept loop rests after the process ran out of descriptors, so a flood
/// does not turn into a busy loop of failing `accept` calls.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish and returns once every connection has closed (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        // At the limit, wait for a connection to end before accepting: newcomers queue in
        // the kernel's backlog instead of costing a descriptor and a task each.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let conn = connection(
            builder.clone(),
            stream,
            app.clone(),
            shutdown.clone(),
            permit,
        );
        connections.spawn(conn);
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection; `_permit` holds its place under the connection limit.
async fn connection(
    builder: http1::Builder,
    stream: TcpStream,
    app: Router,
    shutdown: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = Counted {
        inner: TowerToHyperService::new(app),
        activity: activity.clone(),
        peer,
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                // hyper closes a connection idle after a request at once and lets one with
                // a request in flight finish it; one that never got as far as a request
                // (silent, or still sending headers) has nothing to finish.
                if !activity.served_any() {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(IDLE_TIMEOUT) => {
                tracing::debug!("closing an HTTP connection idle for {IDLE_TIMEOUT:?}");
                return;
            }
        }
    }
}

async fn accept_failed(e: &io::Error) {
    // Errors about one connection (reset before accept, …) concern only that client; running
    // out of descriptors concerns every client, so wait for some to be released.
    use nix::errno::Errno;
    let errno = e.raw_os_error().map(Errno::from_raw);
    let out_of_descriptors = matches!(
        errno,
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    );
    if out_of_descriptors {
        tracing::warn!(error = %e, "cannot accept HTTP connections; retrying shortly");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    } else {
        tracing::debug!(error = %e, "HTTP accept failed");
    }
}

/// Raises the soft limit on open files to the hard limit — each connection is a
/// descriptor, and the common soft default of 1,024 runs out long before the connection
/// limit — and returns the soft limit now in force (`None` if it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Some(hard),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit from {soft} to {hard}");
            Some(soft)
        }
    }
}

/// The connection limit in force: the configured one, lowered (with a warning) when the
/// open-file limit leaves too few descriptors for it.
pub fn connection_limit(configured: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return configured;
    };
    let room = usize::try_from(open_files.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if configured > room {
        tracing::warn!(
            "max_connections {configured} lowered to {} to fit the open-file limit of \
             {open_files}",
            room.max(1)
        );
    }
    configured.min(room).max(1)
}

/// When a connection last read or wrote a byte, shared between its I/O and its watchdog.
#[derive(Clone)]
struct Activity(Arc<ActivityInner>);

struct ActivityInner {
    start: Instant,
    last_ms: AtomicU64,
    /// Whether a request has reached the router.
    served: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(ActivityInner {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        }))
    }

    fn served_any(&self) -> bool {
        self.0.served.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let ms = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.0.last_ms.load(Ordering::Relaxed));
            let deadline = self.0.start + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The router, noting in the connection's [`Activity`] that a request reached it, and
/// giving each request the client's address (axum's `ConnectInfo`: failed logins are
/// counted per address).
struct Counted {
    inner: TowerToHyperService<Router>,
    activity: Activity,
    peer: Option<std::net::SocketAddr>,
}

impl hyper::service::Service<Request<Incoming>> for Counted {
    type Response = <TowerToHyperService<Router> as Service<Request<Incoming>>>::Response;
    type Error = <TowerToHyperService<Router> as Service<Request<Incoming>>>::Error;
    type Future = <TowerToHyperService<Router> as Service<Request<Incoming>>>::Future;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.activity.0.served.store(true, Ordering::Relaxed);
        if let Some(peer) = self.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        self.inner.call(request)
    }
}

/// A stream that records its activity.
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_for_other_descriptors() {
        assert_eq!(connection_limit(4096, Some(1_048_576)), 4096);
        assert_eq!(connection_limit(4096, Some(1024)), 768);
        assert_eq!(connection_limit(4096, Some(100)), 1);
        assert_eq!(connection_limit(50, None), 50);
    }
}
