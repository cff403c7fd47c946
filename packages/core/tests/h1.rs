//! The HTTP/1.1 engine against raw servers on 127.0.0.1: what goes on the wire, how responses are read and
//! how connections are kept, reused and given up.

mod support;

use reqwest_dispatcher_core::{
    Agent, AgentEvent, AgentOptions, ConnectionEvent, DispatchRequest, ErrorKind,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A server that answers every request on a connection with `response`, counting connections.
async fn keep_alive_server(response: &'static [u8]) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let addr = raw_server(move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            while read_request_head(&mut stream).await.is_ok() {
                if stream.write_all(response).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, connections)
}

/// An agent whose connection events are collected.
fn observed_agent(options: AgentOptions) -> (Agent, Arc<Mutex<Vec<ConnectionEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let agent = Agent::with_observer(
        options,
        Arc::new(move |event| {
            if let AgentEvent::Connection(event) = event {
                seen.lock().unwrap().push(event);
            }
        }),
    )
    .unwrap();
    (agent, events)
}

async fn get(agent: &Agent, addr: std::net::SocketAddr) -> Outcome {
    dispatch(agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
}

#[tokio::test]
async fn the_request_head_has_host_first_keep_alive_and_the_callers_header_case_and_order() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            if let Ok(head) = read_request_head(&mut stream).await {
                let _ = tx.send(head);
                let _ = stream.write_all(OK).await;
                wait_for_close(&mut stream).await;
            }
        }
    })
    .await;
    let request = DispatchRequest::new("GET", url(addr, "/p?q=1"))
        .header("X-Custom-Header", "1")
        .header("accept", "*/*")
        .header("x-custom-header", "2");
    dispatch(&agent(), request).finish().await.ok();
    let head = String::from_utf8(rx.recv().await.unwrap()).unwrap();
    assert_eq!(
        head,
        format!(
            "GET /p?q=1 HTTP/1.1\r\nhost: {addr}\r\nconnection: keep-alive\r\nX-Custom-Header: 1\r\naccept: */*\r\nx-custom-header: 2\r\n\r\n"
        )
    );
}

#[tokio::test]
async fn a_response_with_a_thousand_headers_is_accepted() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..1000 {
        head.push_str(&format!("x-h{i}: {i}\r\n"));
    }
    head.push_str("content-length: 2\r\n\r\nok");
    let response: &'static [u8] = Box::leak(head.into_bytes().into_boxed_slice());
    let addr = raw_response(response).await;
    let (head, body, _) = get(&agent(), addr).await.ok();
    assert_eq!(head.headers.len(), 1001);
    assert_eq!(body, b"ok");
}

#[tokio::test]
async fn max_header_size_is_enforced_while_the_head_is_still_arriving() {
    // The head never ends: the limit has to be found before the end.
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = format!("x-big: {}\r\n", "a".repeat(1000));
            for _ in 0..100 {
                if stream.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            wait_for_close(&mut stream).await;
        }
    })
    .await;
    let agent = agent_with(AgentOptions {
        max_header_size: 8 * 1024,
        ..AgentOptions::default()
    });
    let outcome = get(&agent, addr).await;
    assert_eq!(outcome.err().kind, ErrorKind::HeadersOverflow);
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let (addr, connections) = keep_alive_server(OK).await;
    let agent = agent();
    for _ in 0..5 {
        assert_eq!(get(&agent, addr).await.ok().1, b"ok");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_keep_alive_hint_at_or_below_the_threshold_means_no_reuse() {
    let (addr, connections) = keep_alive_server(
        b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=2\r\ncontent-length: 2\r\n\r\nok",
    )
    .await;
    let agent = agent();
    for _ in 0..3 {
        get(&agent, addr).await.ok();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn head_requests_and_connection_close_are_not_reused() {
    let (addr, connections) =
        keep_alive_server(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            .await;
    let agent = agent();
    get(&agent, addr).await.ok();
    get(&agent, addr).await.ok();
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    let (addr, connections) =
        keep_alive_server(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n").await;
    for _ in 0..2 {
        dispatch(&agent, DispatchRequest::new("HEAD", url(addr, "/")))
            .finish()
            .await
            .ok();
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_server_closing_an_idle_connection_is_noticed_at_once() {
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream.write_all(OK).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Dropping the stream closes it while the client holds it idle.
        }
    })
    .await;
    let (agent, events) = observed_agent(AgentOptions::default());
    get(&agent, addr).await.ok();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let disconnected = events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Disconnected { .. }));
        if disconnected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no disconnect seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn idle_connections_close_after_keep_alive_timeout() {
    let (addr, _) = keep_alive_server(OK).await;
    let (agent, events) = observed_agent(AgentOptions {
        keep_alive_timeout: Duration::from_millis(150),
        ..AgentOptions::default()
    });
    get(&agent, addr).await.ok();
    let idle = tokio::time::Instant::now();
    loop {
        if events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Disconnected { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_request_on_a_connection_closed_as_it_was_reused_is_sent_again_on_a_new_one() {
    // The first connection answers once, then closes as soon as the next request arrives, unanswered:
    // the request was not processed, and goes out again on a new connection.
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let addr = raw_server(move |mut stream| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if read_request_head(&mut stream).await.is_err() {
                return;
            }
            let _ = stream.write_all(OK).await;
            if first {
                let _ = read_request_head(&mut stream).await;
                return;
            }
            while read_request_head(&mut stream).await.is_ok() {
                let _ = stream.write_all(OK).await;
            }
        }
    })
    .await;
    let agent = agent();
    get(&agent, addr).await.ok();
    assert_eq!(get(&agent, addr).await.ok().1, b"ok");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_framing_fails_with_undicis_errors() {
    let cases: [(&'static [u8], ErrorKind, &str); 4] = [
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ErrorKind::ResponseContentLengthMismatch,
            "Response body length does not match content-length header",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
            ErrorKind::HttpParser("HPE_INVALID_CHUNK_SIZE"),
            "Response does not match the HTTP/1.1 protocol (Invalid character in chunk size)",
        ),
        (
            b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok",
            ErrorKind::HttpParser("HPE_CR_EXPECTED"),
            "Response does not match the HTTP/1.1 protocol (Missing expected CR after response line)",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            ErrorKind::Socket,
            "bad upgrade",
        ),
    ];
    for (response, kind, message) in cases {
        let addr = raw_response(response).await;
        let outcome = get(&agent(), addr).await;
        assert_eq!(outcome.err().kind, kind);
        assert_eq!(outcome.err().message, message);
    }
}

#[tokio::test]
async fn a_truncated_body_is_an_error_never_a_short_success() {
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
                .await;
        }
    })
    .await;
    let outcome = get(&agent(), addr).await;
    assert_eq!(outcome.err().kind, ErrorKind::Socket);
    assert_eq!(outcome.err().message, "other side closed");
    // The connection's counters go with the error, as undici's SocketError has them.
    let counters = outcome.err().socket.expect("socket counters");
    let head = format!("GET / HTTP/1.1\r\nhost: {addr}\r\nconnection: keep-alive\r\n\r\n");
    assert_eq!(counters.bytes_written, head.len() as u64);
    assert_eq!(
        counters.bytes_read,
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort".len() as u64
    );
}

#[tokio::test]
async fn a_flood_of_informational_responses_is_skipped_as_undici_skips_it() {
    let mut text = String::new();
    for _ in 0..1000 {
        text.push_str("HTTP/1.1 102 Processing\r\n\r\n");
    }
    text.push_str("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let response: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
    let addr = raw_response(response).await;
    let (head, body, _) = get(&agent(), addr).await.ok();
    assert_eq!(head.status, 200);
    assert_eq!(body, b"ok");
}

/// A server that reports every byte it receives on `bytes`, and answers each request head with [`OK`].
async fn byte_counting_server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut buffer = [0u8; 4096];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let _ = tx.send(n);
                        if buffer[..n].windows(4).any(|w| w == b"\r\n\r\n")
                            && stream.write_all(OK).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await;
    (addr, rx)
}

/// A gated request whose announcements are counted.
fn gated(method: &str, addr: std::net::SocketAddr) -> (DispatchRequest, Arc<AtomicUsize>) {
    let announced = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&announced);
    let mut request = DispatchRequest::new(method, url(addr, "/"));
    request.gate = Some(Box::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    (request, announced)
}

async fn until_announced(announced: &AtomicUsize) {
    for _ in 0..500 {
        if announced.load(Ordering::SeqCst) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the gated request was never announced");
}

#[tokio::test]
async fn a_gated_request_is_announced_once_connected_and_written_only_once_let_through() {
    let (addr, mut bytes) = byte_counting_server().await;
    let agent = agent();
    let (request, announced) = gated("GET", addr);
    let controller = reqwest_dispatcher_core::RequestController::new();
    let events = dispatch_with(&agent, request, controller.clone());
    until_announced(&announced).await;
    // Connected and announced: nothing written yet.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(bytes.try_recv().is_err());
    controller.open_gate();
    let (head, body, _) = events.finish().await.ok();
    assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(announced.load(Ordering::SeqCst), 1);
    assert!(bytes.try_recv().is_ok());
}

#[tokio::test]
async fn a_gated_request_aborted_when_announced_writes_nothing() {
    let (addr, mut bytes) = byte_counting_server().await;
    let (agent, connections) = observed_agent(AgentOptions::default());
    let (mut request, announced) = gated("POST", addr);
    request = request.body(reqwest_dispatcher_core::RequestBody::Bytes(
        bytes::Bytes::from_static(b"payload"),
    ));
    let controller = reqwest_dispatcher_core::RequestController::new();
    let _events = dispatch_with(&agent, request, controller.clone());
    until_announced(&announced).await;
    controller.abort();
    // The unwritten connection closes.
    for _ in 0..200 {
        if connections
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ConnectionEvent::Disconnected { .. }))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(connections
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Disconnected { .. })));
    assert!(bytes.try_recv().is_err());
}

#[tokio::test]
async fn a_gated_request_that_cannot_connect_fails_unannounced() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (request, announced) = gated("GET", addr);
    let outcome = dispatch(&agent(), request).finish().await;
    assert_eq!(outcome.err().kind, ErrorKind::Os("ECONNREFUSED"));
    assert_eq!(announced.load(Ordering::SeqCst), 0);
}
