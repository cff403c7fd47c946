//! The core against real servers on 127.0.0.1: what a handler hears for each kind of exchange and failure.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use reqwest_dispatcher_core::{
    AgentOptions, BodyChunk, CoreError, DispatchHandler, DispatchRequest, ErrorKind, RawHeaders,
    RequestBody, RequestController, ResponseHead,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// A hyper server that answers with the request's method, path, framing headers and `x-*` headers as
/// `x-echo-*` response headers, and the request body as the response body.
async fn echo_server() -> std::net::SocketAddr {
    hyper_server(|req: hyper::Request<hyper::body::Incoming>| async move {
        let (parts, body) = req.into_parts();
        let mut response = Response::builder()
            .header("x-echo-method", parts.method.as_str())
            .header("x-echo-path", parts.uri.to_string());
        for name in ["content-length", "transfer-encoding"] {
            if let Some(value) = parts.headers.get(name) {
                response = response.header(format!("x-echo-{name}"), value);
            }
        }
        for (name, value) in &parts.headers {
            if name.as_str().starts_with("x-") {
                response = response.header(format!("x-echo-{name}"), value);
            }
        }
        let body = body.collect().await.unwrap().to_bytes();
        response.body(Full::new(body)).unwrap()
    })
    .await
}

fn header<'a>(headers: &'a RawHeaders, name: &str) -> &'a str {
    let value = headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {headers:?}"));
    std::str::from_utf8(value).unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// Successful exchanges
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_reports_status_headers_and_body() {
    let addr = hyper_server(|req: hyper::Request<hyper::body::Incoming>| async move {
        Response::builder()
            .status(200)
            .header("x-served-path", req.uri().to_string())
            .body(Full::new(Bytes::from_static(b"hello world")))
            .unwrap()
    })
    .await;

    let events = dispatch(
        &agent(),
        DispatchRequest::new("GET", url(addr, "/greet?name=core")),
    );
    let (head, body, trailers) = events.finish().await.ok();

    assert_eq!(head.status, 200);
    assert_eq!(&head.status_text[..], b"OK");
    assert_eq!(header(&head.headers, "x-served-path"), "/greet?name=core");
    assert_eq!(header(&head.headers, "content-length"), "11");
    assert_eq!(body, b"hello world");
    assert!(trailers.is_empty());
}

async fn assert_bytes_body_echoes(method: &str) {
    let addr = echo_server().await;
    let payload = Bytes::from(format!("{method} payload \u{1F600} with some bytes"));
    let request = DispatchRequest::new(method, url(addr, "/echo"))
        .header("content-type", "text/plain")
        .body(RequestBody::Bytes(payload.clone()));

    let (head, body, _) = dispatch(&agent(), request).finish().await.ok();

    assert_eq!(head.status, 200);
    assert_eq!(header(&head.headers, "x-echo-method"), method);
    assert_eq!(
        header(&head.headers, "x-echo-content-length"),
        payload.len().to_string()
    );
    assert_eq!(body, payload);
}

#[tokio::test]
async fn post_sends_a_bytes_body_with_its_content_length() {
    assert_bytes_body_echoes("POST").await;
}

#[tokio::test]
async fn put_sends_a_bytes_body_with_its_content_length() {
    assert_bytes_body_echoes("PUT").await;
}

#[tokio::test]
async fn delete_sends_a_bytes_body_with_its_content_length() {
    assert_bytes_body_echoes("DELETE").await;
}

#[tokio::test]
async fn head_response_has_headers_but_no_body() {
    // hyper answers HEAD with the content-length the GET body would have, and no body bytes.
    let addr = hyper_server(|_req| async {
        Response::new(Full::new(Bytes::from_static(
            b"a body that HEAD must not read",
        )))
    })
    .await;

    let outcome = dispatch(&agent(), DispatchRequest::new("HEAD", url(addr, "/")))
        .finish()
        .await;
    assert_eq!(outcome.data_events, 0);
    let (head, body, _) = outcome.ok();

    assert_eq!(head.status, 200);
    assert_eq!(header(&head.headers, "content-length"), "30");
    assert!(body.is_empty());
}

#[tokio::test]
async fn repeated_request_headers_are_all_sent() {
    let addr = echo_server().await;
    let request = DispatchRequest::new("GET", url(addr, "/"))
        .header("x-multi", "first")
        .header("x-multi", "second");

    let (head, _, _) = dispatch(&agent(), request).finish().await.ok();

    let values: Vec<_> = head.headers.get_all("x-echo-x-multi").collect();
    assert_eq!(values, [&b"first"[..], b"second"]);
}

#[tokio::test]
async fn repeated_response_headers_all_arrive_in_order() {
    let addr = raw_response(
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nContent-Length: 0\r\nSet-Cookie: b=2\r\n\r\n",
    )
    .await;

    let (head, _, _) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();

    let cookies: Vec<_> = head.headers.get_all("set-cookie").collect();
    assert_eq!(cookies, [&b"a=1; Path=/"[..], b"b=2"]);
}

#[tokio::test]
async fn response_header_names_keep_the_servers_case_and_order() {
    let addr =
        raw_response(b"HTTP/1.1 200 OK\r\nX-Mixed-CASE: Value\r\nCONTENT-LENGTH: 0\r\n\r\n").await;

    let (head, _, _) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();

    let names: Vec<_> = head.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(names, [&b"X-Mixed-CASE"[..], b"CONTENT-LENGTH"]);
    // Values keep their case.
    assert_eq!(header(&head.headers, "x-mixed-case"), "Value");
}

#[tokio::test]
async fn non_canonical_reason_phrase_arrives_as_sent() {
    let addr = raw_response(b"HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n").await;

    let (head, _, _) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();

    assert_eq!(head.status, 200);
    assert_eq!(&head.status_text[..], b"Fine");
}

#[tokio::test]
async fn canonical_reason_phrase_is_reported_for_a_canonical_status_line() {
    let addr = raw_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;

    let (head, _, _) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();

    assert_eq!(head.status, 404);
    assert_eq!(&head.status_text[..], b"Not Found");
}

#[tokio::test]
async fn chunked_response_trailers_reach_the_end_event() {
    let addr = raw_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum, x-other\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nx-other: 1\r\n\r\n",
    )
    .await;

    let (_, body, trailers) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();

    assert_eq!(body, b"hello world");
    assert_eq!(header(&trailers, "x-checksum"), "abc123");
    assert_eq!(header(&trailers, "x-other"), "1");
    assert_eq!(trailers.len(), 2);
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let addr = hyper_server(move |_req| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .status(302)
                .header("location", "/elsewhere")
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;

    let (head, _, _) = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/start")))
        .finish()
        .await
        .ok();

    assert_eq!(head.status, 302);
    assert_eq!(header(&head.headers, "location"), "/elsewhere");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn connection_refused_fails_with_econnrefused() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is dropped: nothing listens on `addr` any more.

    let outcome = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err().kind, ErrorKind::Os("ECONNREFUSED"));
    assert_eq!(outcome.err().code(), "ECONNREFUSED");
}

#[tokio::test]
async fn silent_server_fails_with_headers_timeout() {
    let addr = raw_server(|mut stream| async move {
        // Read the request and never answer.
        wait_for_close(&mut stream).await;
    })
    .await;
    let mut request = DispatchRequest::new("GET", url(addr, "/"));
    request.headers_timeout = Some(Some(Duration::from_millis(200)));

    let started = Instant::now();
    let outcome = dispatch(&agent(), request).finish().await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err().kind, ErrorKind::HeadersTimeout);
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "timed out early: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_stalling_after_the_head_fails_with_body_timeout() {
    let addr = raw_response(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst").await;
    let mut request = DispatchRequest::new("GET", url(addr, "/"));
    request.body_timeout = Some(Some(Duration::from_millis(200)));

    let outcome = dispatch(&agent(), request).finish().await;

    assert_eq!(outcome.head.as_ref().map(|h| h.status), Some(200));
    assert_eq!(outcome.body, b"first");
    assert_eq!(outcome.err().kind, ErrorKind::BodyTimeout);
}

#[tokio::test]
async fn agent_body_timeout_applies_when_the_request_sets_none() {
    let addr = raw_response(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").await;
    let agent = agent_with(AgentOptions {
        body_timeout: Some(Duration::from_millis(200)),
        ..AgentOptions::default()
    });

    let outcome = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert_eq!(outcome.err().kind, ErrorKind::BodyTimeout);
}

#[tokio::test]
async fn an_unsolicited_101_fails_the_request_as_undici_does() {
    let addr = raw_response(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    )
    .await;

    let outcome = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert!(
        outcome.head.is_none(),
        "a 101 is no response to a plain GET"
    );
    assert_eq!(outcome.err().kind, ErrorKind::Socket);
    assert_eq!(outcome.err().message, "bad upgrade");
}

#[tokio::test]
async fn a_reset_mid_body_fails_with_econnreset_as_undici_does() {
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // A zero linger time makes the close a reset (RST), not a FIN.
            let _ = stream.set_zero_linger();
        }
    })
    .await;

    let outcome = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert_eq!(outcome.head.as_ref().map(|h| h.status), Some(200));
    assert_eq!(outcome.err().code(), "ECONNRESET");
    assert_eq!(outcome.err().message, "read ECONNRESET");
}

#[tokio::test]
async fn server_closing_mid_body_fails_with_socket_error() {
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly twenty bytes...")
                .await;
            // Dropping the stream closes the connection 80 bytes short.
        }
    })
    .await;

    let outcome = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert_eq!(outcome.head.as_ref().map(|h| h.status), Some(200));
    assert!(
        outcome.trailers.is_none(),
        "a truncated body must not end normally"
    );
    assert_eq!(outcome.err().kind, ErrorKind::Socket);
    assert_eq!(outcome.err().code(), "UND_ERR_SOCKET");
}

#[tokio::test]
async fn body_with_content_length_over_max_response_size_fails_without_delivering_the_excess() {
    let addr =
        hyper_server(|_req| async { Response::new(Full::new(Bytes::from(vec![b'x'; 1000]))) })
            .await;
    let agent = agent_with(AgentOptions {
        max_response_size: Some(100),
        ..AgentOptions::default()
    });

    let outcome = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert_eq!(outcome.err().kind, ErrorKind::ResponseExceededMaxSize);
    assert_eq!(outcome.err().code(), "UND_ERR_RES_EXCEEDED_MAX_SIZE");
    assert!(
        outcome.body.len() <= 100,
        "{} bytes delivered",
        outcome.body.len()
    );
}

#[tokio::test]
async fn streamed_body_over_max_response_size_fails_without_delivering_the_excess() {
    // Chunked, so the size is only known while reading: 10 chunks of 50 bytes against a 120 byte limit.
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            for _ in 0..10 {
                let chunk = format!("32\r\n{}\r\n", "y".repeat(50));
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            wait_for_close(&mut stream).await;
        }
    })
    .await;
    let agent = agent_with(AgentOptions {
        max_response_size: Some(120),
        ..AgentOptions::default()
    });

    let outcome = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert_eq!(outcome.head.as_ref().map(|h| h.status), Some(200));
    assert_eq!(outcome.err().kind, ErrorKind::ResponseExceededMaxSize);
    assert!(
        outcome.body.len() <= 120,
        "{} bytes delivered",
        outcome.body.len()
    );
}

#[tokio::test]
async fn response_headers_over_max_header_size_fail_with_headers_overflow() {
    let addr = hyper_server(|_req| async {
        Response::builder()
            .header("x-big", "v".repeat(2048))
            .body(Full::new(Bytes::new()))
            .unwrap()
    })
    .await;
    let agent = agent_with(AgentOptions {
        max_header_size: 1024,
        ..AgentOptions::default()
    });

    let outcome = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err().kind, ErrorKind::HeadersOverflow);
}

#[tokio::test]
async fn invalid_url_fails_with_invalid_argument() {
    let outcome = dispatch(&agent(), DispatchRequest::new("GET", "not a url"))
        .finish()
        .await;

    assert_eq!(outcome.err().kind, ErrorKind::InvalidArgument);
}

// ---------------------------------------------------------------------------------------------------------
// Abort
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn abort_while_waiting_for_headers_is_silent_and_closes_the_connection() {
    let (received_tx, received_rx) = oneshot::channel::<()>();
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let slots = Arc::new(std::sync::Mutex::new(Some((received_tx, closed_tx))));
    let addr = raw_server(move |mut stream| {
        let slots = Arc::clone(&slots);
        async move {
            let Some((received, closed)) = slots.lock().unwrap().take() else {
                return;
            };
            if read_request_head(&mut stream).await.is_ok() {
                let _ = received.send(());
                wait_for_close(&mut stream).await;
                let _ = closed.send(());
            }
        }
    })
    .await;
    let controller = RequestController::new();

    let events = dispatch_with(
        &agent(),
        DispatchRequest::new("GET", url(addr, "/")),
        controller.clone(),
    );
    tokio::time::timeout(LIMIT, received_rx)
        .await
        .unwrap()
        .unwrap();
    controller.abort();

    tokio::time::timeout(LIMIT, closed_rx)
        .await
        .expect("the server did not see the connection close after abort")
        .unwrap();
    let outcome = events.finish().await;
    assert!(
        outcome.silent,
        "handler heard something after abort: {outcome:?}"
    );
}

#[tokio::test]
async fn abort_mid_body_is_silent_and_closes_the_connection() {
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    let addr = raw_server(move |mut stream| {
        let closed_tx = Arc::clone(&closed_tx);
        async move {
            if read_request_head(&mut stream).await.is_ok() {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstart")
                    .await;
                wait_for_close(&mut stream).await;
                if let Some(tx) = closed_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
        }
    })
    .await;
    let controller = RequestController::new();
    let mut events = dispatch_with(
        &agent(),
        DispatchRequest::new("GET", url(addr, "/")),
        controller.clone(),
    );

    assert_eq!(events.head().await.status, 200);
    match events.next().await {
        Some(Event::Data(chunk)) => assert_eq!(&chunk[..], b"start"),
        other => panic!("expected the first body bytes, got {other:?}"),
    }
    controller.abort();

    tokio::time::timeout(LIMIT, closed_rx)
        .await
        .expect("the server did not see the connection close after abort")
        .unwrap();
    let outcome = events.finish().await;
    assert!(
        outcome.silent,
        "handler heard something after abort: {outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------------------

const LARGE_BODY: u64 = 64 * 1024 * 1024;

/// A raw server sending a `LARGE_BODY` byte pattern body, counting the bytes its socket accepted.
async fn large_body_server(written: Arc<AtomicU64>) -> std::net::SocketAddr {
    raw_server(move |mut stream| {
        let written = Arc::clone(&written);
        async move {
            if read_request_head(&mut stream).await.is_err() {
                return;
            }
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE_BODY}\r\n\r\n");
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            const CHUNK: usize = 64 * 1024;
            // One chunk plus a period of the pattern, so every chunk is a slice of it.
            let source = pattern(0, CHUNK + 251);
            let mut offset = 0u64;
            while offset < LARGE_BODY {
                let start = (offset % 251) as usize;
                let len = CHUNK.min((LARGE_BODY - offset) as usize);
                if stream.write_all(&source[start..start + len]).await.is_err() {
                    return;
                }
                offset += len as u64;
                written.store(offset, Ordering::SeqCst);
            }
            wait_for_close(&mut stream).await;
        }
    })
    .await
}

/// Waits until `written` stops growing for 300 ms (the server is blocked) and returns its value.
async fn until_writes_stall(written: &AtomicU64) -> u64 {
    let deadline = Instant::now() + LIMIT;
    let mut last = written.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last && now > 0 {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "server writes never stalled ({now} bytes written)"
        );
        last = now;
    }
}

/// Receives body events until the response ends, checking every byte against the pattern.
async fn receive_pattern_body(
    events: &mut Events,
    mut offset: u64,
    on_chunk: impl Fn(usize),
) -> u64 {
    loop {
        match events.next_within(Duration::from_secs(60)).await {
            Some(Event::Data(chunk)) => {
                assert!(
                    is_pattern(offset, &chunk),
                    "body corrupted at offset {offset}"
                );
                offset += chunk.len() as u64;
                on_chunk(chunk.len());
            }
            Some(Event::End(_)) => return offset,
            other => panic!("expected body data or end at offset {offset}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_request_blocks_server_writes_and_resume_completes_the_body() {
    let written = Arc::new(AtomicU64::new(0));
    let addr = large_body_server(Arc::clone(&written)).await;
    let controller = RequestController::new();
    controller.pause();

    let mut events = dispatch_with(
        &agent(),
        DispatchRequest::new("GET", url(addr, "/large")),
        controller.clone(),
    );
    assert_eq!(events.head().await.status, 200);

    let stalled_at = until_writes_stall(&written).await;
    assert!(
        stalled_at < LARGE_BODY / 4,
        "server wrote {stalled_at} of {LARGE_BODY} bytes while paused"
    );
    assert!(events.try_next().is_none(), "data delivered while paused");

    controller.resume();
    let received = receive_pattern_body(&mut events, 0, |_| {}).await;

    assert_eq!(received, LARGE_BODY);
    assert_eq!(written.load(Ordering::SeqCst), LARGE_BODY);
    assert!(events.finish().await.silent, "events after the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_credit_blocks_server_writes_until_released() {
    const CREDIT: usize = 256 * 1024;
    let written = Arc::new(AtomicU64::new(0));
    let addr = large_body_server(Arc::clone(&written)).await;
    let controller = RequestController::with_credit(CREDIT);

    let mut events = dispatch_with(
        &agent(),
        DispatchRequest::new("GET", url(addr, "/large")),
        controller.clone(),
    );
    assert_eq!(events.head().await.status, 200);

    let stalled_at = until_writes_stall(&written).await;
    assert!(
        stalled_at < LARGE_BODY / 4,
        "server wrote {stalled_at} of {LARGE_BODY} bytes without credit"
    );
    // Nothing was released: the core read until the credit was used up, then stopped.
    let mut delivered = 0u64;
    while let Some(event) = events.try_next() {
        match event {
            Event::Data(chunk) => {
                assert!(is_pattern(delivered, &chunk));
                delivered += chunk.len() as u64;
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(
        delivered >= CREDIT as u64,
        "stopped early at {delivered} bytes"
    );
    assert!(
        delivered < LARGE_BODY / 4,
        "credit ignored: {delivered} bytes delivered"
    );

    controller.release(delivered as usize);
    let releaser = controller.clone();
    let received = receive_pattern_body(&mut events, delivered, move |n| releaser.release(n)).await;

    assert_eq!(received, LARGE_BODY);
}

// ---------------------------------------------------------------------------------------------------------
// Pulled request bodies
// ---------------------------------------------------------------------------------------------------------

fn pulled_body_only(
    length: Option<u64>,
    chunks: Vec<BodyChunk>,
) -> reqwest_dispatcher_core::BodyPull {
    pulled_body(length, chunks).0
}

#[tokio::test]
async fn pulled_body_of_unknown_length_is_sent_chunked_and_arrives_intact() {
    let addr = echo_server().await;
    let parts: Vec<&[u8]> = vec![b"first chunk, ", b"", b"second chunk, ", b"third and last"];
    let chunks = parts
        .iter()
        .map(|p| BodyChunk::Data(Bytes::from_static(p)))
        .chain([BodyChunk::End])
        .collect();
    let request = DispatchRequest::new("POST", url(addr, "/upload"))
        .body(RequestBody::Pull(pulled_body_only(None, chunks)));

    let (head, body, _) = dispatch(&agent(), request).finish().await.ok();

    assert_eq!(header(&head.headers, "x-echo-transfer-encoding"), "chunked");
    assert!(head.headers.get("x-echo-content-length").is_none());
    assert_eq!(body, parts.concat());
}

#[tokio::test]
async fn pulled_body_is_asked_once_per_chunk_and_never_after_its_end() {
    let addr = echo_server().await;
    let chunks = vec![
        BodyChunk::Data(Bytes::from_static(b"a")),
        BodyChunk::Data(Bytes::from_static(b"b")),
        BodyChunk::Data(Bytes::from_static(b"c")),
        BodyChunk::End,
    ];
    let (pull, demands) = pulled_body(None, chunks);
    let request = DispatchRequest::new("POST", url(addr, "/upload")).body(RequestBody::Pull(pull));

    let (_, body, _) = dispatch(&agent(), request).finish().await.ok();

    assert_eq!(body, b"abc");
    assert_eq!(demands.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn pulled_body_of_known_length_is_sent_with_content_length() {
    let addr = echo_server().await;
    let chunks = vec![
        BodyChunk::Data(Bytes::from_static(b"0123")),
        BodyChunk::Data(Bytes::from_static(b"456789")),
        BodyChunk::End,
    ];
    let request = DispatchRequest::new("PUT", url(addr, "/upload"))
        .body(RequestBody::Pull(pulled_body_only(Some(10), chunks)));

    let (head, body, _) = dispatch(&agent(), request).finish().await.ok();

    assert_eq!(header(&head.headers, "x-echo-content-length"), "10");
    assert!(head.headers.get("x-echo-transfer-encoding").is_none());
    assert_eq!(body, b"0123456789");
}

#[tokio::test]
async fn pulled_body_shorter_than_its_length_fails_with_request_content_length_mismatch() {
    let addr = echo_server().await;
    let chunks = vec![
        BodyChunk::Data(Bytes::from_static(b"12345")),
        BodyChunk::End,
    ];
    let request = DispatchRequest::new("POST", url(addr, "/upload"))
        .body(RequestBody::Pull(pulled_body_only(Some(10), chunks)));

    let outcome = dispatch(&agent(), request).finish().await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err().kind, ErrorKind::RequestContentLengthMismatch);
    assert_eq!(outcome.err().code(), "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH");
}

#[tokio::test]
async fn pulled_body_longer_than_its_length_fails_with_request_content_length_mismatch() {
    let addr = echo_server().await;
    let chunks = vec![
        BodyChunk::Data(Bytes::from_static(b"12345")),
        BodyChunk::Data(Bytes::from_static(b"67890")),
        BodyChunk::End,
    ];
    let request = DispatchRequest::new("POST", url(addr, "/upload"))
        .body(RequestBody::Pull(pulled_body_only(Some(7), chunks)));

    let outcome = dispatch(&agent(), request).finish().await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err().kind, ErrorKind::RequestContentLengthMismatch);
}

#[tokio::test]
async fn pulled_body_error_fails_the_request_with_that_error() {
    let addr = echo_server().await;
    let failure = CoreError::new(ErrorKind::RequestBody, "the source stream broke");
    let chunks = vec![
        BodyChunk::Data(Bytes::from_static(b"some bytes first")),
        BodyChunk::Error(failure.clone()),
    ];
    let request = DispatchRequest::new("POST", url(addr, "/upload"))
        .body(RequestBody::Pull(pulled_body_only(None, chunks)));

    let outcome = dispatch(&agent(), request).finish().await;

    assert!(outcome.head.is_none());
    assert_eq!(outcome.err(), &failure);
}

// ---------------------------------------------------------------------------------------------------------
// Handler failures
// ---------------------------------------------------------------------------------------------------------

/// Panics on the response head; records what comes after.
struct PanicsOnStart(Recorder);

impl DispatchHandler for PanicsOnStart {
    fn on_response_start(&mut self, _head: ResponseHead) {
        panic!("handler exploded on purpose");
    }
    fn on_response_data(&mut self, chunk: Bytes) {
        self.0.on_response_data(chunk);
    }
    fn on_response_end(&mut self, trailers: RawHeaders) {
        self.0.on_response_end(trailers);
    }
    fn on_error(&mut self, error: CoreError) {
        self.0.on_error(error);
    }
}

#[tokio::test]
async fn handler_panic_in_response_start_is_reported_as_internal_error() {
    let addr =
        hyper_server(|_req| async { Response::new(Full::new(Bytes::from_static(b"body"))) }).await;
    let (recorder, events) = Recorder::new();
    let agent = agent();

    agent.dispatch(
        DispatchRequest::new("GET", url(addr, "/")),
        RequestController::new(),
        PanicsOnStart(recorder),
    );
    let outcome = events.finish().await;

    assert!(outcome.body.is_empty());
    assert_eq!(outcome.err().kind, ErrorKind::Internal);
    assert!(
        outcome
            .err()
            .message
            .contains("handler exploded on purpose"),
        "message: {}",
        outcome.err().message
    );

    // The runtime survived the panic: the same agent still completes requests.
    let (head, body, _) = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();
    assert_eq!(head.status, 200);
    assert_eq!(body, b"body");
}

#[tokio::test]
async fn the_response_head_tells_the_version_and_the_connection_addresses() {
    let addr = echo_server().await;
    let agent = agent();
    let (head, _, _) = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await
        .ok();
    assert_eq!(head.version, http::Version::HTTP_11);
    assert_eq!(head.remote_addr, Some(addr));
    let local = head.local_addr.expect("local address");
    assert!(local.ip().is_loopback());
    assert_ne!(local.port(), addr.port());
}
