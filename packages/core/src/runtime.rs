//! The process-wide tokio runtime every agent runs its requests on.
//!
//! One runtime per process, not per agent: agents are cheap to create and a 2-core machine gains nothing from
//! several sets of worker threads competing for it.

use futures_util::future::{Either, FutureExt};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Most worker threads the runtime starts, whatever is asked: a count beyond it cannot help and a very large
/// one would fail to start the runtime.
pub const MAX_WORKER_THREADS: usize = 256;

/// Sets the worker thread count of the runtime (at most [`MAX_WORKER_THREADS`]). Only effective before the
/// first request starts it; returns whether it took effect. `0` means the default:
/// `REQWEST_DISPATCHER_WORKER_THREADS` from the environment if set, else [`default_worker_threads`].
pub fn set_worker_threads(threads: usize) -> bool {
    if RUNTIME.get().is_some() {
        return false;
    }
    WORKER_THREADS.store(threads.min(MAX_WORKER_THREADS), Ordering::SeqCst);
    true
}

/// The shared runtime's handle, starting the runtime on first use.
pub(crate) fn runtime_handle() -> Handle {
    RUNTIME
        .get_or_init(|| {
            let mut requested = WORKER_THREADS.load(Ordering::SeqCst);
            if requested == 0 {
                // The environment may choose too (benchmarks, deployments that cannot call the setter).
                requested = std::env::var("REQWEST_DISPATCHER_WORKER_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
            }
            let threads = if requested > 0 {
                requested.min(MAX_WORKER_THREADS)
            } else {
                default_worker_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            };
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("reqwest-dispatcher")
                .enable_all()
                .build()
                .expect("the tokio runtime of reqwest-dispatcher could not start")
        })
        .handle()
        .clone()
}

/// Worker threads for a machine with `cores` cores: one core is left to the JavaScript thread, and more than
/// two workers were never measured to help. On 2 cores one worker beat two (npm run bench, 2 rounds each):
/// CPU per request -29% for HTTP/2 POST 4 KiB (throughput +32%), -13% HTTP/2 GET, -9% HTTP/1.1 1 MiB, -8%
/// HTTP/1.1 POST, equal for HTTP/1.1 GET 64 B: two workers contend for each HTTP/2 connection's lock and wake
/// each other across cores.
pub(crate) fn default_worker_threads(cores: usize) -> usize {
    cores.saturating_sub(1).clamp(1, 2)
}

/// `fut`, failing with `on_timeout()` when `limit` passes first (no limit: `fut` as it is).
///
/// Not an `async fn`: one would hold `fut` twice (its argument and the timeout wrapping it), and this wraps
/// the transport's send of every request, whose future lives as long as the request is in flight.
pub(crate) fn within<T, F: Future<Output = T>>(
    limit: Option<Duration>,
    fut: F,
    on_timeout: impl FnOnce() -> crate::error::CoreError,
) -> impl Future<Output = Result<T, crate::error::CoreError>> {
    match limit {
        Some(limit) => Either::Left(
            tokio::time::timeout(limit, fut).map(move |outcome| outcome.map_err(|_| on_timeout())),
        ),
        None => Either::Right(fut.map(Ok)),
    }
}

#[cfg(test)]
mod tests {
    use super::default_worker_threads;

    #[test]
    fn one_core_is_left_to_javascript_and_at_most_two_workers_run() {
        assert_eq!(default_worker_threads(1), 1);
        assert_eq!(default_worker_threads(2), 1);
        assert_eq!(default_worker_threads(3), 2);
        assert_eq!(default_worker_threads(64), 2);
    }
}
