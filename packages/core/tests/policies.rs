//! Retry, circuit breaker, rate limit and metrics against a local server that fails on command.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use reqwest_dispatcher_core::{
    Agent, AgentEvent, AgentOptions, BodyChunk, CircuitState, DispatchRequest, ErrorKind, Policies,
    RequestBody, RequestController,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// A server whose answer is read from `status` at each request (0 = close the connection without answering
/// is not needed here); it counts the requests it saw.
async fn switchable_server(status: Arc<AtomicUsize>, seen: Arc<AtomicUsize>) -> SocketAddr {
    hyper_server(move |_req| {
        let status = Arc::clone(&status);
        let seen = Arc::clone(&seen);
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let code = status.load(Ordering::SeqCst) as u16;
            Response::builder()
                .status(code)
                .header("retry-after", "0")
                .body(Full::new(Bytes::from_static(b"body")))
                .unwrap()
        }
    })
    .await
}

/// A server that answers the first `failures` requests with 503 and the rest with 200.
async fn flaky_server(failures: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let addr = hyper_server(move |_req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if n < failures { 503 } else { 200 };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(format!("attempt {}", n + 1))))
                .unwrap()
        }
    })
    .await;
    (addr, seen)
}

fn with_policies(json: &str) -> AgentOptions {
    AgentOptions {
        policies: Policies::from_json(json).unwrap(),
        ..AgentOptions::default()
    }
}

fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn retries_a_503_until_the_server_answers_and_tells_the_handler() {
    let (addr, seen) = flaky_server(2).await;
    let agent = agent_with(with_policies(r#"{"retry":{"minTimeout":10}}"#));
    let outcome = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;
    assert_eq!(outcome.retries, vec![1, 2]);
    let (head, body, _) = outcome.ok();
    assert_eq!(head.status, 200);
    assert_eq!(body, b"attempt 3");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let text = agent.metrics_text();
    let origin = format!("origin=\"http://{addr}\"");
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_retries_total{{{origin}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "reqwest_dispatcher_requests_total{{{origin},method=\"GET\",status_class=\"2xx\"}}"
            )
        ),
        1.0
    );
}

#[tokio::test]
async fn replays_a_bytes_body_on_each_attempt() {
    let bodies = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let seen = Arc::clone(&bodies);
    let addr = hyper_server(move |req: hyper::Request<hyper::body::Incoming>| {
        let seen = Arc::clone(&seen);
        async move {
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut seen = seen.lock().unwrap();
            seen.push(body);
            let status = if seen.len() < 2 { 502 } else { 201 };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;
    let agent = agent_with(with_policies(r#"{"retry":{"minTimeout":1}}"#));
    let request = DispatchRequest::new("PUT", url(addr, "/"))
        .body(RequestBody::Bytes(Bytes::from_static(b"payload")));
    let (head, _, _) = dispatch(&agent, request).finish().await.ok();
    assert_eq!(head.status, 201);
    assert_eq!(
        *bodies.lock().unwrap(),
        vec![Bytes::from_static(b"payload"); 2]
    );
}

#[tokio::test]
async fn does_not_retry_methods_outside_the_list_or_pulled_bodies() {
    let (addr, seen) = flaky_server(5).await;
    let agent = agent_with(with_policies(r#"{"retry":{"minTimeout":1}}"#));
    let post = dispatch(&agent, DispatchRequest::new("POST", url(addr, "/")))
        .finish()
        .await;
    assert!(post.retries.is_empty());
    assert_eq!(post.ok().0.status, 503);

    let (pull, _) = pulled_body(
        Some(2),
        vec![BodyChunk::Data(Bytes::from_static(b"ab")), BodyChunk::End],
    );
    let put = DispatchRequest::new("PUT", url(addr, "/")).body(RequestBody::Pull(pull));
    let put = dispatch(&agent, put).finish().await;
    assert!(put.retries.is_empty());
    assert_eq!(put.ok().0.status, 503);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn gives_up_on_a_refused_connection_after_max_retries_with_the_last_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let agent = agent_with(with_policies(
        r#"{"retry":{"maxRetries":2,"minTimeout":20,"timeoutFactor":3}}"#,
    ));
    let started = Instant::now();
    let outcome = dispatch(
        &agent,
        DispatchRequest::new("GET", format!("http://127.0.0.1:{port}/")),
    )
    .finish()
    .await;
    assert_eq!(outcome.retries, vec![1, 2]);
    assert_eq!(outcome.err().code(), "ECONNREFUSED");
    // Waits of 20 ms and 60 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn circuit_opens_fails_fast_then_half_opens_and_closes() {
    let status = Arc::new(AtomicUsize::new(500));
    let seen = Arc::new(AtomicUsize::new(0));
    let addr = switchable_server(Arc::clone(&status), Arc::clone(&seen)).await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&events);
    let agent = Agent::with_observer(
        with_policies(r#"{"circuitBreaker":{"minimumRequests":3,"halfOpenAfter":200}}"#),
        Arc::new(move |event| {
            if let AgentEvent::Circuit { state, .. } = event {
                recorded.lock().unwrap().push(state);
            }
        }),
    )
    .unwrap();
    let get = || DispatchRequest::new("GET", url(addr, "/"));
    for _ in 0..3 {
        assert_eq!(dispatch(&agent, get()).finish().await.ok().0.status, 500);
    }
    assert_eq!(*events.lock().unwrap(), vec![CircuitState::Open]);
    let origin = format!("http://{addr}");
    assert_eq!(agent.circuit_state(&origin), Some(CircuitState::Open));
    let fast = dispatch(&agent, get()).finish().await;
    assert_eq!(fast.err().kind, ErrorKind::CircuitOpen);
    assert_eq!(fast.err().code(), "UND_ERR_CIRCUIT_OPEN");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "an open circuit sends nothing"
    );

    status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(dispatch(&agent, get()).finish().await.ok().0.status, 200);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            CircuitState::Open,
            CircuitState::HalfOpen,
            CircuitState::Closed
        ]
    );
    let text = agent.metrics_text();
    let origin = format!("origin=\"{origin}\"");
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_circuit_trips_total{{{origin}}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_circuit_state{{{origin}}}")
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_requests_total{{{origin},method=\"GET\",status_class=\"error\"}}")
        ),
        1.0
    );
}

#[tokio::test]
async fn rate_limit_spaces_requests_and_refuses_those_that_would_wait_too_long() {
    let (addr, seen) = flaky_server(0).await;
    let agent = agent_with(with_policies(
        r#"{"rateLimit":{"requestsPerSecond":20,"burst":1,"maxWait":120}}"#,
    ));
    let started = Instant::now();
    let all: Vec<_> = (0..5)
        .map(|_| dispatch(&agent, DispatchRequest::new("GET", url(addr, "/"))))
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for events in all {
        let outcome = events.finish().await;
        match outcome.error {
            None => ok += 1,
            Some(e) => {
                assert_eq!(e.code(), "UND_ERR_RATE_LIMITED");
                limited += 1;
            }
        }
    }
    // One at once, then one each 50 ms while the wait stays within 120 ms: 3 go, 2 are refused.
    assert_eq!((ok, limited), (3, 2));
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(95),
        "{:?}",
        started.elapsed()
    );
    let text = agent.metrics_text();
    let origin = format!("origin=\"http://{addr}\"");
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_rate_limit_waits_total{{{origin}}}")
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            &format!("reqwest_dispatcher_rate_limit_rejections_total{{{origin}}}")
        ),
        2.0
    );
}

#[tokio::test]
async fn requests_dispatched_together_take_their_rate_limit_turns_in_the_order_given() {
    let (addr, seen) = flaky_server(0).await;
    let agent = agent_with(with_policies(
        r#"{"rateLimit":{"requestsPerSecond":20,"burst":1,"maxWait":120}}"#,
    ));
    let (handlers, all): (Vec<_>, Vec<_>) = (0..5).map(|_| Recorder::new()).unzip();
    agent.dispatch_all(handlers.into_iter().enumerate().map(|(i, handler)| {
        let request = DispatchRequest::new("GET", url(addr, &format!("/{i}")));
        (request, RequestController::new(), handler)
    }));
    let mut outcomes = Vec::new();
    for events in all {
        outcomes.push(events.finish().await.error.map(|e| e.code()));
    }
    // As when each is dispatched alone: the first three in the order given go, the last two are refused.
    let limited = Some("UND_ERR_RATE_LIMITED");
    assert_eq!(outcomes, [None, None, None, limited, limited]);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn per_origin_policies_replace_the_defaults() {
    let (a, _) = flaky_server(1).await;
    let (b, _) = flaky_server(1).await;
    let json = format!(r#"{{"retry":{{"minTimeout":1}},"origins":{{"http://{b}":{{}}}}}}"#);
    let agent = agent_with(with_policies(&json));
    let first = dispatch(&agent, DispatchRequest::new("GET", url(a, "/")))
        .finish()
        .await;
    assert_eq!(first.ok().0.status, 200);
    let second = dispatch(&agent, DispatchRequest::new("GET", url(b, "/")))
        .finish()
        .await;
    assert_eq!(second.ok().0.status, 503, "origin b has no retry policy");
}

#[tokio::test]
async fn metrics_count_bytes_durations_connections_and_in_flight() {
    let (addr, _) = flaky_server(0).await;
    let agent = agent();
    for _ in 0..2 {
        let request = DispatchRequest::new("POST", url(addr, "/"))
            .body(RequestBody::Bytes(Bytes::from_static(b"12345")));
        dispatch(&agent, request).finish().await.ok();
    }
    let text = agent.metrics_text();
    let origin = format!("origin=\"http://{addr}\"");
    let get = |name: &str| sample(&text, &format!("reqwest_dispatcher_{name}{{{origin}}}"));
    assert_eq!(get("request_body_bytes_total"), 10.0);
    assert_eq!(get("response_body_bytes_total"), 18.0);
    assert_eq!(get("requests_in_flight"), 0.0);
    assert_eq!(get("open_connections"), 1.0);
    assert_eq!(get("request_duration_seconds_count"), 2.0);
    assert!(get("request_duration_seconds_sum") > 0.0);
    let json: serde_json::Value = serde_json::from_str(&agent.metrics_json()).unwrap();
    assert_eq!(json["reqwest_dispatcher_open_connections"]["type"], "gauge");
}

#[tokio::test]
async fn a_failure_of_the_request_body_source_leaves_the_circuit_alone() {
    // Reads each request body to its end before answering (503 first, then 200), so a body that fails
    // fails before any response exists.
    let answered = Arc::new(AtomicUsize::new(0));
    let addr = hyper_server(move |req: hyper::Request<hyper::body::Incoming>| {
        let answered = Arc::clone(&answered);
        async move {
            use http_body_util::BodyExt;
            let _ = req.into_body().collect().await;
            let status = if answered.fetch_add(1, Ordering::SeqCst) == 0 {
                503
            } else {
                200
            };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    })
    .await;
    let agent = agent_with(with_policies(
        r#"{"circuitBreaker":{"minimumRequests":1,"threshold":0,"halfOpenAfter":50}}"#,
    ));
    let origin = format!("http://{addr}");
    let first = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;
    assert_eq!(first.ok().0.status, 503);
    assert_eq!(agent.circuit_state(&origin), Some(CircuitState::Open));
    tokio::time::sleep(Duration::from_millis(80)).await;
    // The half-open probe fails for a reason of its own: neither a success that closes the circuit nor
    // a failure that opens it again.
    let (pull, _) = pulled_body(
        None,
        vec![BodyChunk::Error(reqwest_dispatcher_core::CoreError::new(
            ErrorKind::RequestBody,
            "source failed",
        ))],
    );
    let request = DispatchRequest::new("POST", url(addr, "/")).body(RequestBody::Pull(pull));
    let failed = dispatch(&agent, request).finish().await;
    assert_eq!(failed.err().kind, ErrorKind::RequestBody);
    assert_eq!(agent.circuit_state(&origin), Some(CircuitState::HalfOpen));
    // Its place is free again: the next request is the probe, and its success closes the circuit.
    let next = dispatch(&agent, DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;
    assert_eq!(next.ok().0.status, 200);
    assert_eq!(agent.circuit_state(&origin), Some(CircuitState::Closed));
}
