//! Requests that leave HTTP (an upgrade answered by 101, CONNECT) against raw servers on 127.0.0.1: what goes
//! on the wire, how the switched connection carries bytes both ways, and how it ends.

mod support;

use bytes::Bytes;
use reqwest_dispatcher_core::{
    Agent, AgentEvent, AgentOptions, ConnectionEvent, DispatchRequest, ErrorKind,
    RequestController, Switch, Upgrade, UpgradeWrite, UpgradeWriter,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const SWITCHED: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n";

/// An upgrade request for protocol `echo` and the writer of its upgraded connection.
fn echo_request(url: String) -> (UpgradeWriter, DispatchRequest) {
    let (writer, upgrade) = Upgrade::new(Switch::Protocol("echo".into()));
    (writer, DispatchRequest::new("GET", url).upgrade(upgrade))
}

/// A server that switches every request to `echo` (sending `greeting` right behind the 101, in the same
/// write) and then echoes what it reads until the client ends its direction; it reports each request head.
async fn echo_server(
    greeting: &'static [u8],
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            let Ok(head) = read_request_head(&mut stream).await else {
                return;
            };
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let mut first = SWITCHED.to_vec();
            first.extend_from_slice(greeting);
            if stream.write_all(&first).await.is_err() {
                return;
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stream.shutdown().await;
        }
    })
    .await;
    (addr, rx)
}

/// A server that switches every request, then waits for the client to close the connection (which it
/// reports).
async fn switch_and_wait_for_close() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let (tx, closed) = mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream: TcpStream| {
        let tx = tx.clone();
        async move {
            if read_request_head(&mut stream).await.is_ok() {
                let _ = stream.write_all(SWITCHED).await;
                wait_for_close(&mut stream).await;
                let _ = tx.send(());
            }
        }
    })
    .await;
    (addr, closed)
}

/// Reads events until `want` bytes of upgraded data came, counting completed writes on the way.
async fn read_upgraded(events: &mut Events, want: usize) -> (Vec<u8>, usize) {
    let mut data = Vec::new();
    let mut written = 0;
    while data.len() < want {
        match events.next().await {
            Some(Event::Data(chunk)) => data.extend_from_slice(&chunk),
            Some(Event::Written) => written += 1,
            other => panic!("expected upgraded data, got {other:?}"),
        }
    }
    (data, written)
}

fn observed_agent() -> (Agent, Arc<Mutex<Vec<ConnectionEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let agent = Agent::with_observer(
        AgentOptions::default(),
        Arc::new(move |event| {
            if let AgentEvent::Connection(event) = event {
                seen.lock().unwrap().push(event);
            }
        }),
    )
    .unwrap();
    (agent, events)
}

#[tokio::test]
async fn an_upgrade_request_says_connection_upgrade_and_the_101_switches_the_connection() {
    let (addr, mut heads) = echo_server(b"hello").await;
    let (writer, request) = echo_request(url(addr, "/chat"));
    let mut events = dispatch(&agent(), request);

    let head = match events.next().await {
        Some(Event::Upgrade(head)) => head,
        other => panic!("expected the switch, got {other:?}"),
    };
    assert_eq!(head.status, 101);
    assert_eq!(head.status_text, "Switching Protocols");
    assert_eq!(head.headers.get("upgrade"), Some(&b"echo"[..]));
    assert_eq!(head.remote_addr, Some(addr));
    assert_eq!(
        heads.recv().await.unwrap(),
        format!(
            "GET /chat HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n"
        )
    );
    // The bytes that came in the same read as the head are the new protocol's first.
    assert_eq!(read_upgraded(&mut events, 5).await.0, b"hello");

    writer.send(UpgradeWrite::Data(vec![
        Bytes::from_static(b"ping "),
        Bytes::from_static(b"pong"),
    ]));
    let (echoed, written) = read_upgraded(&mut events, 9).await;
    assert_eq!(echoed, b"ping pong");
    writer.send(UpgradeWrite::End);
    let outcome = events.finish_upgraded().await;
    assert_eq!(
        written + outcome.written,
        2,
        "one completion per write and one for the end"
    );
    assert!(
        outcome.read_end,
        "the server ended its direction after the client's end"
    );
    assert!(outcome.error.is_none());
}

#[tokio::test]
async fn writes_sent_before_the_switch_go_out_after_it() {
    let (addr, _heads) = echo_server(b"").await;
    let (writer, request) = echo_request(url(addr, "/"));
    writer.send(UpgradeWrite::Data(vec![Bytes::from_static(b"early")]));
    let mut events = dispatch(&agent(), request);
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));
    assert_eq!(read_upgraded(&mut events, 5).await.0, b"early");
}

#[tokio::test]
async fn connect_writes_the_target_as_given_and_any_final_status_switches() {
    let (tx, mut heads) = mpsc::unbounded_channel();
    let addr = raw_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            if let Ok(head) = read_request_head(&mut stream).await {
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let status: &[u8] = if head.starts_with(b"CONNECT denied") {
                    b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 5\r\n\r\nnope!"
                } else {
                    b"HTTP/1.1 200 Connection Established\r\n\r\n"
                };
                let _ = stream.write_all(status).await;
                wait_for_close(&mut stream).await;
            }
        }
    })
    .await;
    let agent = agent();

    let (_writer, upgrade) = Upgrade::new(Switch::Connect("example.test:443".into()));
    let mut events = dispatch(
        &agent,
        DispatchRequest::new("CONNECT", url(addr, "/")).upgrade(upgrade),
    );
    match events.next().await {
        Some(Event::Upgrade(head)) => assert_eq!(head.status, 200),
        other => panic!("expected the switch, got {other:?}"),
    }
    assert_eq!(
        heads.recv().await.unwrap(),
        format!("CONNECT example.test:443 HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
    );

    // undici hands the connection over whatever the status: its caller (ProxyAgent) checks for 200.
    let (_writer, upgrade) = Upgrade::new(Switch::Connect("denied".into()));
    let mut events = dispatch(
        &agent,
        DispatchRequest::new("CONNECT", url(addr, "/")).upgrade(upgrade),
    );
    match events.next().await {
        Some(Event::Upgrade(head)) => assert_eq!(head.status, 407),
        other => panic!("expected the switch, got {other:?}"),
    }
    assert_eq!(
        read_upgraded(&mut events, 5).await.0,
        b"nope!",
        "what follows the head is the stream's"
    );
}

#[tokio::test]
async fn an_upgrade_answered_with_a_plain_response_is_a_response_and_the_connection_is_not_reused()
{
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let addr = raw_server(move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            while read_request_head(&mut stream).await.is_ok() {
                let response = b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 2\r\n\r\nno";
                if stream.write_all(response).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let agent = agent();
    for _ in 0..2 {
        let (_writer, request) = echo_request(url(addr, "/"));
        let (head, body, _) = dispatch(&agent, request).finish().await.ok();
        assert_eq!(head.status, 426);
        assert_eq!(body, b"no");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_101_to_a_plain_request_is_still_a_bad_upgrade() {
    let addr = raw_response(SWITCHED).await;
    let outcome = dispatch(&agent(), DispatchRequest::new("GET", url(addr, "/")))
        .finish()
        .await;
    assert_eq!(outcome.err().kind, ErrorKind::Socket);
    assert_eq!(outcome.err().message, "bad upgrade");
}

#[tokio::test]
async fn the_connection_leaves_the_agent_at_the_switch() {
    let (addr, _heads) = echo_server(b"").await;
    let (agent, connection_events) = observed_agent();
    let (writer, request) = echo_request(url(addr, "/"));
    let mut events = dispatch(&agent, request);
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));
    // undici reports the connection gone at the switch, while the upgraded socket lives on.
    let seen = connection_events.lock().unwrap().clone();
    assert!(
        matches!(
            seen.last(),
            Some(ConnectionEvent::Disconnected { upgraded: true, .. })
        ),
        "{seen:?}"
    );
    assert_eq!(agent.stats().iter().map(|s| s.running).sum::<usize>(), 0);
    writer.send(UpgradeWrite::Data(vec![Bytes::from_static(b"still open")]));
    assert_eq!(read_upgraded(&mut events, 10).await.0, b"still open");
    let disconnects = connection_events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ConnectionEvent::Disconnected { .. }))
        .count();
    assert_eq!(disconnects, 1);
}

#[tokio::test]
async fn the_server_ending_its_direction_leaves_the_clients_open() {
    let (tx, mut received) = mpsc::unbounded_channel::<Vec<u8>>();
    let addr = raw_server(move |mut stream| {
        let tx = tx.clone();
        async move {
            if read_request_head(&mut stream).await.is_ok() {
                let _ = stream.write_all(SWITCHED).await;
                let _ = stream.write_all(b"bye").await;
                let _ = stream.shutdown().await;
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                let _ = tx.send(rest);
            }
        }
    })
    .await;
    let (writer, request) = echo_request(url(addr, "/"));
    let mut events = dispatch(&agent(), request);
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));
    assert_eq!(read_upgraded(&mut events, 3).await.0, b"bye");
    assert!(matches!(events.next().await, Some(Event::ReadEnd)));
    writer.send(UpgradeWrite::Data(vec![Bytes::from_static(b"after")]));
    writer.send(UpgradeWrite::End);
    let outcome = events.finish_upgraded().await;
    assert_eq!(outcome.written, 2);
    assert!(outcome.error.is_none());
    assert_eq!(received.recv().await.unwrap(), b"after");
}

#[tokio::test]
async fn a_paused_reader_makes_the_servers_writes_block_and_resuming_delivers_every_byte() {
    const TOTAL: u64 = 32 * 1024 * 1024;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let addr = raw_server(move |mut stream| {
        let counter = Arc::clone(&counter);
        async move {
            if read_request_head(&mut stream).await.is_ok() {
                let _ = stream.write_all(SWITCHED).await;
                let mut offset = 0u64;
                while offset < TOTAL {
                    let chunk = pattern(offset, 64 * 1024);
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                    offset += chunk.len() as u64;
                    counter.store(offset, Ordering::SeqCst);
                }
                let _ = stream.shutdown().await;
            }
        }
    })
    .await;
    let controller = RequestController::with_credit(256 * 1024);
    let (_writer, request) = echo_request(url(addr, "/"));
    controller.pause();
    let mut events = dispatch_with(&agent(), request, controller.clone());
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stalled = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sent.load(Ordering::SeqCst),
        stalled,
        "the server kept writing"
    );
    // What the kernel buffers on both sides, not the 32 MiB the server has to send.
    assert!(
        stalled < 16 * 1024 * 1024,
        "{stalled} bytes went out while paused"
    );

    controller.resume();
    let mut received = 0u64;
    loop {
        match events.next_within(Duration::from_secs(30)).await {
            Some(Event::Data(chunk)) => {
                assert!(
                    is_pattern(received, &chunk),
                    "bytes out of order at {received}"
                );
                received += chunk.len() as u64;
                controller.release(chunk.len());
            }
            Some(Event::ReadEnd) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, TOTAL);
}

#[tokio::test]
async fn aborting_an_upgraded_request_closes_its_connection() {
    let (addr, mut closed) = switch_and_wait_for_close().await;
    let controller = RequestController::new();
    let (_writer, request) = echo_request(url(addr, "/"));
    let mut events = dispatch_with(&agent(), request, controller.clone());
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));
    controller.abort();
    tokio::time::timeout(LIMIT, closed.recv()).await.unwrap();
    assert!(
        events.finish_upgraded().await.error.is_none(),
        "an abort reports nothing"
    );
}

#[tokio::test]
async fn dropping_the_writer_closes_the_connection() {
    let (addr, mut closed) = switch_and_wait_for_close().await;
    let (writer, request) = echo_request(url(addr, "/"));
    let mut events = dispatch(&agent(), request);
    assert!(matches!(events.next().await, Some(Event::Upgrade(_))));
    drop(writer);
    tokio::time::timeout(LIMIT, closed.recv()).await.unwrap();
}

#[tokio::test]
async fn a_reset_of_the_upgraded_connection_is_econnreset() {
    let addr = raw_server(|mut stream| async move {
        if read_request_head(&mut stream).await.is_ok() {
            let _ = stream.write_all(SWITCHED).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stream.set_zero_linger();
        }
    })
    .await;
    let (_writer, request) = echo_request(url(addr, "/"));
    let outcome = dispatch(&agent(), request).finish().await;
    assert!(outcome.upgraded);
    assert_eq!(outcome.err().code(), "ECONNRESET");
    assert_eq!(outcome.err().message, "read ECONNRESET");
}

#[tokio::test]
async fn requests_that_cannot_switch_are_refused_before_they_are_sent() {
    let addr = raw_response(SWITCHED).await;
    let agent = agent();
    let (_w, upgrade) = Upgrade::new(Switch::Protocol("a\r\nb".into()));
    let bad_protocol = DispatchRequest::new("GET", url(addr, "/")).upgrade(upgrade);
    let (_w, upgrade) = Upgrade::new(Switch::Connect("a b".into()));
    let bad_target = DispatchRequest::new("CONNECT", url(addr, "/")).upgrade(upgrade);
    let (_w, upgrade) = Upgrade::new(Switch::Connect("a.test:1".into()));
    let connect_without_the_method = DispatchRequest::new("GET", url(addr, "/")).upgrade(upgrade);
    let connect_without_a_target = DispatchRequest::new("CONNECT", url(addr, "/"));
    for request in [
        bad_protocol,
        bad_target,
        connect_without_the_method,
        connect_without_a_target,
    ] {
        let outcome = dispatch(&agent, request).finish().await;
        assert_eq!(outcome.err().kind, ErrorKind::InvalidArgument);
    }
}
