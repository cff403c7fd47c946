//! Event delivery from tokio threads to the JS thread: one [`EventQueue`] and one Neon `Channel` per agent.
//!
//! Core tasks push events; the first push into an empty queue schedules a drain on the JS thread, once the
//! request task that pushed it returns from its poll (`after_poll`: a response read in one poll is one batch),
//! or at once for a large body chunk (`WAKE_NOW_BYTES`). The drain takes the queued events as one batch, has
//! them encoded (`encode.rs`, in the layout of `protocol.rs`) and hands them to JavaScript in one call, so a
//! burst of responses costs one wake-up of the event loop and one call into JS. JavaScript says when it is
//! done with a batch (`agentDrainDone`) and asks for the next one on a later turn of the event loop.
//!
//! A failure never stops the queue: an event that cannot be encoded fails its own request (see `encode.rs`),
//! credits are released whatever JavaScript did with the batch, and an exception that escapes the delivery
//! leaves the queue able to deliver again before it is reported.

use crate::encode::{self, Batch};
use crate::protocol;
use bytes::Bytes;
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    after_poll, AgentEvent, BodySender, CoreError, DispatchHandler, RawHeaders, RequestController,
    ResponseHead, UpgradeWriter,
};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

/// Most body bytes one drain hands to JavaScript: a burst of large responses is spread over several turns of
/// the event loop instead of blocking it (and allocating) all at once.
const BATCH_BYTES: usize = 1024 * 1024;

/// What a core task reports, on its way to JavaScript.
pub enum Event {
    Start(u64, ResponseHead),
    Data(u64, Bytes, RequestController),
    End(u64, RawHeaders),
    Error(u64, CoreError),
    Pull(u64),
    /// A gated request has its connection and waits for JavaScript's answer.
    Connected(u64),
    /// The retry policy sends the request again (retry number).
    Retry(u64, u32),
    /// A connection or circuit event of the agent whose JS id is given (not a request's).
    Agent(u64, AgentEvent),
    /// The request's connection switched protocols (the 101, or the answer to CONNECT).
    Upgrade(u64, ResponseHead),
    /// The server ended its direction of the request's upgraded connection.
    ReadEnd(u64),
    /// One write onto the request's upgraded connection completed.
    Written(u64),
}

impl Event {
    /// The request this event belongs to (`None` for the agent's own events).
    pub fn request(&self) -> Option<u64> {
        match self {
            Event::Start(id, _)
            | Event::Data(id, _, _)
            | Event::End(id, _)
            | Event::Error(id, _)
            | Event::Pull(id)
            | Event::Connected(id)
            | Event::Retry(id, _)
            | Event::Upgrade(id, _)
            | Event::ReadEnd(id)
            | Event::Written(id) => Some(*id),
            Event::Agent(_, _) => None,
        }
    }
}

/// The JS-side handles of one request in flight: how to steer it, where its pulled body goes and (for a
/// request that leaves HTTP) where the writes onto its upgraded connection go.
pub struct RequestHandle {
    pub controller: RequestController,
    pub body: Option<BodySender>,
    pub upgrade: Option<UpgradeWriter>,
}

/// Requests in flight by id. The ids are the JavaScript layer's own counter, nobody's input: they are
/// hashed by one multiplication instead of SipHash (the default), which took ~600 instructions of every
/// request on the JavaScript thread (an insert at dispatch, a removal at the end).
type Requests = HashMap<u64, RequestHandle, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a `u64` id: consecutive ids spread over the high bits, which the table probes by.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64((self.0 << 8) | u64::from(byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    scheduled: bool,
    /// The scheduled drain waits for the end of a request task's poll (`after_poll`) and has not been sent yet.
    deferred: bool,
}

/// A body chunk at least this large is handed over at once, with what is queued before it, instead of at the
/// end of the poll that read it: a body that large rarely ends in the same poll (the task reads on until its
/// credit is used up), and JavaScript can take it while the task reads on. Measured on GET 1 MiB through
/// `dispatch` (100 in flight): deferring these too cost ~4 % of requests/s and ~3–10 % CPU per request.
const WAKE_NOW_BYTES: usize = 16 * 1024;

pub struct EventQueue {
    /// The JS id of the agent this queue belongs to: batches name it, so JS can ask for the next one.
    agent: u64,
    pending: Mutex<Pending>,
    /// Requests in flight by id, until their end or error has been delivered (or JS aborted them).
    requests: Mutex<Requests>,
    channel: Channel,
    deliver: Root<JsFunction>,
    /// The `Float64Array` batches' numbers are written into, kept from batch to batch (JavaScript reads it
    /// before the delivery returns) and replaced by a larger one when a batch outgrows it.
    numbers: Mutex<Option<Root<JsTypedArray<f64>>>>,
}

impl EventQueue {
    /// `channel` should be an unreferenced clone: keeping the process alive is the agent's decision.
    pub fn new(channel: Channel, deliver: Root<JsFunction>, agent: u64) -> Arc<Self> {
        Arc::new(EventQueue {
            agent,
            pending: Mutex::new(Pending::default()),
            requests: Mutex::new(Requests::default()),
            channel,
            deliver,
            numbers: Mutex::new(None),
        })
    }

    pub fn register(&self, id: u64, handle: RequestHandle) {
        lock(&self.requests).insert(id, handle);
    }

    /// How many requests are in flight.
    pub fn in_flight(&self) -> usize {
        lock(&self.requests).len()
    }

    /// Runs `f` on the handle of request `id`, if it is still in flight.
    pub fn with_request<T>(&self, id: u64, f: impl FnOnce(&RequestHandle) -> T) -> Option<T> {
        lock(&self.requests).get(&id).map(f)
    }

    /// Forgets request `id` (JS aborted it, or it ended) and returns its handle.
    pub fn remove(&self, id: u64) -> Option<RequestHandle> {
        lock(&self.requests).remove(&id)
    }

    /// Aborts every request in flight: nobody is left to hear of them (see `NativeAgent`'s finalizer).
    pub fn abort_all(&self) {
        let requests = std::mem::take(&mut *lock(&self.requests));
        for handle in requests.into_values() {
            handle.controller.abort();
        }
    }

    pub fn push(self: &Arc<Self>, event: Event) {
        let large = matches!(&event, Event::Data(_, chunk, _) if chunk.len() >= WAKE_NOW_BYTES);
        let (now, defer) = {
            let mut pending = lock(&self.pending);
            pending.events.push(event);
            if !std::mem::replace(&mut pending.scheduled, true) {
                pending.deferred = !large;
                (large, !large)
            } else if large && pending.deferred {
                // A drain waiting for the end of some poll: this chunk sends it now.
                pending.deferred = false;
                (true, false)
            } else {
                (false, false)
            }
        };
        if now {
            self.schedule_drain();
        } else if defer {
            // Once the request task pushing this returns from its poll: the rest of a response read in the
            // same poll (its data, its end) joins the batch instead of following as deliveries of their own.
            let queue = Arc::clone(self);
            after_poll(move || {
                let send = std::mem::replace(&mut lock(&queue.pending).deferred, false);
                if send {
                    queue.schedule_drain();
                }
            });
        }
    }

    fn schedule_drain(self: &Arc<Self>) {
        let queue = Arc::clone(self);
        // Fails only while Node shuts down, when nobody is left to deliver to.
        let _ = self.channel.try_send(move |mut cx| queue.drain(&mut cx));
    }

    /// Takes the events of one batch: all that are queued, except that body bytes stop at [`BATCH_BYTES`] (at
    /// least one event goes). The queue stays marked as scheduled: see [`Self::finish_drain`].
    fn take_batch(&self) -> Vec<Event> {
        let mut pending = lock(&self.pending);
        let mut bytes = 0;
        let cut = pending.events.iter().position(|event| {
            if let Event::Data(_, chunk, _) = event {
                if bytes > 0 && bytes + chunk.len() > BATCH_BYTES {
                    return true;
                }
                bytes += chunk.len();
            }
            false
        });
        match cut {
            Some(at) => {
                let rest = pending.events.split_off(at);
                std::mem::replace(&mut pending.events, rest)
            }
            None => std::mem::take(&mut pending.events),
        }
    }

    /// Called by JS once it has processed a batch: returns whether events are waiting. If so, the queue stays
    /// scheduled and JS asks for the next batch on a later turn of the event loop (`setImmediate`); otherwise
    /// the next push wakes the loop again.
    ///
    /// Rescheduling from here instead would not yield: Node runs up to 1000 queued threadsafe-function calls
    /// per wake-up, so under sustained load drains would chain without timers, I/O or finalizers running.
    pub fn finish_drain(&self) -> bool {
        let mut pending = lock(&self.pending);
        if pending.events.is_empty() {
            pending.scheduled = false;
            false
        } else {
            true
        }
    }

    /// Hands the next batch to JavaScript: `deliver(numbers, count, text, data, buffers, agentId)`.
    pub fn drain<'a, C: Context<'a>>(self: &Arc<Self>, cx: &mut C) -> NeonResult<()> {
        let Batch {
            numbers,
            text,
            data,
            buffers,
            released,
            finished,
            failed,
        } = encode::batch(cx, self.take_batch())?;
        if !finished.is_empty() || !failed.is_empty() {
            let mut requests = lock(&self.requests);
            for id in finished {
                requests.remove(&id);
            }
            for id in failed {
                // The request was told it failed: the core stops working on it.
                if let Some(handle) = requests.remove(&id) {
                    handle.controller.abort();
                }
            }
        }
        let mut array = self.numbers_array(cx, numbers.len())?;
        array.as_mut_slice(cx)[..numbers.len()].copy_from_slice(&numbers);
        let count = cx.number((numbers.len() / protocol::EVENT_FIELDS.len()) as f64);
        let agent = cx.number(self.agent as f64);
        let data = match data {
            Some(buffer) => buffer.upcast::<JsValue>(),
            None => cx.undefined().upcast(),
        };
        let buffers = match buffers {
            Some(list) => list.upcast::<JsValue>(),
            None => cx.undefined().upcast(),
        };
        let deliver = self.deliver.to_inner(cx);
        let delivered = cx.try_catch(|cx| {
            deliver
                .call_with(cx)
                .args((array, count, text, data, buffers, agent))
                .exec(cx)
        });
        // The JS side has taken the data (or dropped it with its request): it no longer counts as in flight.
        for (controller, bytes) in released {
            controller.release(bytes);
        }
        if let Err(exception) = delivered {
            // JS reports its listeners' and handlers' exceptions itself; this one escaped the delivery before
            // JS could say it was done with the batch. Keep the queue delivering, then report it (once).
            if self.finish_drain() {
                self.schedule_drain();
            }
            return cx.throw(exception);
        }
        Ok(())
    }
}

impl EventQueue {
    /// The queue's `Float64Array`, holding at least `len` numbers.
    fn numbers_array<'a, C: Context<'a>>(
        &self,
        cx: &mut C,
        len: usize,
    ) -> JsResult<'a, JsTypedArray<f64>> {
        let mut kept = lock(&self.numbers);
        if let Some(root) = kept.as_ref() {
            let array = root.to_inner(cx);
            if array.len(cx) >= len {
                return Ok(array);
            }
        }
        let array = JsTypedArray::<f64>::new(cx, len.next_power_of_two().max(1024))?;
        if let Some(old) = kept.replace(array.root(cx)) {
            old.drop(cx);
        }
        Ok(array)
    }
}

/// Locks `m`, recovering from poisoning: the data behind these locks stays consistent even if a holder
/// panicked (each critical section is a single insert, remove or take).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forwards one request's events to its agent's queue.
pub struct QueueHandler {
    pub id: u64,
    pub queue: Arc<EventQueue>,
    pub controller: RequestController,
}

impl DispatchHandler for QueueHandler {
    fn on_response_start(&mut self, head: ResponseHead) {
        self.queue.push(Event::Start(self.id, head));
    }

    fn on_response_data(&mut self, chunk: Bytes) {
        self.queue
            .push(Event::Data(self.id, chunk, self.controller.clone()));
    }

    fn on_response_end(&mut self, trailers: RawHeaders) {
        self.queue.push(Event::End(self.id, trailers));
    }

    fn on_error(&mut self, error: CoreError) {
        self.queue.push(Event::Error(self.id, error));
    }

    fn on_retry(&mut self, retry: u32) {
        self.queue.push(Event::Retry(self.id, retry));
    }

    fn on_upgrade(&mut self, head: ResponseHead) {
        self.queue.push(Event::Upgrade(self.id, head));
    }

    fn on_upgrade_read_end(&mut self) {
        self.queue.push(Event::ReadEnd(self.id));
    }

    fn on_upgrade_written(&mut self) {
        self.queue.push(Event::Written(self.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_hash_apart_in_the_high_bits() {
        let build = BuildHasherDefault::<IdHasher>::default();
        let tops: std::collections::HashSet<u64> =
            (1..=128u64).map(|id| build.hash_one(id) >> 57).collect();
        // 128 consecutive ids over the 7 bits the table's control bytes keep: most of them distinct.
        assert!(tops.len() > 64, "{} distinct", tops.len());
        let mut other = IdHasher::default();
        other.write(&7u64.to_le_bytes());
        assert_ne!(other.finish(), 0);
    }
}
