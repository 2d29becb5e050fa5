//! Hostile HTTP clients against a real `serve` on loopback (issue 9, item 8): floods of
//! slow and idle connections, oversized bodies.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Env, PATIENCE, http_text};

/// Slow clients: each sends a request's headers a byte at a time and never finishes.
const SLOW_CLIENTS: usize = 300;
/// Idle clients: each connects and sends nothing.
const IDLE_CLIENTS: usize = 600;
/// `/health` normally answers in milliseconds; this only catches a server that makes it wait
/// for slow clients to time out (10 s each) or for connections to free up.
const HEALTH_BOUND: Duration = Duration::from_secs(5);

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Sends a raw request and returns the response's status code.
fn raw_status(addr: &str, request: &str) -> u16 {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Waits for the server to close `s` (EOF or reset); panics after `limit`.
fn wait_closed(mut s: TcpStream, limit: Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => return,
            Err(e) => panic!("connection still open after {:?}: {e}", start.elapsed()),
        }
        assert!(start.elapsed() < limit, "connection still open");
    }
}

#[test]
fn health_answers_promptly_while_hundreds_of_slow_and_idle_clients_hold_connections() {
    // The client side needs a descriptor per connection too.
    orchestrator::web::raise_open_file_limit();
    let mut env = Env::new();
    let server = env.serve();
    let addr = server.addr.clone();
    let header = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let mut slow: Vec<TcpStream> = (0..SLOW_CLIENTS).map(|_| connect(&addr)).collect();
    for s in &mut slow {
        s.write_all(&header.as_bytes()[..1]).unwrap();
    }
    let idle: Vec<TcpStream> = (0..IDLE_CLIENTS).map(|_| connect(&addr)).collect();
    // Byte by byte: a few rounds, each a byte more on every slow connection, with /health
    // asked between rounds.
    for round in 1..=5 {
        for s in &mut slow {
            // On a very slow machine the server may already have cut this client off
            // (header-read timeout): that is its job, not a failure.
            let _ = s.write_all(&header.as_bytes()[round..=round]);
        }
        let start = Instant::now();
        let (status, body) = http_text(&addr, "GET", "/health");
        let took = start.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(
            took < HEALTH_BOUND,
            "/health took {took:?} in round {round}"
        );
    }
    // A client that never finishes its headers, or never sends any, is cut off after the
    // header-read timeout (10 s), not kept forever.
    let bound = orchestrator::web::HEADER_READ_TIMEOUT + PATIENCE;
    wait_closed(slow.swap_remove(0), bound);
    wait_closed(idle.into_iter().next().unwrap(), bound);
    let (status, _) = http_text(&addr, "GET", "/health");
    assert_eq!(status, 200);
}

#[test]
fn oversized_bodies_are_refused_with_413_on_every_route() {
    let mut env = Env::new();
    let server = env.serve();
    let addr = &server.addr;
    let two_mib = 2 * 1024 * 1024;
    for (method, path) in [
        ("POST", "/internal/wake"),
        ("GET", "/"),
        ("POST", "/health"),
        ("POST", "/no/such/page"),
    ] {
        // The body is announced, never sent: the refusal must not wait for it.
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {two_mib}\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(raw_status(addr, &request), 413, "{method} {path}");
    }
    // Within the limit, the wake-up still works.
    let request = format!(
        "POST /internal/wake HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\n{{}}"
    );
    assert_eq!(raw_status(addr, &request), 204);
}

#[test]
fn sigterm_closes_silent_and_half_sent_connections_without_waiting_for_them() {
    let mut env = Env::new();
    let mut server = env.serve();
    let addr = server.addr.clone();
    let mut open: Vec<TcpStream> = (0..50).map(|_| connect(&addr)).collect();
    for s in &mut open[..25] {
        s.write_all(b"GET /hea").unwrap();
    }
    // And one kept alive after a complete request.
    let mut kept = connect(&addr);
    write!(kept, "GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(server.sigterm().success());
    let log = server.log();
    assert!(log.contains("orchestrator stopped"), "{log}");
    assert!(!log.contains("still in flight"), "{log}");
}

#[test]
fn clients_over_the_connection_limit_wait_until_a_connection_ends() {
    let mut env = Env::new();
    env.vars
        .push(("ORCHESTRATOR_MAX_CONNECTIONS".into(), "3".into()));
    let server = env.serve();
    let addr = server.addr.clone();
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&addr)).collect();
    // The kernel completes this connection, but the server does not take it on yet.
    let mut waiting = connect(&addr);
    write!(
        waiting,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut first = [0u8; 1];
    // A slow machine could only make this pass wrongly, never fail wrongly.
    let early = waiting.read(&mut first);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "answered over the limit: {early:?}"
    );
    drop(held);
    waiting.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut resp = String::new();
    waiting.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
