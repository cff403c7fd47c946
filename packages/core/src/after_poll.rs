//! Work put off until the request task being polled returns from its poll ([`after_poll`]).
//!
//! A handler that hands events to another thread wakes that thread once per batch of events: the Node
//! bridge's queue wakes the JavaScript thread when its first event arrives. A small response's start, data
//! and end come within one poll of the request's task (the HTTP/1.1 engine reads the response in the task
//! itself), but the thread woken for the start took it alone and the other two followed as deliveries of
//! their own: three deliveries per response instead of one. Waking once the poll is over hands them over
//! together. Every request task is polled inside [`Deferring`]; elsewhere (other tasks, other threads) the
//! work runs at once, so nothing waits for a poll that will not end.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Deferred = Box<dyn FnOnce()>;

thread_local! {
    /// The work put off by the poll in progress on this thread, if a request task is being polled.
    static DEFERRED: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
}

/// Runs `work` once the request task being polled on this thread returns from its poll (also when the poll
/// panics), in the order given; at once when this thread is not polling one.
pub fn after_poll(work: impl FnOnce() + 'static) {
    let mut work = Some(Box::new(work) as Deferred);
    // `try_with`: a thread tearing down its thread-locals (a runtime shutting down) runs the work at once.
    let _ = DEFERRED.try_with(|deferred| {
        if let Some(list) = deferred.borrow_mut().as_mut() {
            list.extend(work.take());
        }
    });
    if let Some(work) = work {
        work();
    }
}

pin_project_lite::pin_project! {
    /// `fut`, polled so that the work its poll puts off ([`after_poll`]) runs when the poll returns.
    pub(crate) struct Deferring<F> {
        #[pin]
        fut: F,
    }
}

/// `fut`, with [`after_poll`]'s work run after each of its polls.
pub(crate) fn deferring<F: Future>(fut: F) -> Deferring<F> {
    Deferring { fut }
}

impl<F: Future> Future for Deferring<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _scope = Scope::start();
        self.project().fut.poll(cx)
    }
}

/// A poll in progress: what it put off runs when it is dropped. A poll inside another (a task polled
/// inside a task) runs its own work and leaves the outer poll's list as it was.
struct Scope {
    outer: Option<Vec<Deferred>>,
}

impl Scope {
    fn start() -> Scope {
        Scope {
            outer: DEFERRED
                .try_with(|deferred| deferred.replace(Some(Vec::new())))
                .ok()
                .flatten(),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        let work = DEFERRED
            .try_with(|deferred| deferred.replace(outer))
            .ok()
            .flatten();
        for work in work.into_iter().flatten() {
            work();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::rc::Rc;

    fn log() -> Rc<RefCell<Vec<&'static str>>> {
        Rc::new(RefCell::new(Vec::new()))
    }

    fn note(log: &Rc<RefCell<Vec<&'static str>>>, what: &'static str) -> impl FnOnce() + 'static {
        let log = Rc::clone(log);
        move || log.borrow_mut().push(what)
    }

    fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
        let mut fut = std::pin::pin!(fut);
        fut.as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn outside_a_request_poll_the_work_runs_at_once() {
        let log = log();
        after_poll(note(&log, "now"));
        assert_eq!(*log.borrow(), ["now"]);
    }

    #[test]
    fn inside_one_it_runs_in_order_once_the_poll_returned() {
        let log = log();
        let polled = poll_once(deferring(async {
            after_poll(note(&log, "first"));
            after_poll(note(&log, "second"));
            log.borrow_mut().push("poll ends");
        }));
        assert!(polled.is_ready());
        assert_eq!(*log.borrow(), ["poll ends", "first", "second"]);
        // The scope is gone with the poll.
        after_poll(note(&log, "after"));
        assert_eq!(log.borrow().last(), Some(&"after"));
    }

    #[test]
    fn a_pending_poll_runs_its_work_too() {
        let log = log();
        let polled = poll_once(deferring(async {
            after_poll(note(&log, "deferred"));
            std::future::pending::<()>().await
        }));
        assert!(polled.is_pending());
        assert_eq!(*log.borrow(), ["deferred"]);
    }

    #[test]
    fn a_nested_poll_keeps_the_outer_work_for_the_outer_poll() {
        let log = log();
        let _ = poll_once(deferring(async {
            after_poll(note(&log, "outer"));
            let _ = poll_once(deferring(async {
                after_poll(note(&log, "inner"));
            }));
            log.borrow_mut().push("outer poll ends");
        }));
        assert_eq!(*log.borrow(), ["inner", "outer poll ends", "outer"]);
    }

    #[test]
    fn a_poll_that_panics_still_runs_its_work() {
        let log = log();
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            poll_once(deferring(async {
                after_poll(note(&log, "deferred"));
                panic!("test panic in a polled task");
            }))
        }));
        assert!(panicked.is_err());
        assert_eq!(*log.borrow(), ["deferred"]);
        after_poll(note(&log, "after"));
        assert_eq!(*log.borrow(), ["deferred", "after"]);
    }
}
