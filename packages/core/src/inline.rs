//! Starting a request on the thread that dispatched it (the JavaScript thread): its task runs there until it
//! first waits, so a request that finds an idle plain HTTP/1.1 connection is on the wire before the dispatch
//! returns, and the task reaches the runtime only when its response arrives (`start_here`). With one request
//! in flight the runtime's worker so wakes once per round trip instead of twice, and the JavaScript thread
//! writes the request itself, as undici does. Measured on the 1-in-flight row (`npm run bench`, 5 rounds):
//! the client's CPU per round trip 134 → 115 µs (the runtime's share 64 → 29 µs), p50 174 → 164 µs.
//!
//! Only what costs the caller little runs there: the policies' bookkeeping, the pool checkout, the head's
//! encoding and one non-blocking write of a small request. Everything else — opening a connection, TLS,
//! HTTP/2, proxies, large or streamed bodies, upgrades — [`leave`]s the caller's thread at once and runs on
//! the runtime as before; a write the socket takes only in part goes on there too.

use crate::lock;
use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tokio::runtime::Handle;

thread_local! {
    /// Set while a request's task is polled on the thread that dispatched it.
    static POLLING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `task` on this thread until it first waits (inside the runtime's context, so that its timers and
/// sockets register with the runtime), then leaves it parked until what it waits for happens: only then is
/// it spawned on the runtime, from the thread that woke it — for a response, the worker whose reactor saw
/// it arrive, which runs it at once with no further wake-up. A parked runtime worker is so woken once per
/// request (by the response), not twice (by the request, then by the response).
///
/// A panic ends the task, as the runtime ends a task that panics (the request's own work contains its
/// panics: `Agent::run`).
pub(crate) fn start_here<F: Future<Output = ()> + Send + 'static>(runtime: &Handle, task: F) {
    let _entered = runtime.enter();
    let parked = Arc::new(Parked {
        runtime: runtime.clone(),
        state: Mutex::new(State::Polling),
    });
    let waker = Waker::from(Arc::clone(&parked));
    let mut task = Box::pin(task);
    let polled = {
        let _polling = Polling::start();
        catch_unwind(AssertUnwindSafe(|| {
            task.as_mut().poll(&mut Context::from_waker(&waker))
        }))
    };
    if let Ok(Poll::Pending) = polled {
        parked.park(task);
    }
}

/// A task polled on the dispatching thread, until its first wake spawns it on the runtime.
struct Parked<F> {
    runtime: Handle,
    state: Mutex<State<F>>,
}

enum State<F> {
    /// Being polled on the dispatching thread.
    Polling,
    /// Woken while it was being polled there: spawned as soon as that poll returns.
    WokenWhilePolling,
    /// Waiting for its first wake.
    Parked(Pin<Box<F>>),
    /// On the runtime, which has its own waker from now on (later wakes of this one do nothing).
    Spawned,
}

impl<F: Future<Output = ()> + Send + 'static> Parked<F> {
    /// The poll on the dispatching thread returned `Pending`.
    fn park(&self, task: Pin<Box<F>>) {
        let mut state = lock(&self.state);
        if matches!(*state, State::WokenWhilePolling) {
            *state = State::Spawned;
            drop(state);
            self.runtime.spawn(task);
        } else {
            *state = State::Parked(task);
        }
    }
}

impl<F: Future<Output = ()> + Send + 'static> Wake for Parked<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let task = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Spawned) {
                State::Parked(task) => Some(task),
                State::Polling => {
                    *state = State::WokenWhilePolling;
                    None
                }
                other => {
                    *state = other;
                    None
                }
            }
        };
        if let Some(task) = task {
            self.runtime.spawn(task);
        }
    }
}

/// Whether the current poll runs on the dispatching thread (see [`start_here`]).
pub(crate) fn polling_here() -> bool {
    POLLING_HERE.with(Cell::get)
}

/// Resolves at once on the runtime; on the dispatching thread, first hands the task over to the runtime
/// (one `Pending`, and a wake that spawns it), so that what follows runs there.
pub(crate) fn leave() -> Leave {
    Leave {
        yielded: !polling_here(),
    }
}

/// See [`leave`].
pub(crate) struct Leave {
    yielded: bool,
}

impl Future for Leave {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // The wake spawns the task on the runtime once this poll returned (`start_here`).
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Marks this thread as polling a task where it was dispatched, until dropped (also when the poll panics).
struct Polling {
    was: bool,
}

impl Polling {
    fn start() -> Polling {
        Polling {
            was: POLLING_HERE.with(|p| p.replace(true)),
        }
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING_HERE.with(|p| p.set(self.was));
    }
}
