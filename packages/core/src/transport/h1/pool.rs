//! Idle connections per origin, with undici's keep-alive rules: an idle connection is kept for
//! `keepAliveTimeout`, or for the server's `Keep-Alive: timeout=` hint less `keepAliveTimeoutThreshold`,
//! capped by `keepAliveMaxTimeout` (a hint at or below the threshold means no reuse). The most recently used
//! connection is taken first.
//!
//! One watcher task per pool, alive only while something is idle, closes connections whose time ran out and
//! notices at once when the server closes (or writes to) an idle one: every idle socket's read readiness is
//! registered with the watcher's waker, so the reactor wakes it — no task per connection.

use super::conn::Connection;
use crate::lock;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// undici's keep-alive options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeepAlive {
    pub timeout: Duration,
    pub max_timeout: Duration,
    pub threshold: Duration,
}

impl KeepAlive {
    /// How long a connection may idle after a response with `hint` (`Keep-Alive: timeout=`); `None`: close it.
    /// At most a year, so that a deadline can always be computed.
    pub(crate) fn idle_for(&self, hint: Option<Duration>) -> Option<Duration> {
        const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
        let idle = match hint {
            Some(hint) => hint.saturating_sub(self.threshold).min(self.max_timeout),
            None => self.timeout,
        };
        (!idle.is_zero()).then_some(idle.min(YEAR))
    }
}

struct Idle {
    connection: Box<Connection>,
    until: Instant,
}

#[derive(Default)]
struct State {
    origins: HashMap<String, Vec<Idle>>,
    /// A watcher task is running.
    watching: bool,
    /// The watcher's waker, once it ran: connections checked in register their readiness with it.
    watcher: Option<Waker>,
}

/// The idle connections of one agent.
#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<State>,
}

impl Pool {
    /// An idle connection to `origin` that is still open, if there is one.
    pub(crate) fn checkout(&self, origin: &str) -> Option<Box<Connection>> {
        let mut stale = Vec::new();
        let found = {
            let mut state = lock(&self.state);
            let idle = state.origins.get_mut(origin)?;
            let now = Instant::now();
            let mut found = None;
            while let Some(mut entry) = idle.pop() {
                if entry.until > now && entry.connection.reusable() {
                    found = Some(entry.connection);
                    break;
                }
                stale.push(entry.connection);
            }
            if idle.is_empty() {
                state.origins.remove(origin);
            }
            found
        };
        // Closing (and announcing it) happens outside the lock.
        drop(stale);
        found
    }

    /// Keeps `connection` for reuse during `idle_for`.
    pub(crate) fn checkin(self: &Arc<Self>, mut connection: Box<Connection>, idle_for: Duration) {
        if !connection.park() {
            return;
        }
        let until = Instant::now() + idle_for;
        let start_watcher = {
            let mut state = lock(&self.state);
            if let Some(waker) = &state.watcher {
                // Registers the socket's readiness with the watcher (or finds it closed already).
                if !connection.watch(&mut Context::from_waker(waker)) {
                    drop(state);
                    return;
                }
            }
            match state.origins.get_mut(connection.origin()) {
                Some(idle) => idle.push(Idle { connection, until }),
                None => {
                    let origin = connection.origin().to_string();
                    state
                        .origins
                        .insert(origin, vec![Idle { connection, until }]);
                }
            }
            !std::mem::replace(&mut state.watching, true)
        };
        if start_watcher {
            tokio::spawn(Watcher {
                pool: Arc::downgrade(self),
                sleep: Box::pin(tokio::time::sleep_until(until)),
            });
        }
    }

    /// One look at every idle connection: closes those that expired, were closed by the server or got
    /// bytes nobody asked for, and registers the rest with `cx`. Returns when the next one expires, or
    /// `None` when nothing is idle any more (the watcher then stops).
    fn watch(&self, cx: &mut Context<'_>, now: Instant) -> Option<Instant> {
        let mut state = lock(&self.state);
        let mut next: Option<Instant> = None;
        // Closed connections go (and announce it) in place, under the lock: a close is one syscall.
        state.origins.retain(|_, idle| {
            idle.retain_mut(|entry| {
                let keep = entry.until > now && entry.connection.watch(cx);
                if keep {
                    next = Some(next.map_or(entry.until, |n| n.min(entry.until)));
                }
                keep
            });
            !idle.is_empty()
        });
        if next.is_none() {
            state.watching = false;
            state.watcher = None;
        } else if !state
            .watcher
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.watcher = Some(cx.waker().clone());
        }
        next
    }
}

/// The pool's watcher task: woken by an idle socket becoming readable or by the next expiry.
struct Watcher {
    pool: Weak<Pool>,
    sleep: Pin<Box<Sleep>>,
}

impl Future for Watcher {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some(pool) = self.pool.upgrade() else {
                return Poll::Ready(());
            };
            let Some(next) = pool.watch(cx, Instant::now()) else {
                return Poll::Ready(());
            };
            drop(pool);
            self.sleep.as_mut().reset(next);
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeepAlive;
    use std::time::Duration;

    #[test]
    fn the_servers_hint_less_the_threshold_caps_idle_time() {
        let keep = KeepAlive {
            timeout: Duration::from_secs(4),
            max_timeout: Duration::from_secs(600),
            threshold: Duration::from_secs(2),
        };
        assert_eq!(keep.idle_for(None), Some(Duration::from_secs(4)));
        assert_eq!(
            keep.idle_for(Some(Duration::from_secs(5))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(keep.idle_for(Some(Duration::from_secs(2))), None);
        let capped = KeepAlive {
            max_timeout: Duration::from_secs(1),
            ..keep
        };
        assert_eq!(
            capped.idle_for(Some(Duration::from_secs(60))),
            Some(Duration::from_secs(1))
        );
    }
}
