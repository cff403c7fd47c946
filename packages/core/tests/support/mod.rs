//! Test helpers: a handler that records every event into a channel, and local servers on 127.0.0.1
//! (hyper for well-formed HTTP, raw TCP where the test needs exact bytes on the wire).

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest_dispatcher_core::{
    Agent, AgentOptions, BodyChunk, BodyPull, CoreError, DispatchHandler, DispatchRequest,
    RawHeaders, RequestController, ResponseHead,
};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest any single wait in a test may take before the test fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(5);

/// One thing the core reported to the handler.
#[derive(Debug)]
pub enum Event {
    Start(ResponseHead),
    Data(Bytes),
    End(RawHeaders),
    Error(CoreError),
    Retry(u32),
    /// The connection switched protocols.
    Upgrade(ResponseHead),
    /// The server ended its direction of an upgraded connection.
    ReadEnd,
    /// A write onto an upgraded connection completed.
    Written,
}

/// A handler that forwards every event to the test. Dropping it (which the core does once the request is over)
/// closes the channel, so the test can tell "no more events" from "not yet".
pub struct Recorder {
    tx: mpsc::UnboundedSender<Event>,
}

impl Recorder {
    pub fn new() -> (Recorder, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, Events { rx })
    }

    fn record(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

impl DispatchHandler for Recorder {
    fn on_response_start(&mut self, head: ResponseHead) {
        self.record(Event::Start(head));
    }
    fn on_response_data(&mut self, chunk: Bytes) {
        self.record(Event::Data(chunk));
    }
    fn on_response_end(&mut self, trailers: RawHeaders) {
        self.record(Event::End(trailers));
    }
    fn on_error(&mut self, error: CoreError) {
        self.record(Event::Error(error));
    }
    fn on_retry(&mut self, retry: u32) {
        self.record(Event::Retry(retry));
    }
    fn on_upgrade(&mut self, head: ResponseHead) {
        self.record(Event::Upgrade(head));
    }
    fn on_upgrade_read_end(&mut self) {
        self.record(Event::ReadEnd);
    }
    fn on_upgrade_written(&mut self) {
        self.record(Event::Written);
    }
}

/// The test's end of a [`Recorder`].
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event, or `None` once the handler was dropped. Fails the test after `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event and handler not dropped within {limit:?}"))
    }

    pub async fn next(&mut self) -> Option<Event> {
        self.next_within(LIMIT).await
    }

    /// The response head; fails the test if anything else comes first.
    pub async fn head(&mut self) -> ResponseHead {
        match self.next().await {
            Some(Event::Start(head)) => head,
            other => panic!("expected the response head, got {other:?}"),
        }
    }

    /// An event that is already queued, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Every remaining event up to the handler being dropped, checked for the handler contract.
    pub async fn finish_within(self, limit: Duration) -> Outcome {
        Outcome::from_events(self.collect_within(limit).await)
    }

    async fn collect_within(mut self, limit: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(_) => {
                    panic!("request did not finish within {limit:?}; events so far: {events:?}")
                }
            }
        }
        events
    }

    pub async fn finish(self) -> Outcome {
        self.finish_within(LIMIT).await
    }

    /// The rest of a request whose switch (`on_upgrade`) the test already took.
    pub async fn finish_upgraded(self) -> Outcome {
        let mut events = vec![Event::Upgrade(ResponseHead {
            status: 101,
            status_text: Bytes::new(),
            headers: RawHeaders::new(),
            version: http::Version::HTTP_11,
            remote_addr: None,
            local_addr: None,
        })];
        events.extend(self.collect_within(LIMIT).await);
        Outcome::from_events(events)
    }
}

/// What a request ended with, built from its events.
#[derive(Debug, Default)]
pub struct Outcome {
    pub head: Option<ResponseHead>,
    pub body: Vec<u8>,
    pub data_events: usize,
    pub trailers: Option<RawHeaders>,
    pub error: Option<CoreError>,
    /// The request ended without any event at all (the handler was dropped silently).
    pub silent: bool,
    /// Retries announced, in order; all before the response head.
    pub retries: Vec<u32>,
    /// The head was a switch of protocols (`on_upgrade`); `body` holds the upgraded connection's bytes.
    pub upgraded: bool,
    /// The server ended its direction of the upgraded connection.
    pub read_end: bool,
    /// Writes completed on the upgraded connection.
    pub written: usize,
}

impl Outcome {
    /// Checks the order the handler contract promises: optional head, data only after the head, exactly one
    /// of end/error, nothing after it.
    fn from_events(events: Vec<Event>) -> Outcome {
        let mut outcome = Outcome {
            silent: events.is_empty(),
            ..Outcome::default()
        };
        let mut ended = false;
        for event in events {
            assert!(!ended, "event after the request ended: {event:?}");
            match event {
                Event::Start(head) => {
                    assert!(outcome.head.is_none(), "second response head");
                    outcome.head = Some(head);
                }
                Event::Data(chunk) => {
                    assert!(outcome.head.is_some(), "data before the response head");
                    assert!(!chunk.is_empty(), "empty data chunk delivered");
                    assert!(!outcome.read_end, "data after the read end");
                    outcome.body.extend_from_slice(&chunk);
                    outcome.data_events += 1;
                }
                Event::End(trailers) => {
                    assert!(outcome.head.is_some(), "end without a response head");
                    outcome.trailers = Some(trailers);
                    ended = true;
                }
                Event::Error(error) => {
                    outcome.error = Some(error);
                    ended = true;
                }
                Event::Retry(n) => {
                    assert!(outcome.head.is_none(), "retry after the response head");
                    outcome.retries.push(n);
                }
                Event::Upgrade(head) => {
                    assert!(outcome.head.is_none(), "second response head");
                    outcome.head = Some(head);
                    outcome.upgraded = true;
                }
                Event::ReadEnd => {
                    assert!(outcome.upgraded, "read end without an upgrade");
                    assert!(!outcome.read_end, "second read end");
                    outcome.read_end = true;
                }
                Event::Written => {
                    assert!(outcome.upgraded, "write completed without an upgrade");
                    outcome.written += 1;
                }
            }
        }
        outcome
    }

    /// The response of a request that must have succeeded.
    pub fn ok(self) -> (ResponseHead, Vec<u8>, RawHeaders) {
        match (self.head, self.trailers, self.error) {
            (Some(head), Some(trailers), None) => (head, self.body, trailers),
            (head, _, error) => {
                panic!("expected a complete response, got head {head:?}, error {error:?}")
            }
        }
    }

    /// The error of a request that must have failed.
    pub fn err(&self) -> &CoreError {
        match &self.error {
            Some(error) => error,
            None => panic!(
                "expected an error, got head {:?} and {} body bytes",
                self.head,
                self.body.len()
            ),
        }
    }
}

pub fn agent() -> Agent {
    agent_with(AgentOptions::default())
}

pub fn agent_with(options: AgentOptions) -> Agent {
    Agent::new(options).expect("agent")
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Dispatches `request` with a fresh controller and a recording handler.
pub fn dispatch(agent: &Agent, request: DispatchRequest) -> Events {
    dispatch_with(agent, request, RequestController::new())
}

pub fn dispatch_with(
    agent: &Agent,
    request: DispatchRequest,
    controller: RequestController,
) -> Events {
    let (handler, events) = Recorder::new();
    agent.dispatch(request, controller, handler);
    events
}

/// A pulled request body that answers each demand of the core with the next of `chunks`, asynchronously
/// (from a task of the test's runtime), as the JavaScript side does. The counter tells how many times the
/// core asked for a chunk.
pub fn pulled_body(length: Option<u64>, chunks: Vec<BodyChunk>) -> (BodyPull, Arc<AtomicUsize>) {
    let demands = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&demands);
    let (demand_tx, mut demand_rx) = mpsc::unbounded_channel::<()>();
    let (sender, pull) = BodyPull::channel(length, move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let _ = demand_tx.send(());
    });
    tokio::spawn(async move {
        let mut chunks = chunks.into_iter();
        while demand_rx.recv().await.is_some() {
            // A demand after the last chunk goes unanswered; the counter shows it.
            if let Some(chunk) = chunks.next() {
                sender.send(chunk);
            }
        }
    });
    (pull, demands)
}

/// An HTTP/1.1 hyper server on 127.0.0.1 answering every request with `respond`.
pub async fn hyper_server<F, Fut>(respond: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let respond = respond.clone();
                    async move { Ok::<_, Infallible>(respond(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A TCP server on 127.0.0.1 handing every accepted connection to `serve`.
pub async fn raw_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// A raw server that reads each request head and answers with exactly `response`, then waits for the client
/// to close the connection.
pub async fn raw_response(response: &'static [u8]) -> SocketAddr {
    raw_server(move |mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream.write_all(response).await;
            wait_for_close(&mut stream).await;
        }
    })
    .await
}

/// Reads a request head (up to the blank line); the requests these servers get have no body.
pub async fn read_request_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// Returns once the peer closed (or reset) the connection.
pub async fn wait_for_close(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Byte `i` of the large test bodies: a period (251) prime to every buffer size, so a lost, repeated or
/// reordered chunk shows up.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `len` bytes of the pattern starting at `offset`.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(offset + i)).collect()
}

/// Whether `data` is the pattern at `offset`.
pub fn is_pattern(offset: u64, data: &[u8]) -> bool {
    data.iter()
        .enumerate()
        .all(|(i, &b)| b == pattern_byte(offset + i as u64))
}
