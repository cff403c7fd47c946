//! Encoding of one batch of events into the flat array JavaScript reads (layout in `protocol.rs`): an encoder
//! per event kind, and the containment of a failure to the event it happened in.
//!
//! One string per head instead of one per header, and one Buffer per batch for small body chunks instead of one
//! per chunk, keep the number of N-API calls per request small; both showed up in profiles. Large chunks that
//! nothing else shares travel as Buffers of their own, uncopied.
//!
//! Creating a string or a Buffer can fail (an exception: a string beyond V8's limit; a panic: a host that
//! forbids external Buffers). Such a failure ends the request the event belongs to with `UND_ERR_INTERNAL`
//! and the rest of the batch is encoded as usual: one bad event never strands the others.

use crate::marshal::{join_fields, join_fields_after};
use crate::protocol::{self, slot, FIELD_SEPARATOR};
use crate::queue::Event;
use bytes::{Bytes, BytesMut};
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    AgentEvent, ConnectionEvent, CoreError, ErrorKind, RawHeaders, RequestController, ResponseHead,
};
use std::fmt::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An encoded batch and what the queue must do once it is delivered.
pub struct Batch<'a> {
    pub array: Handle<'a, JsArray>,
    /// Body bytes handed over, to be released from each request's credit once JavaScript has them.
    pub released: Vec<(RequestController, usize)>,
    /// Requests whose end or error the batch carries.
    pub finished: Vec<u64>,
    /// Requests failed because one of their events could not be encoded.
    pub failed: Vec<u64>,
}

/// What the error of a request whose event could not be encoded says first.
const UNDELIVERABLE: &str = "reqwest-dispatcher could not hand a response event to JavaScript";

/// Chunks at least this large go to JavaScript as Buffers of their own when nothing else holds their memory:
/// copying them into the batch Buffer cost a memcpy per byte on the JS thread (~12% of its time with 1 MiB
/// responses). Smaller ones share the batch Buffer: one N-API Buffer per batch, not per chunk.
const OWN_BUFFER_BYTES: usize = 64 * 1024;

/// Encodes `events`, the batch of the agent whose JS id is `agent`.
pub fn batch<'a, C: Context<'a>>(
    cx: &mut C,
    agent: u64,
    mut events: Vec<Event>,
) -> NeonResult<Batch<'a>> {
    // Large unshared chunks of requests that were never paused go as Buffers of their own; every other
    // chunk is copied into the batch's one Buffer.
    let mut owned: Vec<Option<BytesMut>> = Vec::with_capacity(events.len());
    let mut data_len = 0;
    for event in &mut events {
        let own = match event {
            Event::Data(_, chunk, controller) if !controller.was_paused() => own_chunk(chunk),
            _ => None,
        };
        if let (Event::Data(_, chunk, _), None) = (&*event, &own) {
            data_len += chunk.len();
        }
        owned.push(own);
    }
    // V8 allocates the batch Buffer's memory itself: young Buffers of that kind count towards V8's
    // young-generation limit, so a slow consumer's garbage is collected by scavenges (~32 MiB) rather
    // than waiting for the external-memory limit of a full GC (~64 MiB), as external Buffers do.
    let data = if data_len > 0 {
        Some(JsBuffer::new(cx, data_len)?)
    } else {
        None
    };
    let array = JsArray::new(
        cx,
        protocol::BATCH_HEADER as usize + events.len() * protocol::EVENT_FIELDS.len(),
    );
    let mut writer = Writer {
        array,
        data,
        filled: 0,
        released: Vec::new(),
        finished: Vec::new(),
    };
    let mut failed = Vec::new();
    let mut pending = events.into_iter().zip(owned).enumerate();
    loop {
        // The slot and request of the event being encoded, to contain a failure to it.
        let mut current: Option<(u32, Option<u64>)> = None;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            cx.try_catch(|cx| {
                for (i, (event, own)) in &mut pending {
                    let at = slot_of(i);
                    current = Some((at, event.request()));
                    writer.event(cx, at, event, own)?;
                }
                Ok(())
            })
        }));
        let error = match outcome {
            Ok(Ok(())) => break,
            Ok(Err(exception)) => {
                let text = describe(cx, exception);
                CoreError::new(ErrorKind::Internal, format!("{UNDELIVERABLE}: {text}"))
            }
            Err(panic) => {
                // A panic may leave an exception pending; it belongs to the failed event.
                let _ = cx.try_catch(|_| Ok(()));
                CoreError::from_panic(UNDELIVERABLE, &*panic)
            }
        };
        let Some((at, request)) = current else { break };
        if let Some(id) = request {
            failed.push(id);
        }
        // Writing the replacement uses only small strings and numbers; should even that fail, the slot is
        // left as it is and JavaScript skips what it cannot read.
        let _ = cx.try_catch(|cx| writer.failure(cx, at, request, &error));
    }
    let agent = cx.number(agent as f64);
    writer.array.set(cx, 1, agent)?;
    if let Some(buffer) = writer.data {
        writer.array.set(cx, 0, buffer)?;
    }
    Ok(Batch {
        array: writer.array,
        released: writer.released,
        finished: writer.finished,
        failed,
    })
}

/// Where the event at `index` of a batch starts.
fn slot_of(index: usize) -> u32 {
    protocol::BATCH_HEADER + (index * protocol::EVENT_FIELDS.len()) as u32
}

struct Writer<'a> {
    array: Handle<'a, JsArray>,
    data: Option<Handle<'a, JsBuffer>>,
    /// Bytes of the data Buffer written so far.
    filled: usize,
    released: Vec<(RequestController, usize)>,
    finished: Vec<u64>,
}

impl<'a> Writer<'a> {
    fn event<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        event: Event,
        own: Option<BytesMut>,
    ) -> NeonResult<()> {
        let (kind, id) = match event {
            Event::Start(id, head) => (self.start(cx, at, &head)?, id),
            Event::Data(id, chunk, controller) => (self.data(cx, at, chunk, own, controller)?, id),
            Event::End(id, trailers) => (self.end(cx, at, id, &trailers)?, id),
            Event::Error(id, error) => (self.error(cx, at, id, &error)?, id),
            Event::Pull(id) => (protocol::PULL, id),
            Event::Retry(id, retry) => (self.retry(cx, at, retry)?, id),
            Event::Agent(agent, AgentEvent::Circuit { origin, state }) => {
                (self.circuit(cx, at, &origin, state.as_str())?, agent)
            }
            Event::Agent(agent, AgentEvent::Connection(event)) => {
                (self.connection(cx, at, event)?, agent)
            }
            Event::Upgrade(id, head) => {
                self.start(cx, at, &head)?;
                (protocol::UPGRADE, id)
            }
            Event::ReadEnd(id) => (protocol::READ_END, id),
            Event::Written(id) => (protocol::WRITTEN, id),
        };
        self.head(cx, at, kind, id as f64)
    }

    /// The `kind` and `id` slots.
    fn head<C: Context<'a>>(&mut self, cx: &mut C, at: u32, kind: f64, id: f64) -> NeonResult<()> {
        let kind = cx.number(kind);
        self.array.set(cx, at + slot::KIND, kind)?;
        let id = cx.number(id);
        self.array.set(cx, at + slot::ID, id)?;
        Ok(())
    }

    fn set<C: Context<'a>, V: Value>(
        &mut self,
        cx: &mut C,
        at: u32,
        field: u32,
        value: Handle<'a, V>,
    ) -> NeonResult<()> {
        self.array.set(cx, at + field, value).map(|_| ())
    }

    fn start<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        head: &ResponseHead,
    ) -> NeonResult<f64> {
        test_hooks::on_start(cx, head.status)?;
        let code = cx.number(start_code(head));
        self.set(cx, at, slot::A, code)?;
        let fields = cx.string(join_fields_after(
            connection_fields(head),
            Some(&head.status_text),
            &head.headers,
        ));
        self.set(cx, at, slot::B, fields)?;
        Ok(protocol::START)
    }

    fn data<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        chunk: Bytes,
        own: Option<BytesMut>,
        controller: RequestController,
    ) -> NeonResult<f64> {
        let length = match (own, self.data) {
            // A large chunk nothing else shares becomes a Buffer of its own, uncopied.
            (Some(owned), _) => {
                let length = owned.len();
                let buffer = JsBuffer::external(cx, owned);
                self.set(cx, at, slot::A, buffer)?;
                length
            }
            (None, Some(mut buffer)) => {
                let length = chunk.len();
                let filled = self.filled;
                buffer.as_mut_slice(cx)[filled..filled + length].copy_from_slice(&chunk);
                let offset = cx.number(filled as f64);
                self.set(cx, at, slot::A, offset)?;
                self.filled += length;
                length
            }
            // Cannot happen: every chunk not owned counted towards the batch Buffer's length.
            (None, None) => return cx.throw_error("reqwest-dispatcher: batch Buffer missing"),
        };
        self.released.push((controller, length));
        let length = cx.number(length as f64);
        self.set(cx, at, slot::B, length)?;
        Ok(protocol::DATA)
    }

    fn end<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        id: u64,
        trailers: &RawHeaders,
    ) -> NeonResult<f64> {
        let fields = cx.string(join_fields(None, trailers));
        self.set(cx, at, slot::A, fields)?;
        self.finished.push(id);
        Ok(protocol::END)
    }

    fn error<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        id: u64,
        error: &CoreError,
    ) -> NeonResult<f64> {
        let code = cx.string(error.code());
        self.set(cx, at, slot::A, code)?;
        // `message`, then `\0bytesWritten\0bytesRead` when the failed connection's counters are known.
        let message = match error.socket {
            Some(counters) => cx.string(format!(
                "{}{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}",
                error.message, counters.bytes_written, counters.bytes_read
            )),
            None => cx.string(&error.message),
        };
        self.set(cx, at, slot::B, message)?;
        self.finished.push(id);
        Ok(protocol::ERROR)
    }

    fn retry<C: Context<'a>>(&mut self, cx: &mut C, at: u32, retry: u32) -> NeonResult<f64> {
        let retry = cx.number(retry);
        self.set(cx, at, slot::A, retry)?;
        Ok(protocol::RETRY)
    }

    fn circuit<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        origin: &str,
        state: &str,
    ) -> NeonResult<f64> {
        let origin = cx.string(origin);
        self.set(cx, at, slot::A, origin)?;
        let state = cx.string(state);
        self.set(cx, at, slot::B, state)?;
        Ok(protocol::CIRCUIT)
    }

    fn connection<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        event: ConnectionEvent,
    ) -> NeonResult<f64> {
        let (kind, origin, detail) = match event {
            ConnectionEvent::Connecting { origin } => (protocol::CONNECTING, origin, None),
            ConnectionEvent::Connected { origin, remote, h2 } => {
                // `remote\0h2|h1`: the peer (empty when unknown) and the negotiated protocol.
                let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                let protocol = if h2 { "h2" } else { "h1" };
                (
                    protocol::CONNECT,
                    origin,
                    Some(format!("{remote}{FIELD_SEPARATOR}{protocol}")),
                )
            }
            ConnectionEvent::Disconnected { origin, upgraded } => (
                protocol::DISCONNECT,
                origin,
                upgraded.then(|| "upgrade".to_string()),
            ),
            ConnectionEvent::Failed { origin, error } => (
                protocol::CONNECTION_ERROR,
                origin,
                Some(format!(
                    "{}{FIELD_SEPARATOR}{}",
                    error.code(),
                    error.message
                )),
            ),
        };
        let origin = cx.string(origin);
        self.set(cx, at, slot::A, origin)?;
        if let Some(detail) = detail {
            let detail = cx.string(detail);
            self.set(cx, at, slot::B, detail)?;
        }
        Ok(kind)
    }

    /// Replaces the event at `at`, which could not be encoded: an error for its request, or nothing for an
    /// event of the agent's own.
    fn failure<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        at: u32,
        request: Option<u64>,
        error: &CoreError,
    ) -> NeonResult<()> {
        let Some(id) = request else {
            return self.head(cx, at, protocol::NONE, 0.0);
        };
        self.error(cx, at, id, error)?;
        self.head(cx, at, protocol::ERROR, id as f64)
    }
}

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

/// A caught exception as text, for the error of the request it failed.
fn describe<'a, C: Context<'a>>(cx: &mut C, exception: Handle<'a, JsValue>) -> String {
    cx.try_catch(|cx| Ok(exception.to_string(cx)?.value(cx)))
        .unwrap_or_else(|_| "an exception".to_string())
}

/// Test-only failures, on when the process starts with `REQWEST_DISPATCHER_TEST_HOOKS` set: encoding the head
/// of a response with status 599 throws, with 598 panics — as creating a string or Buffer can.
mod test_hooks {
    use neon::prelude::*;
    use std::sync::OnceLock;

    fn enabled() -> bool {
        static ENABLED: OnceLock<bool> = OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var_os("REQWEST_DISPATCHER_TEST_HOOKS").is_some())
    }

    pub(super) fn on_start<'a, C: Context<'a>>(cx: &mut C, status: u16) -> NeonResult<()> {
        if status < 598 || !enabled() {
            return Ok(());
        }
        if status == 599 {
            return cx.throw_error("test hook: encoding failed");
        }
        if status == 598 {
            panic!("test hook: encoding panicked");
        }
        Ok(())
    }
}
