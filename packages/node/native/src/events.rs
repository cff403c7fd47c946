//! Event delivery from tokio threads to the JS thread: one queue and one Neon `Channel` per agent.
//!
//! Core tasks push events; the first push into an empty queue schedules a drain on the JS thread. The drain
//! takes every queued event and hands them to JavaScript in one call, so a burst of responses costs one wake-up
//! of the event loop and one call into JS. The batch is a flat array: first one Buffer holding the body bytes of
//! every data event in the batch (JS takes `subarray` views of it), then the agent's JS id, then `kind, id, a, b`
//! quadruples:
//!
//! | kind  | a                        | b                                              |
//! |-------|--------------------------|------------------------------------------------|
//! | START | status + 1000 × version (10, 11, 20) | `remote\0local\0statusText\0name\0value…` (latin1) |
//! | DATA  | offset in the batch Buffer, or a Buffer of its own | length                 |
//! | END   | `name\0value…` or `""`   | –                                              |
//! | ERROR | code                     | message                                        |
//! | PULL  | –                        | –                                              |
//! | CONNECTING, DISCONNECT | origin          | –                                              |
//! | CONNECT | origin                 | `remote\0h1` or `remote\0h2` (remote `ip:port`, empty when unknown) |
//! | CONNECTION_ERROR    | origin             | `code\0message`                               |
//! | RETRY | retry number (from 1) | –                                              |
//! | CIRCUIT | origin               | `closed`, `open` or `half-open`                |
//!
//! Connection and circuit events carry the agent's id where request events carry the request's.
//!
//! One string per head instead of one per header and one Buffer per batch instead of one per chunk keep the
//! number of N-API calls per request small; both showed up in profiles.

use crate::marshal::{join_fields, join_fields_after, FIELD_SEPARATOR};
use bytes::{Bytes, BytesMut};
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    AgentEvent, BodySender, ConnectionEvent, CoreError, DispatchHandler, RawHeaders,
    RequestController, ResponseHead,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Most body bytes one drain hands to JavaScript: a burst of large responses is spread over several turns of
/// the event loop instead of blocking it (and allocating) all at once.
const BATCH_BYTES: usize = 1024 * 1024;

// Event kinds, mirrored in src/native.ts.
const START: f64 = 1.0;
const DATA: f64 = 2.0;
const END: f64 = 3.0;
const ERROR: f64 = 4.0;
const PULL: f64 = 5.0;
const CONNECT: f64 = 6.0;
const DISCONNECT: f64 = 7.0;
const CONNECTION_ERROR: f64 = 8.0;
const RETRY: f64 = 9.0;
const CIRCUIT: f64 = 10.0;
const CONNECTING: f64 = 11.0;

pub enum Event {
    Start(u64, ResponseHead),
    Data(u64, Bytes, RequestController),
    End(u64, RawHeaders),
    Error(u64, CoreError),
    Pull(u64),
    /// The retry policy sends the request again (retry number).
    Retry(u64, u32),
    /// A connection or circuit event of the agent whose JS id is given (not a request's).
    Agent(u64, AgentEvent),
}

/// The JS-side handles of one request in flight: how to steer it and where its pulled body goes.
pub struct RequestHandle {
    pub controller: RequestController,
    pub body: Option<BodySender>,
}

#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    scheduled: bool,
}

pub struct EventQueue {
    /// The JS id of the agent this queue belongs to: batches name it, so JS can ask for the next one.
    agent: u64,
    pending: Mutex<Pending>,
    /// Requests in flight by id, until their end or error has been delivered (or JS aborted them).
    requests: Mutex<HashMap<u64, RequestHandle>>,
    channel: Channel,
    deliver: Root<JsFunction>,
}

impl EventQueue {
    /// `channel` should be an unreferenced clone: keeping the process alive is the agent's decision.
    pub fn new(channel: Channel, deliver: Root<JsFunction>, agent: u64) -> Arc<Self> {
        Arc::new(EventQueue {
            agent,
            pending: Mutex::new(Pending::default()),
            requests: Mutex::new(HashMap::new()),
            channel,
            deliver,
        })
    }

    pub fn register(&self, id: u64, handle: RequestHandle) {
        lock(&self.requests).insert(id, handle);
    }

    /// Runs `f` on the handle of request `id`, if it is still in flight.
    pub fn with_request<T>(&self, id: u64, f: impl FnOnce(&RequestHandle) -> T) -> Option<T> {
        lock(&self.requests).get(&id).map(f)
    }

    /// Forgets request `id` (JS aborted it) and returns its handle.
    pub fn remove(&self, id: u64) -> Option<RequestHandle> {
        lock(&self.requests).remove(&id)
    }

    pub fn push(self: &Arc<Self>, event: Event) {
        let schedule = {
            let mut pending = lock(&self.pending);
            pending.events.push(event);
            !std::mem::replace(&mut pending.scheduled, true)
        };
        if schedule {
            self.schedule_drain();
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

    /// Hands the next batch to JavaScript.
    pub fn drain<'a, C: Context<'a>>(&self, cx: &mut C) -> NeonResult<()> {
        let mut events = self.take_batch();
        // Large unshared chunks of requests that were never paused go as Buffers of their own; every other
        // chunk is copied into the batch's one Buffer.
        let mut own: Vec<Option<BytesMut>> = Vec::new();
        let mut data_len = 0;
        for event in &mut events {
            if let Event::Data(_, chunk, controller) = event {
                let owned = if controller.was_paused() {
                    None
                } else {
                    own_chunk(chunk)
                };
                if owned.is_none() {
                    data_len += chunk.len();
                }
                own.push(owned);
            }
        }
        let mut own = own.into_iter();
        // V8 allocates the batch Buffer's memory itself: young Buffers of that kind count towards V8's
        // young-generation limit, so a slow consumer's garbage is collected by scavenges (~32 MiB) rather
        // than waiting for the external-memory limit of a full GC (~64 MiB), as external Buffers do.
        let mut data = if data_len > 0 {
            Some(JsBuffer::new(cx, data_len)?)
        } else {
            None
        };
        let mut filled = 0;
        let mut released: Vec<(RequestController, usize)> = Vec::new();
        let mut finished: Vec<u64> = Vec::new();

        let batch = JsArray::new(cx, 2 + events.len() * 4);
        for (i, event) in events.into_iter().enumerate() {
            let at = 2 + (i * 4) as u32;
            let (kind, id) = match event {
                Event::Start(id, head) => {
                    let status = cx.number(start_code(&head));
                    batch.set(cx, at + 2, status)?;
                    let fields = cx.string(join_fields_after(
                        connection_fields(&head),
                        Some(&head.status_text),
                        &head.headers,
                    ));
                    batch.set(cx, at + 3, fields)?;
                    (START, id)
                }
                Event::Data(id, chunk, controller) => {
                    let length = match (own.next().flatten(), &mut data) {
                        // A large chunk nothing else shares becomes a Buffer of its own, uncopied.
                        (Some(owned), _) => {
                            let length = owned.len();
                            let buffer = JsBuffer::external(cx, owned);
                            batch.set(cx, at + 2, buffer)?;
                            length
                        }
                        (None, Some(buffer)) => {
                            let length = chunk.len();
                            buffer.as_mut_slice(cx)[filled..filled + length]
                                .copy_from_slice(&chunk);
                            let offset = cx.number(filled as f64);
                            batch.set(cx, at + 2, offset)?;
                            filled += length;
                            length
                        }
                        // Cannot happen: every chunk not owned counted towards the batch Buffer's length.
                        (None, None) => {
                            return cx.throw_error("reqwest-dispatcher: batch Buffer missing")
                        }
                    };
                    released.push((controller, length));
                    let length = cx.number(length as f64);
                    batch.set(cx, at + 3, length)?;
                    (DATA, id)
                }
                Event::End(id, trailers) => {
                    let fields = cx.string(join_fields(None, &trailers));
                    batch.set(cx, at + 2, fields)?;
                    finished.push(id);
                    (END, id)
                }
                Event::Error(id, error) => {
                    let code = cx.string(error.code());
                    batch.set(cx, at + 2, code)?;
                    let message = cx.string(&error.message);
                    batch.set(cx, at + 3, message)?;
                    finished.push(id);
                    (ERROR, id)
                }
                Event::Pull(id) => (PULL, id),
                Event::Retry(id, retry) => {
                    let retry = cx.number(retry);
                    batch.set(cx, at + 2, retry)?;
                    (RETRY, id)
                }
                Event::Agent(agent, AgentEvent::Circuit { origin, state }) => {
                    let origin = cx.string(origin);
                    batch.set(cx, at + 2, origin)?;
                    let state = cx.string(state.as_str());
                    batch.set(cx, at + 3, state)?;
                    (CIRCUIT, agent)
                }
                Event::Agent(agent, AgentEvent::Connection(event)) => {
                    let (kind, origin, detail) = match event {
                        ConnectionEvent::Connecting { origin } => (CONNECTING, origin, None),
                        ConnectionEvent::Connected { origin, remote, h2 } => {
                            // `remote\0h2|h1`: the peer (empty when unknown) and the negotiated protocol.
                            let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                            let protocol = if h2 { "h2" } else { "h1" };
                            (CONNECT, origin, Some(format!("{remote}\0{protocol}")))
                        }
                        ConnectionEvent::Disconnected { origin } => (DISCONNECT, origin, None),
                        ConnectionEvent::Failed { origin, error } => (
                            CONNECTION_ERROR,
                            origin,
                            Some(format!("{}\0{}", error.code(), error.message)),
                        ),
                    };
                    let origin = cx.string(origin);
                    batch.set(cx, at + 2, origin)?;
                    if let Some(detail) = detail {
                        let detail = cx.string(detail);
                        batch.set(cx, at + 3, detail)?;
                    }
                    (kind, agent)
                }
            };
            let kind = cx.number(kind);
            batch.set(cx, at, kind)?;
            let id = cx.number(id as f64);
            batch.set(cx, at + 1, id)?;
        }
        let agent = cx.number(self.agent as f64);
        batch.set(cx, 1, agent)?;
        if let Some(buffer) = data {
            batch.set(cx, 0, buffer)?;
        }
        if !finished.is_empty() {
            let mut requests = lock(&self.requests);
            for id in finished {
                requests.remove(&id);
            }
        }
        let deliver = self.deliver.to_inner(cx);
        let result = deliver.call_with(cx).arg(batch).exec(cx);
        // The JS side has taken the data (or dropped it with its request): it no longer counts as in flight.
        for (controller, bytes) in released {
            controller.release(bytes);
        }
        result
    }
}

/// Chunks at least this large go to JavaScript as Buffers of their own when nothing else holds their memory:
/// copying them into the batch Buffer cost a memcpy per byte on the JS thread (~12% of its time with 1 MiB
/// responses). Smaller ones share the batch Buffer: one N-API Buffer per batch, not per chunk.
const OWN_BUFFER_BYTES: usize = 64 * 1024;

/// The chunk's memory, owned, if it is large and unshared (hyper hands over its read buffer's bytes); the
/// chunk is left empty then.
fn own_chunk(chunk: &mut Bytes) -> Option<BytesMut> {
    if chunk.len() < OWN_BUFFER_BYTES {
        return None;
    }
    match std::mem::take(chunk).try_into_mut() {
        Ok(owned) => Some(owned),
        Err(shared) => {
            *chunk = shared;
            None
        }
    }
}

/// A START event's number: the status plus 1000 × the HTTP version (10, 11, 20).
fn start_code(head: &ResponseHead) -> f64 {
    let version = match head.version {
        http::Version::HTTP_09 => 9.0,
        http::Version::HTTP_10 => 10.0,
        http::Version::HTTP_2 => 20.0,
        http::Version::HTTP_3 => 30.0,
        _ => 11.0,
    };
    f64::from(head.status) + 1000.0 * version
}

/// `remote\0local\0`: the connection's addresses (`ip:port`, empty when unknown), ahead of the head fields.
fn connection_fields(head: &ResponseHead) -> String {
    let mut out = String::with_capacity(48);
    for addr in [head.remote_addr, head.local_addr] {
        if let Some(addr) = addr {
            let _ = write!(out, "{addr}");
        }
        out.push(FIELD_SEPARATOR);
    }
    out
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
}
