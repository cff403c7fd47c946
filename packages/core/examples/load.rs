//! A closed-loop load generator over the core alone (no JavaScript): `concurrency` loops each send a GET and
//! wait for its end, for `seconds`. Prints requests/s and process CPU per request, so the core's own cost can
//! be told apart from the bridge's and the JS layer's.
//!
//! `cargo run --release -p reqwest-dispatcher-core --example load -- http://127.0.0.1:PORT/ [concurrency] [seconds]`
//!
//! With `LOAD_REQUESTS=N` it stops after N requests instead, for instruction counts that do not depend on the
//! machine's speed: `valgrind --tool=callgrind target/release/examples/load URL 100 0` divides by N.

use bytes::Bytes;
use reqwest_dispatcher_core::{
    Agent, AgentOptions, CoreError, DispatchHandler, DispatchRequest, RawHeaders,
    RequestController, ResponseHead,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Done(Option<oneshot::Sender<bool>>);

impl DispatchHandler for Done {
    fn on_response_start(&mut self, _head: ResponseHead) {}
    fn on_response_data(&mut self, _chunk: Bytes) {}
    fn on_response_end(&mut self, _trailers: RawHeaders) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(true);
        }
    }
    fn on_error(&mut self, error: CoreError) {
        eprintln!("request failed: {error}");
        if let Some(tx) = self.0.take() {
            let _ = tx.send(false);
        }
    }
}

/// CPU time of the whole process (all threads), from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Runs `concurrency` closed loops, each awaiting `one()` (a request; `false` ends its loop), for `seconds`
/// or until `LOAD_REQUESTS` requests, then prints requests/s and process CPU per request as one JSON line.
async fn closed_loops<F, Fut>(client: &str, concurrency: usize, seconds: u64, one: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let limit: Option<u64> = std::env::var("LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok());
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let mut loops = Vec::new();
    for _ in 0..concurrency {
        let (one, done, stop) = (one.clone(), done.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if limit.is_some_and(|n| done.load(Ordering::Relaxed) >= n) || !one().await {
                    return;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if limit.is_none() {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
    }
    for l in loops {
        let _ = l.await;
    }
    let (cpu, elapsed) = (process_cpu() - cpu0, t0.elapsed());
    let n = done.load(Ordering::Relaxed).max(1);
    println!(
        "{{\"client\":\"{client}\",\"requests\":{n},\"rps\":{},\"cpuUsPerReq\":{:.1}}}",
        (n as f64 / elapsed.as_secs_f64()) as u64,
        cpu.as_micros() as f64 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/".into());
    let concurrency: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3);
    if args.get(4).map(String::as_str) == Some("--bare-hyper") {
        return bare_hyper(&url, concurrency, seconds);
    }
    let agent = Agent::new(AgentOptions::default()).expect("agent");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(closed_loops("agent", concurrency, seconds, move || {
        let (agent, url) = (agent.clone(), url.clone());
        async move {
            let (tx, rx) = oneshot::channel();
            agent.dispatch(
                DispatchRequest::new("GET", url.as_str()),
                RequestController::new(),
                Done(Some(tx)),
            );
            rx.await == Ok(true)
        }
    }));
}

/// The same loop over hyper-util's pooled client with no agent (what the core used for HTTP/1.1 before its
/// own engine), on one worker thread like the agent's runtime on 2 cores.
fn bare_hyper(url: &str, concurrency: usize, seconds: u64) {
    use http_body_util::{BodyExt, Empty};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let uri: http::Uri = url.parse().expect("uri");
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<Bytes>>();
        closed_loops("bare-hyper", concurrency, seconds, move || {
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                let res = client.get(uri).await.expect("response");
                let _ = res.into_body().collect().await;
                true
            }
        })
        .await
    });
}
