//! Encoding of one batch of events into what JavaScript reads (layout in `protocol.rs`): an encoder per event
//! kind, and the containment of a failure to the event it happened in.
//!
//! A batch is numbers, one string and the body bytes. The numbers ([`protocol::EVENT_FIELDS`] per event) go to
//! a `Float64Array` the queue keeps from batch to batch; every string of the batch (heads, trailers, error
//! texts, origins) is appended to one text, each event giving the length of its own piece; small body chunks
//! are copied into one Buffer, large ones travel as Buffers of their own (uncopied when nothing else shares
//! their memory and their consumer keeps up; see `Placement`).
//! So a batch costs a handful of N-API calls, whatever the number of its events: per-event and per-header
//! JavaScript values showed up in profiles.
//!
//! Creating a Buffer of a chunk's own can fail (a panic: a host that forbids external Buffers), as can a head
//! under the test hooks. Such a failure ends the request the event belongs to with `UND_ERR_INTERNAL` and the
//! rest of the batch is encoded as usual: one bad event never strands the others.

use crate::protocol::{self, FIELD_SEPARATOR};
use crate::queue::Event;
use bytes::{Bytes, BytesMut};
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    AgentEvent, ConnectionEvent, CoreError, ErrorKind, RawHeaders, RequestController, ResponseHead,
};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An encoded batch and what the queue must do once it is delivered.
pub struct Batch<'a> {
    /// [`protocol::EVENT_FIELDS`] numbers per event, to be copied into the queue's `Float64Array`.
    pub numbers: Vec<f64>,
    pub text: Handle<'a, JsString>,
    /// The small body chunks, back to back.
    pub data: Option<Handle<'a, JsBuffer>>,
    /// The large body chunks, each a Buffer of its own.
    pub buffers: Option<Handle<'a, JsArray>>,
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

/// Encodes `events`.
pub fn batch<'a, C: Context<'a>>(cx: &mut C, mut events: Vec<Event>) -> NeonResult<Batch<'a>> {
    // Where each chunk goes (see `Placement`); the small ones add up to the batch Buffer's length.
    let mut placements: Vec<Placement> = Vec::with_capacity(events.len());
    let mut data_len = 0;
    for event in &mut events {
        let placement = match event {
            Event::Data(_, chunk, controller) => placement(chunk, controller),
            _ => Placement::Batch,
        };
        if let (Event::Data(_, chunk, _), Placement::Batch) = (&*event, &placement) {
            data_len += chunk.len();
        }
        placements.push(placement);
    }
    // V8 allocates the batch Buffer's memory itself: young Buffers of that kind count towards V8's
    // young-generation limit, so a slow consumer's garbage is collected by scavenges (~32 MiB) rather
    // than waiting for the external-memory limit of a full GC (~64 MiB), as external Buffers do.
    // Its memory is left uninitialized: the chunks fill it, and what they leave (an event that failed after
    // its space was counted) is zeroed below, before JavaScript sees the Buffer.
    let data = if data_len > 0 {
        Some(uninitialized_buffer(cx, data_len)?)
    } else {
        None
    };
    let mut writer = Writer {
        numbers: Vec::with_capacity(events.len() * protocol::EVENT_FIELDS.len()),
        text: Text::default(),
        data,
        filled: 0,
        buffers: None,
        buffer_count: 0,
        released: Vec::new(),
        finished: Vec::new(),
    };
    let mut failed = Vec::new();
    for (event, placement) in events.into_iter().zip(placements) {
        let request = event.request();
        let mark = writer.mark();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            cx.try_catch(|cx| writer.event(cx, event, placement))
        }));
        let error = match outcome {
            Ok(Ok(())) => continue,
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
        writer.rewind(mark);
        if let Some(id) = request {
            failed.push(id);
        }
        writer.failure(request, &error);
    }
    if let Some(mut buffer) = writer.data {
        buffer.as_mut_slice(cx)[writer.filled..].fill(0);
    }
    Ok(Batch {
        text: cx.string(writer.text.into_string()),
        numbers: writer.numbers,
        data: writer.data,
        buffers: writer.buffers,
        released: writer.released,
        finished: writer.finished,
        failed,
    })
}

/// The batch's text as UTF-8 bytes, and its length in UTF-16 code units (JavaScript's string offsets). Built
/// as bytes and checked once, when the batch is done: header bytes (latin1, almost always ASCII) are appended
/// as they are instead of going through a `&str` piece by piece.
#[derive(Default)]
struct Text {
    bytes: Vec<u8>,
    units: usize,
}

impl Text {
    fn push_str(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.units += if s.is_ascii() {
            s.len()
        } else {
            s.encode_utf16().count()
        };
    }

    /// Appends bytes one char per byte (latin1): a byte above 0x7F is the char of the same value, two bytes
    /// of UTF-8 and one UTF-16 unit.
    fn push_latin1(&mut self, bytes: &[u8]) {
        self.units += bytes.len();
        if bytes.is_ascii() {
            self.bytes.extend_from_slice(bytes);
            return;
        }
        for &byte in bytes {
            if byte.is_ascii() {
                self.bytes.push(byte);
            } else {
                self.bytes
                    .extend_from_slice(&[0xc0 | (byte >> 6), 0x80 | (byte & 0x3f)]);
            }
        }
    }

    fn push_separator(&mut self) {
        self.bytes.push(FIELD_SEPARATOR as u8);
        self.units += 1;
    }

    /// `first\0second`.
    fn push_pair(&mut self, first: &str, second: &str) {
        self.push_str(first);
        self.push_separator();
        self.push_str(second);
    }

    /// `[first\0]name\0value\0…` in latin1: one JS string per head instead of two per header. Names keep the
    /// sender's case.
    fn push_fields(&mut self, first: Option<&[u8]>, headers: &RawHeaders) {
        if let Some(first) = first {
            self.push_latin1(first);
        }
        let mut started = first.is_some();
        for (name, value) in headers.iter() {
            if started {
                self.push_separator();
            }
            started = true;
            self.push_latin1(name);
            self.push_separator();
            self.push_latin1(value);
        }
    }

    /// `addr` as its `Display` writes it (`ip:port`, `[ip]:port`); IPv4 without the formatting machinery,
    /// which took as many instructions as the rest of a small response's head.
    fn push_addr(&mut self, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(v4) => {
                for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push_ascii(b".");
                    }
                    self.push_decimal(u16::from(octet));
                }
                self.push_ascii(b":");
                self.push_decimal(v4.port());
            }
            SocketAddr::V6(_) => self.push_str(&addr.to_string()),
        }
    }

    fn push_ascii(&mut self, ascii: &[u8]) {
        self.bytes.extend_from_slice(ascii);
        self.units += ascii.len();
    }

    fn push_decimal(&mut self, mut n: u16) {
        let mut digits = [0u8; 5];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push_ascii(&digits[at..]);
    }

    /// The text as a string. Every piece was UTF-8 (a `&str`, or latin1 encoded above), so the check passes.
    fn into_string(self) -> String {
        String::from_utf8(self.bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// How far a writer had got, to undo an event that failed half-way.
struct Mark {
    numbers: usize,
    bytes: usize,
    units: usize,
    filled: usize,
    released: usize,
    finished: usize,
}

struct Writer<'a> {
    numbers: Vec<f64>,
    text: Text,
    data: Option<Handle<'a, JsBuffer>>,
    /// Bytes of the data Buffer written so far.
    filled: usize,
    buffers: Option<Handle<'a, JsArray>>,
    buffer_count: u32,
    released: Vec<(RequestController, usize)>,
    finished: Vec<u64>,
}

impl<'a> Writer<'a> {
    fn mark(&self) -> Mark {
        Mark {
            numbers: self.numbers.len(),
            bytes: self.text.bytes.len(),
            units: self.text.units,
            filled: self.filled,
            released: self.released.len(),
            finished: self.finished.len(),
        }
    }

    fn rewind(&mut self, mark: Mark) {
        self.numbers.truncate(mark.numbers);
        self.text.bytes.truncate(mark.bytes);
        self.text.units = mark.units;
        self.filled = mark.filled;
        self.released.truncate(mark.released);
        self.finished.truncate(mark.finished);
    }

    /// Encodes one event: its numbers, and its piece of the text (whose length ends the numbers).
    fn event<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        event: Event,
        placement: Placement,
    ) -> NeonResult<()> {
        let units = self.text.units;
        let (kind, id, a, b) = match event {
            Event::Start(id, head) => (protocol::START, id, self.start(cx, &head)?, 0.0),
            Event::Data(id, chunk, controller) => {
                let (at, length) = self.data(cx, chunk, placement, controller)?;
                (protocol::DATA, id, at, length)
            }
            Event::End(id, trailers) => {
                self.end(id, &trailers);
                (protocol::END, id, 0.0, 0.0)
            }
            Event::Error(id, error) => {
                self.error(id, &error);
                (protocol::ERROR, id, 0.0, 0.0)
            }
            Event::Pull(id) => (protocol::PULL, id, 0.0, 0.0),
            Event::Connected(id) => (protocol::CONNECTED, id, 0.0, 0.0),
            Event::Retry(id, retry) => (protocol::RETRY, id, f64::from(retry), 0.0),
            Event::Agent(agent, AgentEvent::Circuit { origin, state }) => {
                self.text.push_pair(&origin, state.as_str());
                (protocol::CIRCUIT, agent, 0.0, 0.0)
            }
            Event::Agent(agent, AgentEvent::Connection(event)) => {
                (self.connection(event), agent, 0.0, 0.0)
            }
            Event::Upgrade(id, head) => (protocol::UPGRADE, id, self.start(cx, &head)?, 0.0),
            Event::ReadEnd(id) => (protocol::READ_END, id, 0.0, 0.0),
            Event::Written(id) => (protocol::WRITTEN, id, 0.0, 0.0),
        };
        let text = (self.text.units - units) as f64;
        self.numbers
            .extend_from_slice(&[kind, id as f64, a, b, text]);
        Ok(())
    }

    /// The head's fields go to the text; returns the START number.
    fn start<C: Context<'a>>(&mut self, cx: &mut C, head: &ResponseHead) -> NeonResult<f64> {
        test_hooks::on_start(cx, head.status)?;
        // `remote\0local\0`: the connection's addresses (`ip:port`, empty when unknown), then the head.
        for addr in [head.remote_addr, head.local_addr] {
            if let Some(addr) = addr {
                self.text.push_addr(addr);
            }
            self.text.push_separator();
        }
        self.text
            .push_fields(Some(&head.status_text), &head.headers);
        Ok(start_code(head))
    }

    /// Returns the DATA numbers: the offset in the data Buffer, or −(index + 1) in the Buffers of their
    /// own; and the length.
    fn data<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        chunk: Bytes,
        placement: Placement,
        controller: RequestController,
    ) -> NeonResult<(f64, f64)> {
        let (at, length) = match (placement, self.data) {
            (Placement::Batch, Some(mut buffer)) => {
                let length = chunk.len();
                let filled = self.filled;
                buffer.as_mut_slice(cx)[filled..filled + length].copy_from_slice(&chunk);
                self.filled += length;
                (filled as f64, length)
            }
            // Cannot happen: every chunk placed in the batch counted towards its Buffer's length.
            (Placement::Batch, None) => {
                return cx.throw_error("reqwest-dispatcher: batch Buffer missing")
            }
            (Placement::External(owned), _) => {
                let length = owned.len();
                let buffer = JsBuffer::external(cx, owned);
                (self.own_buffer(cx, buffer)?, length)
            }
            (Placement::Copied, _) => {
                let mut buffer = uninitialized_buffer(cx, chunk.len())?;
                buffer.as_mut_slice(cx).copy_from_slice(&chunk);
                (self.own_buffer(cx, buffer)?, chunk.len())
            }
        };
        self.released.push((controller, length));
        Ok((at, length as f64))
    }

    /// Appends `buffer` to the batch's Buffers of their own; returns the DATA number naming it.
    fn own_buffer<C: Context<'a>>(
        &mut self,
        cx: &mut C,
        buffer: Handle<'a, JsBuffer>,
    ) -> NeonResult<f64> {
        let list = match self.buffers {
            Some(list) => list,
            None => *self.buffers.insert(JsArray::new(cx, 1)),
        };
        list.set(cx, self.buffer_count, buffer)?;
        self.buffer_count += 1;
        Ok(-f64::from(self.buffer_count))
    }

    fn end(&mut self, id: u64, trailers: &RawHeaders) {
        self.text.push_fields(None, trailers);
        self.finished.push(id);
    }

    /// The text is `code\0message`, then `\0bytesWritten\0bytesRead` when the failed connection's counters
    /// are known.
    fn error(&mut self, id: u64, error: &CoreError) {
        self.text.push_pair(error.code(), &error.message);
        if let Some(counters) = error.socket {
            self.text.push_str(&format!(
                "{FIELD_SEPARATOR}{}{FIELD_SEPARATOR}{}",
                counters.bytes_written, counters.bytes_read
            ));
        }
        self.finished.push(id);
    }

    /// The text is `origin` or `origin\0detail`; returns the event's kind.
    fn connection(&mut self, event: ConnectionEvent) -> f64 {
        match event {
            ConnectionEvent::Connecting { origin } => {
                self.text.push_str(&origin);
                protocol::CONNECTING
            }
            ConnectionEvent::Connected { origin, remote, h2 } => {
                // `remote\0h2|h1`: the peer (empty when unknown) and the negotiated protocol.
                let remote = remote.map(|a| a.to_string()).unwrap_or_default();
                let protocol = if h2 { "h2" } else { "h1" };
                self.text
                    .push_pair(&origin, &format!("{remote}{FIELD_SEPARATOR}{protocol}"));
                protocol::CONNECT
            }
            ConnectionEvent::Disconnected { origin, upgraded } => {
                if upgraded {
                    self.text.push_pair(&origin, "upgrade");
                } else {
                    self.text.push_str(&origin);
                }
                protocol::DISCONNECT
            }
            ConnectionEvent::Failed { origin, error } => {
                let detail = format!("{}{FIELD_SEPARATOR}{}", error.code(), error.message);
                self.text.push_pair(&origin, &detail);
                protocol::CONNECTION_ERROR
            }
        }
    }

    /// Stands in for an event that could not be encoded: an error for its request, or nothing for an event
    /// of the agent's own.
    fn failure(&mut self, request: Option<u64>, error: &CoreError) {
        let Some(id) = request else {
            self.numbers
                .extend_from_slice(&[protocol::NONE, 0.0, 0.0, 0.0, 0.0]);
            return;
        };
        let units = self.text.units;
        self.error(id, error);
        let text = (self.text.units - units) as f64;
        self.numbers
            .extend_from_slice(&[protocol::ERROR, id as f64, 0.0, 0.0, text]);
    }
}

/// Where a body chunk's bytes go.
enum Placement {
    /// Copied into the batch's one Buffer: small chunks, one N-API Buffer per batch rather than per chunk.
    Batch,
    /// A Buffer of its own over the chunk's own memory, uncopied: a large chunk nothing else shares, of a
    /// consumer that keeps up.
    External(BytesMut),
    /// Copied into a Buffer of its own that V8 allocates: a large chunk of a consumer that held the stream
    /// back. Such consumers keep chunks a while (a stream's queue, a body collected until its end), and
    /// young Buffers of that kind count towards V8's young generation, so their garbage is collected by
    /// scavenges (~32 MiB) rather than waiting for the external-memory limit of a full GC (~64 MiB), as
    /// external Buffers do. One Buffer per chunk, not a share of the batch's: a chunk kept alive keeps
    /// only its own bytes, not those of every other request in the batch.
    Copied,
}

/// A Buffer of `len` bytes whose memory V8 allocates and nobody zero-fills: `JsBuffer::new` (and `from_slice`,
/// which uses it) writes zeroes that the copy of a chunk then overwrites, a memset as long as the memcpy on
/// the JavaScript thread. Every caller overwrites all `len` bytes before the Buffer reaches JavaScript.
fn uninitialized_buffer<'a, C: Context<'a>>(cx: &mut C, len: usize) -> JsResult<'a, JsBuffer> {
    // SAFETY: neon's `uninitialized` is unsafe because the Buffer's bytes are whatever the allocator left
    // there; reading them would expose stale memory to JavaScript. Rust only ever writes into them
    // (`copy_from_slice`, `fill`) through `as_mut_slice`, and every byte is written before the handle is
    // passed to JavaScript: a chunk's own Buffer is filled by one copy of the chunk right away, and the
    // batch Buffer by its chunks, its unfilled tail zeroed once every event is encoded (see `batch`).
    unsafe { JsBuffer::uninitialized(cx, len) }
}

/// Where `chunk` goes; its memory is taken (the chunk left empty) when it goes uncopied.
fn placement(chunk: &mut Bytes, controller: &RequestController) -> Placement {
    if chunk.len() < OWN_BUFFER_BYTES {
        return Placement::Batch;
    }
    if controller.was_paused() {
        return Placement::Copied;
    }
    match std::mem::take(chunk).try_into_mut() {
        Ok(owned) => Placement::External(owned),
        Err(shared) => {
            *chunk = shared;
            Placement::Copied
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marshal::{split_fields, string_to_latin1};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn text_of(fill: impl FnOnce(&mut Text)) -> (String, usize) {
        let mut text = Text::default();
        fill(&mut text);
        let units = text.units;
        (text.into_string(), units)
    }

    #[test]
    fn latin1_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let (text, units) = text_of(|t| t.push_latin1(&bytes));
        assert_eq!(units, 256);
        assert_eq!(text.encode_utf16().count(), 256);
        assert_eq!(string_to_latin1(text), bytes);
    }

    #[test]
    fn fields_join_and_split_back() {
        let mut headers = RawHeaders::new();
        headers.push("Set-Cookie", "a=1");
        headers.push("set-cookie", "b=2");
        headers.push("x-latin1", &b"caf\xe9"[..]);
        let (joined, units) = text_of(|t| t.push_fields(Some(b"OK"), &headers));
        assert_eq!(units, joined.encode_utf16().count());
        let (status, rest) = joined.split_once(FIELD_SEPARATOR).unwrap();
        assert_eq!(status, "OK");
        let pairs = split_fields(&string_to_latin1(rest.to_string()));
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], ("Set-Cookie".to_string(), Bytes::from("a=1")));
        assert_eq!(
            pairs[2],
            ("x-latin1".to_string(), Bytes::from(&b"caf\xe9"[..]))
        );
        assert_eq!(text_of(|t| t.push_fields(None, &RawHeaders::new())).0, "");
        assert_eq!(
            text_of(|t| t.push_fields(Some(b""), &RawHeaders::new())).0,
            ""
        );
    }

    #[test]
    fn addresses_read_as_their_display() {
        for addr in [
            "127.0.0.1:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:8080",
            "[::1]:443",
            "[fe80::1%2]:9",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (text, units) = text_of(|t| t.push_addr(addr));
            assert_eq!(text, addr.to_string());
            assert_eq!(units, text.len());
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_support::config())]

        #[test]
        fn every_byte_sequence_survives_latin1(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (text, units) = text_of(|t| t.push_latin1(&bytes));
            prop_assert_eq!(units, text.encode_utf16().count());
            prop_assert_eq!(string_to_latin1(text), bytes);
        }

        #[test]
        fn header_fields_join_and_split_back(
            pairs in proptest::collection::vec(("[a-zA-Z-]{1,12}", proptest::collection::vec(1u8..=255, 0..20)), 0..8),
        ) {
            let mut headers = RawHeaders::new();
            for (name, value) in &pairs {
                headers.push(name.clone(), value.clone());
            }
            let (joined, units) = text_of(|t| t.push_fields(None, &headers));
            prop_assert_eq!(units, joined.encode_utf16().count());
            let expected: Vec<(String, Bytes)> =
                pairs.iter().map(|(name, value)| (name.clone(), Bytes::from(value.clone()))).collect();
            prop_assert_eq!(split_fields(&string_to_latin1(joined)), expected);
        }

        #[test]
        fn every_address_reads_as_its_display(ip in any::<[u8; 4]>(), port in any::<u16>(), v6 in any::<[u16; 8]>()) {
            for addr in [
                SocketAddr::from((ip, port)),
                SocketAddr::from((std::net::Ipv6Addr::from(v6), port)),
            ] {
                let (text, units) = text_of(|t| t.push_addr(addr));
                prop_assert_eq!(&text, &addr.to_string());
                prop_assert_eq!(units, text.len());
            }
        }
    }
}
