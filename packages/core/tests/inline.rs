//! Requests started on the dispatching thread (`Agent::dispatch_all_here`): which ones go on the wire before
//! the runtime runs them, and that every other one waits for the runtime as before.
//!
//! Each test holds the runtime's only worker busy (a handler that blocks in `on_response_end`) while it
//! dispatches: whatever reaches the server then was written by the dispatching thread itself.

mod support;

use bytes::Bytes;
use reqwest_dispatcher_core::{
    set_worker_threads, Agent, CoreError, DispatchHandler, DispatchRequest, RawHeaders,
    RequestBody, RequestController, ResponseHead,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;
use support::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// The tests take the runtime's one worker in turn.
static WORKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a blocking server reports to the test.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A connection was accepted (its number, from 1).
    Connection(usize),
    /// A request head arrived on connection `n` (its request line).
    Request(usize, String),
}

/// A server on plain threads (it answers whatever the core's runtime is doing). Each connection is served by
/// `serve(n, stream, seen)`.
fn thread_server(
    serve: impl Fn(usize, TcpStream, &Sender<Seen>) + Send + Sync + 'static,
) -> (SocketAddr, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = channel();
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            let serve = std::sync::Arc::clone(&serve);
            let _ = tx.send(Seen::Connection(i + 1));
            std::thread::spawn(move || serve(i + 1, stream, &tx));
        }
    });
    (addr, rx)
}

/// Reads one request head (and a body of `content-length` bytes); `None` at the end of the stream.
fn read_request(stream: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(text.lines().next().unwrap_or("").to_string())
}

/// Answers every request on a connection with `OK`.
fn keep_alive(n: usize, mut stream: TcpStream, seen: &Sender<Seen>) {
    while let Some(line) = read_request(&mut stream) {
        let _ = seen.send(Seen::Request(n, line));
        if stream.write_all(OK).is_err() {
            return;
        }
    }
}

/// Answers a connection's first request with `OK`, records the next one's request line, and closes the
/// connection without answering it.
fn answer_once_then_drop(n: usize, mut stream: TcpStream, seen: &Sender<Seen>) {
    if read_request(&mut stream).is_some() && stream.write_all(OK).is_ok() {
        if let Some(line) = read_request(&mut stream) {
            let _ = seen.send(Seen::Request(n, line));
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A handler that holds the runtime's worker in `on_response_end` until released.
struct Blocking {
    ended: Sender<()>,
    release: Receiver<()>,
}

impl DispatchHandler for Blocking {
    fn on_response_start(&mut self, _: ResponseHead) {}
    fn on_response_data(&mut self, _: Bytes) {}
    fn on_response_end(&mut self, _: RawHeaders) {
        let _ = self.ended.send(());
        let _ = self.release.recv_timeout(LIMIT);
    }
    fn on_error(&mut self, error: CoreError) {
        panic!("the blocking request failed: {error:?}");
    }
}

/// Sends a GET to `addr` and holds the runtime's worker once it ended (its connection is idle in the pool by
/// then). Dropping the returned sender lets the worker go.
fn hold_worker(agent: &Agent, addr: SocketAddr) -> Sender<()> {
    let (ended_tx, ended) = channel();
    let (release, release_rx) = channel();
    agent.dispatch(
        DispatchRequest::new("GET", url(addr, "/hold")),
        RequestController::new(),
        Blocking {
            ended: ended_tx,
            release: release_rx,
        },
    );
    ended
        .recv_timeout(LIMIT)
        .expect("the holding request ended");
    release
}

fn start_here(agent: &Agent, request: DispatchRequest) -> Events {
    let (handler, events) = Recorder::new();
    agent.dispatch_all_here([(request, RequestController::new(), handler)]);
    events
}

async fn one_worker() -> tokio::sync::MutexGuard<'static, ()> {
    set_worker_threads(1);
    WORKER.lock().await
}

/// Skips the events of connection `n` and of requests other than `line`; the first request `line` seen.
fn next_request(seen: &Receiver<Seen>, within: Duration) -> Option<Seen> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(Seen::Request(n, line)) if !line.contains("/hold") => {
                return Some(Seen::Request(n, line))
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_small_request_on_an_idle_connection_is_written_before_the_dispatch_returns() {
    let _worker = one_worker().await;
    let (addr, seen) = thread_server(keep_alive);
    let agent = agent();
    let release = hold_worker(&agent, addr);

    let events = start_here(
        &agent,
        DispatchRequest::new("POST", url(addr, "/here"))
            .body(RequestBody::Bytes(Bytes::from("a small body"))),
    );
    // The worker is still held: the request reached the server from this thread, on the pooled connection.
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(1, "POST /here HTTP/1.1".into()))
    );
    drop(release);
    let (head, body, _) = events.finish().await.ok();
    assert_eq!((head.status, body), (200, b"ok".to_vec()));

    // The connection went back to the pool, read by the runtime: the next request reuses it.
    let again = start_here(&agent, DispatchRequest::new("GET", url(addr, "/again")));
    assert_eq!(again.finish().await.ok().0.status, 200);
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(1, "GET /again HTTP/1.1".into()))
    );
}

#[tokio::test]
async fn a_request_without_an_idle_connection_is_left_to_the_runtime() {
    let _worker = one_worker().await;
    let (held, _) = thread_server(keep_alive);
    let (addr, seen) = thread_server(keep_alive);
    let agent = agent();
    let release = hold_worker(&agent, held);

    let events = start_here(&agent, DispatchRequest::new("GET", url(addr, "/fresh")));
    // Opening a connection is the runtime's work: nothing reaches the server while the worker is held.
    assert_eq!(seen.recv_timeout(Duration::from_millis(300)).ok(), None);
    drop(release);
    assert_eq!(events.finish().await.ok().0.status, 200);
    assert_eq!(seen.recv_timeout(LIMIT).ok(), Some(Seen::Connection(1)));
}

#[tokio::test]
async fn a_large_body_is_left_to_the_runtime() {
    let _worker = one_worker().await;
    let (addr, seen) = thread_server(keep_alive);
    let agent = agent();
    let release = hold_worker(&agent, addr);

    let body = Bytes::from(vec![b'x'; 64 * 1024]);
    let events = start_here(
        &agent,
        DispatchRequest::new("POST", url(addr, "/large")).body(RequestBody::Bytes(body)),
    );
    assert_eq!(next_request(&seen, Duration::from_millis(300)), None);
    drop(release);
    assert_eq!(events.finish().await.ok().0.status, 200);
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(1, "POST /large HTTP/1.1".into()))
    );
}

#[tokio::test]
async fn a_request_the_server_drops_unanswered_after_a_write_from_here_is_sent_again() {
    let _worker = one_worker().await;
    // The first connection answers the holding request, then closes when the next one comes.
    let (addr, seen) = thread_server(|n, stream, seen| {
        if n > 1 {
            keep_alive(n, stream, seen)
        } else {
            answer_once_then_drop(n, stream, seen)
        }
    });
    let agent = agent();
    let release = hold_worker(&agent, addr);

    let events = start_here(&agent, DispatchRequest::new("GET", url(addr, "/twice")));
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(1, "GET /twice HTTP/1.1".into()))
    );
    drop(release);
    // Nothing came back on the reused connection: the request goes again on a new one.
    let outcome = events.finish().await;
    assert_eq!(outcome.ok().0.status, 200);
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(2, "GET /twice HTTP/1.1".into()))
    );
}

#[tokio::test]
async fn a_request_written_here_fails_as_it_fails_on_the_runtime() {
    let _worker = one_worker().await;
    // Every connection answers one request, then closes unanswered when the next one comes: a POST (not
    // sent again) on the reused connection fails.
    let (addr, _seen) = thread_server(answer_once_then_drop);
    let post = || DispatchRequest::new("POST", url(addr, "/lost"));
    let agent = agent();

    let release = hold_worker(&agent, addr);
    let events = start_here(&agent, post());
    drop(release);
    let here = events.finish().await;

    // The same request through the runtime, on a connection reused the same way.
    drop(hold_worker(&agent, addr));
    let there = dispatch(&agent, post()).finish().await;

    let (here, there) = (here.err(), there.err());
    assert_eq!(
        here.kind,
        reqwest_dispatcher_core::ErrorKind::Socket,
        "{here:?}"
    );
    assert_eq!((&here.kind, &here.message), (&there.kind, &there.message));
}

#[tokio::test]
async fn a_request_on_an_idle_tls_connection_is_left_to_the_runtime() {
    let _worker = one_worker().await;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap(),
    );
    // The same keep-alive server, over TLS (rustls on the server's own thread).
    let (addr, seen) = thread_server(move |n, stream, seen| {
        let connection = rustls::ServerConnection::new(std::sync::Arc::clone(&config)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, stream);
        while let Some(line) = read_request(&mut tls) {
            let _ = seen.send(Seen::Request(n, line));
            if tls.write_all(OK).and_then(|()| tls.flush()).is_err() {
                return;
            }
        }
    });
    let agent = agent_with(reqwest_dispatcher_core::AgentOptions {
        tls: reqwest_dispatcher_core::TlsOptions {
            reject_unauthorized: false,
            ..Default::default()
        },
        ..Default::default()
    });
    let https = |path: &str| format!("https://{addr}{path}");
    let (ended_tx, ended) = channel();
    let (release, release_rx) = channel();
    agent.dispatch(
        DispatchRequest::new("GET", https("/hold")),
        RequestController::new(),
        Blocking {
            ended: ended_tx,
            release: release_rx,
        },
    );
    ended
        .recv_timeout(LIMIT)
        .expect("the holding request ended");

    let (handler, events) = Recorder::new();
    agent.dispatch_all_here([(
        DispatchRequest::new("GET", https("/tls")),
        RequestController::new(),
        handler,
    )]);
    // TLS is the runtime's work: nothing reaches the server while the worker is held.
    assert_eq!(next_request(&seen, Duration::from_millis(300)), None);
    drop(release);
    assert_eq!(events.finish().await.ok().0.status, 200);
    assert_eq!(
        next_request(&seen, LIMIT),
        Some(Seen::Request(1, "GET /tls HTTP/1.1".into()))
    );
}
