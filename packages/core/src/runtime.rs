//! The process-wide tokio runtime every agent runs its requests on.
//!
//! One runtime per process, not per agent: agents are cheap to create and a 2-core machine gains nothing from
//! several sets of worker threads competing for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static WORKER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the worker thread count of the runtime. Only effective before the first request starts it;
/// returns whether it took effect. `0` means the default: `REQWEST_DISPATCHER_WORKER_THREADS` from the
/// environment if set, else one per core, at most 2.
pub fn set_worker_threads(threads: usize) -> bool {
    if RUNTIME.get().is_some() {
        return false;
    }
    WORKER_THREADS.store(threads, Ordering::SeqCst);
    true
}

/// The shared runtime's handle, starting the runtime on first use.
pub fn runtime_handle() -> Handle {
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
                requested
            } else {
                std::thread::available_parallelism()
                    .map(|n| n.get().min(2))
                    .unwrap_or(1)
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
