//! Request slots per origin: each request holds a [`Slot`] among those in flight to its origin while it runs.
//! They enforce undici's `connections` cap and the first-connection gate that keeps a burst of requests to a
//! new HTTP/2 origin on one connection, and they give the counts behind `agent.stats`.
//!
//! hyper-util's pool neither caps connections per host nor tells when it opens or closes one, so the cap is
//! enforced one level up, on requests: an HTTP/1.1 request occupies its connection until its response body
//! ends, so at most `connections` requests in flight means at most `connections` busy sockets. Once an origin
//! answers over HTTP/2 the cap becomes `connections` × [`H2_STREAMS_PER_CONNECTION`] streams.
//!
//! The gate exists because with ALPN the pool learns that an origin speaks HTTP/2 only after a handshake: a
//! burst of requests to an origin without a live connection would each open their own. So when HTTP/2 may be
//! negotiated and nothing is in flight to an origin, the first request goes alone (the probe) until its
//! response head arrives — by then its connection is pooled and shared — or [`PROBE_PATIENCE`] passes.
//! Waiting requests are admitted in arrival order.

use crate::lock;
use crate::options::H2_STREAMS_PER_CONNECTION;
use crate::request::origin_of;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Longest time requests wait behind a probe whose response is slow to come.
pub(crate) const PROBE_PATIENCE: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http1,
    Http2,
}

struct Waiter {
    id: u64,
    admit: oneshot::Sender<()>,
}

struct OriginSlots {
    protocol: Protocol,
    running: usize,
    waiters: VecDeque<Waiter>,
    /// Set while the probe's response is awaited: the instant the others stop waiting for it.
    probe_until: Option<Instant>,
}

impl OriginSlots {
    fn new(protocol: Protocol) -> Self {
        OriginSlots {
            protocol,
            running: 0,
            waiters: VecDeque::new(),
            probe_until: None,
        }
    }
}

/// The request slots of every origin of one agent.
pub(crate) struct Slots {
    /// `connections`, or no cap.
    limit: Option<usize>,
    /// HTTP/2 may be negotiated by ALPN on `https:` origins (allowH2 without h2c).
    gate_https: bool,
    /// Every connection speaks HTTP/2 (h2c): no probing needed, the pool serialises connecting itself.
    all_h2: bool,
    state: Mutex<State>,
}

struct State {
    origins: HashMap<String, OriginSlots>,
    next_id: u64,
    /// `origins.len()` at which idle HTTP/2 entries are next forgotten.
    next_sweep: usize,
}

impl Default for State {
    fn default() -> Self {
        State {
            origins: HashMap::new(),
            next_id: 0,
            next_sweep: FIRST_SWEEP,
        }
    }
}

/// Idle entries are kept only for origins known to speak HTTP/2 (so that a new burst to one shares its
/// connection at once). An agent meeting many origins forgets the idle ones once it knows this many, then each
/// time the table has doubled since: such an origin's next burst waits for one probe again.
const FIRST_SWEEP: usize = 1024;

impl Slots {
    pub(crate) fn new(limit: Option<usize>, allow_h2: bool, h2c: bool) -> Self {
        Slots {
            limit: limit.filter(|&n| n > 0),
            gate_https: allow_h2 && !h2c,
            all_h2: h2c,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn gated(&self, origin: &str) -> bool {
        self.gate_https && origin.starts_with("https:")
    }

    fn capacity(&self, protocol: Protocol) -> usize {
        match (self.limit, protocol) {
            (None, _) => usize::MAX,
            (Some(n), Protocol::Http2) => n.saturating_mul(H2_STREAMS_PER_CONNECTION),
            (Some(n), _) => n,
        }
    }

    /// Whether one more request may start now; marks it as the probe when it has to be one.
    fn try_admit(&self, key: &str, origin: &mut OriginSlots, now: Instant) -> bool {
        if let Some(until) = origin.probe_until {
            if now < until {
                return false;
            }
            origin.probe_until = None;
        }
        if origin.running >= self.capacity(origin.protocol) {
            return false;
        }
        if origin.running == 0 && origin.protocol != Protocol::Http1 && self.gated(key) {
            origin.probe_until = Some(now + PROBE_PATIENCE);
        }
        origin.running += 1;
        true
    }

    /// Admits waiting requests, in order, while there is room.
    fn admit_waiting(&self, key: &str, origin: &mut OriginSlots) {
        let now = Instant::now();
        while !origin.waiters.is_empty() && self.try_admit(key, origin, now) {
            let waiter = origin.waiters.pop_front().expect("checked non-empty");
            if waiter.admit.send(()).is_err() {
                // The request went away while being admitted; its slot is free again.
                origin.running -= 1;
                if origin.running == 0 {
                    origin.probe_until = None;
                }
            }
        }
    }

    /// Waits until a request to `url`'s origin may start. The returned slot holds its place until dropped.
    pub(crate) async fn acquire(self: &Arc<Self>, url: &str) -> Slot {
        self.enter(url).wait().await
    }

    /// Takes a request's place in line for `url`'s origin at once (admitted, or queued behind those before
    /// it): requests entered in some order are admitted in that order, whichever of their tasks runs first.
    pub(crate) fn enter(self: &Arc<Self>, url: &str) -> Entry {
        let key = origin_of(url);
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        let protocol = if self.all_h2 {
            Protocol::Http2
        } else {
            Protocol::Unknown
        };
        if state.origins.len() >= state.next_sweep && !state.origins.contains_key(key) {
            state
                .origins
                .retain(|_, o| o.running > 0 || !o.waiters.is_empty());
            state.next_sweep = (state.origins.len() * 2).max(FIRST_SWEEP);
        }
        let origin = state
            .origins
            .entry(key.to_string())
            .or_insert_with(|| OriginSlots::new(protocol));
        let admitted = if origin.waiters.is_empty() && self.try_admit(key, origin, Instant::now()) {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            origin.waiters.push_back(Waiter { id, admit: tx });
            Some(rx)
        };
        Entry {
            slots: Arc::clone(self),
            key: key.to_string(),
            id,
            admitted,
            done: false,
        }
    }

    fn release(&self, key: &str, protocol: Option<Protocol>) {
        let mut state = self.lock();
        let Some(origin) = state.origins.get_mut(key) else {
            return;
        };
        origin.running = origin.running.saturating_sub(1);
        if let Some(p) = protocol {
            origin.protocol = p;
        }
        if origin.running == 0 {
            origin.probe_until = None;
        }
        self.admit_waiting(key, origin);
        if origin.running == 0 && origin.waiters.is_empty() && origin.protocol != Protocol::Http2 {
            state.origins.remove(key);
        }
    }

    /// The response head of a request to `key` arrived over `version`: the probe (if that was it) is done.
    fn observe(&self, key: &str, version: http::Version) {
        let mut state = self.lock();
        let Some(origin) = state.origins.get_mut(key) else {
            return;
        };
        origin.protocol = if version == http::Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        origin.probe_until = None;
        self.admit_waiting(key, origin);
    }

    /// `(origin, pending, running)` for every origin with requests waiting, running, or HTTP/2 state kept.
    pub(crate) fn counts(&self) -> Vec<(String, usize, usize)> {
        self.lock()
            .origins
            .iter()
            .map(|(origin, o)| (origin.clone(), o.waiters.len(), o.running))
            .collect()
    }
}

/// A request's place among those in flight to its origin, given back when dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    key: String,
    protocol: Mutex<Option<Protocol>>,
}

impl Slot {
    /// Records the protocol the response came over and lets requests held behind a probe go.
    pub(crate) fn observe(&self, version: http::Version) {
        let protocol = if version == http::Version::HTTP_2 {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        *lock(&self.protocol) = Some(protocol);
        self.slots.observe(&self.key, version);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let protocol = *lock(&self.protocol);
        self.slots.release(&self.key, protocol);
    }
}

/// A request's place in line for a [`Slot`] ([`Slots::enter`]). Dropped before it was admitted (the request
/// was aborted or refused), it leaves the queue; admitted and dropped unused, it gives the slot back.
pub(crate) struct Entry {
    slots: Arc<Slots>,
    key: String,
    id: u64,
    /// `None`: admitted when entered.
    admitted: Option<oneshot::Receiver<()>>,
    /// The slot was taken: nothing to undo.
    done: bool,
}

impl Entry {
    /// Waits for the slot (at once when admitted on entering).
    pub(crate) async fn wait(mut self) -> Slot {
        let slots = Arc::clone(&self.slots);
        // Kept in `self` while waiting: should this future be dropped (an abort), `drop` leaves the queue.
        if let Some(admitted) = self.admitted.as_mut() {
            loop {
                let deadline = slots
                    .lock()
                    .origins
                    .get(&self.key)
                    .and_then(|o| o.probe_until);
                let expired = match deadline {
                    Some(deadline) => {
                        tokio::select! {
                            result = &mut *admitted => { let _ = result; false }
                            _ = tokio::time::sleep_until(deadline) => true,
                        }
                    }
                    None => {
                        let _ = (&mut *admitted).await;
                        false
                    }
                };
                if !expired {
                    break;
                }
                // The probe is slow to answer: stop holding the others back.
                let mut state = slots.lock();
                if let Some(origin) = state.origins.get_mut(&self.key) {
                    if origin
                        .probe_until
                        .is_some_and(|until| Instant::now() >= until)
                    {
                        origin.probe_until = None;
                        slots.admit_waiting(&self.key, origin);
                    }
                }
                drop(state);
                if let Ok(()) = admitted.try_recv() {
                    break;
                }
            }
        }
        self.done = true;
        Slot {
            slots,
            key: std::mem::take(&mut self.key),
            protocol: Mutex::new(None),
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.admitted.is_some() {
            let mut state = self.slots.lock();
            let Some(origin) = state.origins.get_mut(&self.key) else {
                return;
            };
            if let Some(at) = origin.waiters.iter().position(|w| w.id == self.id) {
                origin.waiters.remove(at);
                return;
            }
        }
        // Admitted (on entering, or since) and never took its slot.
        self.slots.release(&self.key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pending and running requests of the only origin.
    fn counts(slots: &Slots) -> (usize, usize) {
        let counts = slots.counts();
        assert_eq!(counts.len(), 1);
        (counts[0].1, counts[0].2)
    }

    #[tokio::test]
    async fn entries_are_admitted_in_the_order_they_were_entered_whatever_order_they_wait_in() {
        let slots = Arc::new(Slots::new(Some(1), false, false));
        let first = slots.enter("http://a.test/1");
        let second = slots.enter("http://a.test/2");
        let third = slots.enter("http://a.test/3");
        assert_eq!(counts(&slots), (2, 1));
        let third = tokio::spawn(third.wait());
        let second = tokio::spawn(second.wait());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished() && !third.is_finished());
        drop(first.wait().await);
        let second = second.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!third.is_finished());
        drop(second);
        drop(third.await.unwrap());
        assert!(slots.counts().is_empty());
    }

    #[tokio::test]
    async fn an_entry_dropped_leaves_the_line_or_gives_its_slot_back() {
        let slots = Arc::new(Slots::new(Some(1), false, false));
        let first = slots.enter("http://a.test/1");
        let second = slots.enter("http://a.test/2");
        let third = slots.enter("http://a.test/3");
        drop(second);
        assert_eq!(counts(&slots), (1, 1));
        // Admitted on entering, never waited for: its slot goes to the next in line.
        drop(first);
        drop(third.wait().await);
        assert!(slots.counts().is_empty());
        // A wait dropped midway (an abort) leaves the line too.
        let held = slots.enter("http://a.test/4").wait().await;
        let waiting = slots.enter("http://a.test/5");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting.wait())
                .await
                .is_err()
        );
        assert_eq!(counts(&slots), (0, 1));
        drop(held);
        assert!(slots.counts().is_empty());
    }

    #[tokio::test]
    async fn idle_http2_origins_are_forgotten_once_many_are_known() {
        let slots = Arc::new(Slots::new(None, false, true));
        let busy = slots.acquire("http://busy.test/").await;
        for i in 0..5 * FIRST_SWEEP {
            drop(slots.acquire(&format!("http://o{i}.test/")).await);
        }
        let known = slots.counts();
        assert!(
            known.len() <= 2 * FIRST_SWEEP,
            "{} origins kept",
            known.len()
        );
        assert!(known
            .iter()
            .any(|(origin, _, running)| origin == "http://busy.test" && *running == 1));
        drop(busy);
    }

    #[tokio::test]
    async fn cap_admits_in_order_as_slots_free() {
        let origins = Arc::new(Slots::new(Some(1), false, false));
        let first = origins.acquire("http://a.test/1").await;
        let second = {
            let origins = Arc::clone(&origins);
            tokio::spawn(async move { origins.acquire("http://a.test/2").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!second.is_finished());
        assert_eq!(counts(&origins).0, 1);
        assert_eq!(counts(&origins).1, 1);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counts(&origins).0, 0);
        drop(second);
        assert!(origins.counts().is_empty());
    }

    #[tokio::test]
    async fn abandoned_waiter_leaves_the_queue() {
        let origins = Arc::new(Slots::new(Some(1), false, false));
        let _first = origins.acquire("http://a.test/").await;
        let waiting =
            tokio::time::timeout(Duration::from_millis(20), origins.acquire("http://a.test/"));
        assert!(waiting.await.is_err());
        assert_eq!(counts(&origins).0, 0);
    }

    #[tokio::test]
    async fn probe_holds_the_burst_until_the_head_arrives() {
        let origins = Arc::new(Slots::new(None, true, false));
        let probe = Arc::new(origins.acquire("https://h2.test/").await);
        let next = {
            let origins = Arc::clone(&origins);
            tokio::spawn(async move { origins.acquire("https://h2.test/").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!next.is_finished());
        probe.observe(http::Version::HTTP_2);
        tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn slow_probe_stops_holding_others_back() {
        let origins = Arc::new(Slots::new(None, true, false));
        let _probe = origins.acquire("https://slow.test/").await;
        let started = Instant::now();
        let _next = tokio::time::timeout(
            Duration::from_secs(2),
            origins.acquire("https://slow.test/"),
        )
        .await
        .unwrap();
        assert!(started.elapsed() >= PROBE_PATIENCE - Duration::from_millis(50));
    }

    #[tokio::test]
    async fn h2_origin_gets_streams_per_connection() {
        let origins = Arc::new(Slots::new(Some(1), false, true));
        let mut leases = Vec::new();
        for _ in 0..H2_STREAMS_PER_CONNECTION {
            leases.push(
                tokio::time::timeout(
                    Duration::from_millis(100),
                    origins.acquire("http://h2c.test/"),
                )
                .await
                .unwrap(),
            );
        }
        assert_eq!(counts(&origins).1, H2_STREAMS_PER_CONNECTION);
    }
}
