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
            DeadlineFirst {
                deadline: tokio::time::sleep(limit),
                fut,
            }
            .map(move |outcome| outcome.ok_or_else(on_timeout)),
        ),
        None => Either::Right(fut.map(Ok)),
    }
}

pin_project_lite::pin_project! {
    /// `fut` bounded by `deadline`, the deadline looked at first: when a starved worker wakes to find both the
    /// deadline passed and the work ready, the request has timed out, as undici's timers (which run before its
    /// socket reads) decide. (`tokio::time::timeout` polls the work first and would deliver the late answer.)
    struct DeadlineFirst<F> {
        #[pin]
        deadline: tokio::time::Sleep,
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for DeadlineFirst<F> {
    type Output = Option<F::Output>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        if this.deadline.poll(cx).is_ready() {
            return std::task::Poll::Ready(None);
        }
        this.fut.poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::{default_worker_threads, within};
    use crate::error::CoreError;
    use std::time::Duration;

    #[tokio::test]
    async fn a_deadline_passed_wins_over_an_answer_that_arrived_while_the_worker_was_busy() {
        use std::future::Future;
        use tokio::io::AsyncReadExt;
        let late_error = || CoreError::invalid_argument("late");
        let (mut ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let mut byte = [0u8; 1];
        let late = within(
            Some(Duration::from_millis(5)),
            ours.read(&mut byte),
            late_error,
        );
        tokio::pin!(late);
        // The first poll registers the deadline and the read; neither is ready.
        let pending =
            std::future::poll_fn(|cx| std::task::Poll::Ready(late.as_mut().poll(cx).is_pending()))
                .await;
        assert!(pending);
        // The answer comes while the worker is busy past the deadline: one wake finds both ready.
        theirs.try_write(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(late.await.is_err());

        let in_time = within(Some(Duration::from_secs(5)), async { 7 }, late_error);
        assert_eq!(in_time.await.ok(), Some(7));
        assert_eq!(within(None, async { 7 }, late_error).await.ok(), Some(7));
    }

    #[test]
    fn one_core_is_left_to_javascript_and_at_most_two_workers_run() {
        assert_eq!(default_worker_threads(1), 1);
        assert_eq!(default_worker_threads(2), 1);
        assert_eq!(default_worker_threads(3), 2);
        assert_eq!(default_worker_threads(64), 2);
    }
}
