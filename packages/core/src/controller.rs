//! Control of one request in flight from outside its task: abort, pause/resume, and the credit that bounds
//! how many response bytes may sit between the core and a consumer that has not taken them yet.

use crate::error::{CoreError, ErrorKind};
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

#[derive(Default)]
struct ControlState {
    aborted: AtomicBool,
    paused: AtomicBool,
    /// Set by the first pause and never cleared: the consumer is one that holds the stream back.
    was_paused: AtomicBool,
    /// Response bytes handed to the handler and not yet released by the consumer.
    outstanding: AtomicUsize,
    /// Most bytes that may be outstanding before the core stops reading; 0 = no limit.
    credit: usize,
    changed: Notify,
    /// The gate of a gated request ([`RequestController::open_gate`]): [`GATE_SHUT`] until its connection is
    /// announced, [`GATE_ANNOUNCED`] while the caller decides, [`GATE_OPEN`] once it said go.
    gate: AtomicU8,
}

const GATE_SHUT: u8 = 0;
const GATE_ANNOUNCED: u8 = 1;
const GATE_OPEN: u8 = 2;

/// A cloneable handle on one request. Aborting drops the request's future, which closes (HTTP/1.1) or resets
/// (HTTP/2) its stream; pausing stops reading the response so the server meets TCP/flow-control backpressure.
#[derive(Clone, Default)]
pub struct RequestController {
    state: Arc<ControlState>,
}

impl RequestController {
    /// A controller without a credit limit: the core reads as fast as the handler takes data.
    pub fn new() -> Self {
        Self::default()
    }

    /// A controller that stops reading once `credit` bytes were handed over and not yet [`released`](Self::release).
    pub fn with_credit(credit: usize) -> Self {
        RequestController {
            state: Arc::new(ControlState {
                credit,
                ..ControlState::default()
            }),
        }
    }

    pub fn abort(&self) {
        self.state.aborted.store(true, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
        self.state.was_paused.store(true, Ordering::Relaxed);
    }

    /// Lets a gated request (one dispatched with [`DispatchRequest::gate`](crate::DispatchRequest::gate)) write
    /// itself onto the connection it was announced with. Nothing of it is written before; an abort instead
    /// leaves that connection unwritten.
    pub fn open_gate(&self) {
        self.state.gate.store(GATE_OPEN, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    /// Whether the request was ever paused: its consumer reads slower than the network delivers.
    pub fn was_paused(&self) -> bool {
        self.state.was_paused.load(Ordering::Relaxed)
    }

    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    /// The consumer took `bytes` of response data: they no longer count against the credit.
    pub fn release(&self, bytes: usize) {
        self.state.outstanding.fetch_sub(bytes, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    fn is_aborted(&self) -> bool {
        self.state.aborted.load(Ordering::SeqCst)
    }

    pub(crate) fn charge(&self, bytes: usize) {
        if self.state.credit > 0 {
            self.state.outstanding.fetch_add(bytes, Ordering::SeqCst);
        }
    }

    fn may_read(&self) -> bool {
        let s = &self.state;
        !s.paused.load(Ordering::SeqCst)
            && (s.credit == 0 || s.outstanding.load(Ordering::SeqCst) < s.credit)
    }

    /// Resolves once the request is aborted.
    pub(crate) fn aborted(&self) -> impl Future<Output = ()> + '_ {
        self.wait_until(|c| c.is_aborted())
    }

    /// Resolves once the response may be read further (not paused, credit left).
    pub(crate) fn ready(&self) -> impl Future<Output = ()> + '_ {
        self.wait_until(|c| c.may_read())
    }

    /// [`Self::ready`] for a hand-written poll loop: `waiter` keeps the registration between polls (it is
    /// only allocated while the consumer holds the stream back).
    pub(crate) fn poll_ready<'a>(
        &'a self,
        cx: &mut Context<'_>,
        waiter: &mut Option<Pin<Box<Notified<'a>>>>,
    ) -> Poll<()> {
        loop {
            if self.may_read() {
                *waiter = None;
                return Poll::Ready(());
            }
            let notified = waiter.get_or_insert_with(|| Box::pin(self.state.changed.notified()));
            notified.as_mut().enable();
            if self.may_read() {
                *waiter = None;
                return Poll::Ready(());
            }
            if notified.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *waiter = None;
        }
    }

    /// The step of a gated request between getting its connection and writing on it: the first time, tells the
    /// caller (`announce`), then waits for [`Self::open_gate`]; at once once the gate is open (a retry). Fails
    /// when the request is aborted meanwhile.
    pub(crate) async fn pass_gate(
        &self,
        announce: &(dyn Fn() + Send + Sync),
    ) -> Result<(), CoreError> {
        let gate = &self.state.gate;
        if gate.load(Ordering::SeqCst) == GATE_OPEN {
            return Ok(());
        }
        if gate
            .compare_exchange(
                GATE_SHUT,
                GATE_ANNOUNCED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            announce();
        }
        self.wait_until(|c| c.is_aborted() || c.state.gate.load(Ordering::SeqCst) == GATE_OPEN)
            .await;
        if self.is_aborted() {
            return Err(CoreError::new(ErrorKind::Aborted, "Request aborted"));
        }
        Ok(())
    }

    async fn wait_until(&self, cond: impl Fn(&Self) -> bool) {
        // Fast path, taken for nearly every body frame: no waiter is registered (that locks the Notify).
        if cond(self) {
            return;
        }
        loop {
            let mut notified = pin!(self.state.changed.notified());
            // Registering before checking closes the gap where a change lands between check and wait.
            notified.as_mut().enable();
            if cond(self) {
                return;
            }
            notified.await;
        }
    }
}

/// The gate of one attempt of a gated request: passed ([`Gate::pass`]) once its connection is assigned,
/// before anything is written on it.
#[derive(Clone, Copy)]
pub(crate) struct Gate<'a> {
    pub(crate) controller: &'a RequestController,
    pub(crate) announce: &'a (dyn Fn() + Send + Sync),
}

impl Gate<'_> {
    pub(crate) async fn pass(self) -> Result<(), CoreError> {
        self.controller.pass_gate(self.announce).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn ready_waits_for_resume() {
        let c = RequestController::new();
        c.pause();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.ready().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        c.resume();
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn gate_announces_once_and_waits_for_go() {
        let c = RequestController::new();
        let announced = Arc::new(AtomicUsize::new(0));
        let announce = {
            let announced = Arc::clone(&announced);
            move || {
                announced.fetch_add(1, Ordering::SeqCst);
            }
        };
        let waiter = {
            let c = c.clone();
            let announce = announce.clone();
            tokio::spawn(async move { c.pass_gate(&announce).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        assert_eq!(announced.load(Ordering::SeqCst), 1);
        c.open_gate();
        waiter.await.unwrap().unwrap();
        // A later attempt passes at once, unannounced.
        c.pass_gate(&announce).await.unwrap();
        assert_eq!(announced.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gate_fails_on_abort() {
        let c = RequestController::new();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.pass_gate(&|| {}).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.abort();
        assert_eq!(waiter.await.unwrap().unwrap_err().kind, ErrorKind::Aborted);
    }

    #[tokio::test]
    async fn credit_blocks_until_released() {
        let c = RequestController::with_credit(10);
        c.charge(10);
        assert!(!c.may_read());
        c.release(4);
        assert!(c.may_read());
    }
}
