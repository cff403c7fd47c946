//! The wire protocol between the addon and the TypeScript layer, defined here once: the kinds of events and
//! the layout of the arrays that cross the boundary in each direction. The addon exports it as `protocol`;
//! `src/native.ts` reads it when it loads the addon (and refuses an addon whose layout it was not written
//! for), and the glue benchmark reads it too.
//!
//! **Batches** (Rust → JS, one call per batch): `deliver(numbers, count, text, data, buffers, agentId)`.
//! `numbers` (a `Float64Array` the queue reuses, so only its first `count` events count) holds
//! [`EVENT_FIELDS`] per event; `text` holds the strings of every event back to back, each event's piece
//! `text` chars long (0 for none); `data` (a Buffer, or `undefined`) the batch's small body chunks; `buffers`
//! (an array, or `undefined`) its large chunks, each a Buffer of its own; `agentId` names the agent whose queue
//! the batch comes from.
//!
//! | kind  | id | a                        | b      | text                                          |
//! |-------|----|--------------------------|--------|-----------------------------------------------|
//! | START | request | status + 1000 × version (10, 11, 20) | – | `remote\0local\0statusText\0name\0value…` (latin1) |
//! | DATA  | request | offset in `data`, or −(index + 1) in `buffers` | length | –                  |
//! | END   | request | –                       | –      | trailers `name\0value…`, or none              |
//! | ERROR | request | –                       | –      | `code\0message`, then `\0bytesWritten\0bytesRead` when known |
//! | PULL  | request | –                       | –      | –                                             |
//! | RETRY | request | retry number (from 1)   | –      | –                                             |
//! | UPGRADE | request | as START                | –      | as START (the 101, or the answer to CONNECT)  |
//! | READ_END | request | –                       | –      | –  (the server ended its direction of an upgraded connection) |
//! | WRITTEN | request | –                        | –      | –  (one `upgradeWrite` of the request completed, in order) |
//! | CONNECTED | request | –                      | –      | –  (a gated request has its connection: `requestsProceed` or `requestAbort` it) |
//! | CONNECTING | agent | –                      | –      | origin                                        |
//! | DISCONNECT | agent | –                      | –      | origin, then `\0upgrade` when the connection left by switching protocols |
//! | CONNECT | agent | –                       | –      | `origin\0remote\0h1` or `…\0h2` (remote `ip:port`, empty when unknown) |
//! | CONNECTION_ERROR | agent | –              | –      | `origin\0code\0message`                        |
//! | CIRCUIT | agent | –                       | –      | `origin\0state` (`closed`, `open` or `half-open`) |
//! | NONE  | 0  | –                        | –      | –  (an event that could not be encoded; id 0 names nothing) |
//!
//! After UPGRADE the request's events are its upgraded connection's: DATA (under the same credit), READ_END,
//! WRITTEN, and ERROR when the connection fails; it ends silently otherwise.
//!
//! **Dispatches** (JS → Rust, one call per tick): `dispatchBatch(agent, text, numbers, count, bodies)`.
//! `numbers` (a `Float64Array`) holds [`REQUEST_FIELDS`] per request, in that order; `text` holds each
//! request's method, URL, headers and switch target back to back, their lengths given by the `…Length` fields.
//! `text` is latin1: every char is ≤ U+00FF (the TypeScript layer's validation sees to it), so a length in
//! chars is a length in bytes. Headers are `name\0value\0…`; `bodyMode` is [`BODY_NONE`], [`BODY_BYTES`] (the
//! next Buffer of `bodies`, which holds one per such request, in order), [`BODY_PULL_UNKNOWN_LENGTH`] or a
//! non-negative pulled length; timeouts are milliseconds, negative = the agent's, 0 = disabled. `switch` says
//! how a request leaves HTTP: [`SWITCH_NONE`], [`SWITCH_PROTOCOL`] (an upgrade to the protocol its text names)
//! or [`SWITCH_CONNECT`] (a `CONNECT` whose request target its text is); its writes then go through
//! `upgradeWrite`. `gated` (1 or 0) asks the core to hold the request, once a connection is assigned to it,
//! until JavaScript answers its CONNECTED event: `requestsProceed(agent, ids, count)` (a `Float64Array` of request
//! ids, every answer of one tick in one call) lets it write itself, `requestAbort` drops it unwritten. One
//! string and one typed array cross instead of an array of values the addon would read one N-API call at a time.
//!
//! **Stats**: [`STATS_FIELDS`] values per origin.

use neon::prelude::*;

/// Separates fields in head, trailer, header and detail strings: no header name or value can contain NUL.
pub const FIELD_SEPARATOR: char = '\0';

/// The numbers of one event in a batch, in order.
pub const EVENT_FIELDS: [&str; 5] = ["kind", "id", "a", "b", "text"];

/// Fields of a START event's `b` before the header pairs.
pub const HEAD_FIELDS: [&str; 3] = ["remote", "local", "statusText"];

pub const NONE: f64 = 0.0;
pub const START: f64 = 1.0;
pub const DATA: f64 = 2.0;
pub const END: f64 = 3.0;
pub const ERROR: f64 = 4.0;
pub const PULL: f64 = 5.0;
pub const CONNECT: f64 = 6.0;
pub const DISCONNECT: f64 = 7.0;
pub const CONNECTION_ERROR: f64 = 8.0;
pub const RETRY: f64 = 9.0;
pub const CIRCUIT: f64 = 10.0;
pub const CONNECTING: f64 = 11.0;
pub const UPGRADE: f64 = 12.0;
pub const READ_END: f64 = 13.0;
pub const WRITTEN: f64 = 14.0;
pub const CONNECTED: f64 = 15.0;

const EVENTS: [(&str, f64); 16] = [
    ("NONE", NONE),
    ("START", START),
    ("DATA", DATA),
    ("END", END),
    ("ERROR", ERROR),
    ("PULL", PULL),
    ("CONNECT", CONNECT),
    ("DISCONNECT", DISCONNECT),
    ("CONNECTION_ERROR", CONNECTION_ERROR),
    ("RETRY", RETRY),
    ("CIRCUIT", CIRCUIT),
    ("CONNECTING", CONNECTING),
    ("UPGRADE", UPGRADE),
    ("READ_END", READ_END),
    ("WRITTEN", WRITTEN),
    ("CONNECTED", CONNECTED),
];

/// The numbers of one request in `dispatchBatch`'s `Float64Array`, in order.
pub const REQUEST_FIELDS: [&str; 10] = [
    "id",
    "methodLength",
    "urlLength",
    "headersLength",
    "bodyMode",
    "headersTimeout",
    "bodyTimeout",
    "switch",
    "switchLength",
    "gated",
];

/// Index of each request field within its request's numbers.
pub mod request {
    pub const ID: usize = 0;
    pub const METHOD_LENGTH: usize = 1;
    pub const URL_LENGTH: usize = 2;
    pub const HEADERS_LENGTH: usize = 3;
    pub const BODY_MODE: usize = 4;
    pub const HEADERS_TIMEOUT: usize = 5;
    pub const BODY_TIMEOUT: usize = 6;
    pub const SWITCH: usize = 7;
    pub const SWITCH_LENGTH: usize = 8;
    pub const GATED: usize = 9;
}

pub const BODY_NONE: f64 = -1.0;
pub const BODY_PULL_UNKNOWN_LENGTH: f64 = -2.0;
pub const BODY_BYTES: f64 = -3.0;

const BODY_MODES: [(&str, f64); 3] = [
    ("NONE", BODY_NONE),
    ("PULL_UNKNOWN_LENGTH", BODY_PULL_UNKNOWN_LENGTH),
    ("BYTES", BODY_BYTES),
];

pub const SWITCH_NONE: f64 = 0.0;
pub const SWITCH_PROTOCOL: f64 = 1.0;
pub const SWITCH_CONNECT: f64 = 2.0;

const SWITCHES: [(&str, f64); 3] = [
    ("NONE", SWITCH_NONE),
    ("PROTOCOL", SWITCH_PROTOCOL),
    ("CONNECT", SWITCH_CONNECT),
];

/// The values of one origin in `agentStats`, in order.
pub const STATS_FIELDS: [&str; 4] = ["origin", "pending", "running", "connected"];

/// The protocol as a JavaScript object: `{ fieldSeparator, eventFields, headFields, events, requestFields,
/// bodyModes, switches, statsFields }`.
pub fn describe<'a, C: Context<'a>>(cx: &mut C) -> JsResult<'a, JsObject> {
    let protocol = cx.empty_object();
    let separator = cx.string(FIELD_SEPARATOR.to_string());
    protocol.set(cx, "fieldSeparator", separator)?;
    for (key, list) in [
        ("eventFields", &EVENT_FIELDS[..]),
        ("headFields", &HEAD_FIELDS[..]),
        ("requestFields", &REQUEST_FIELDS[..]),
        ("statsFields", &STATS_FIELDS[..]),
    ] {
        let list = names(cx, list)?;
        protocol.set(cx, key, list)?;
    }
    for (key, entries) in [
        ("events", &EVENTS[..]),
        ("bodyModes", &BODY_MODES[..]),
        ("switches", &SWITCHES[..]),
    ] {
        let entries = table(cx, entries)?;
        protocol.set(cx, key, entries)?;
    }
    Ok(protocol)
}

fn names<'a, C: Context<'a>>(cx: &mut C, names: &[&str]) -> JsResult<'a, JsArray> {
    let array = JsArray::new(cx, names.len());
    for (i, name) in names.iter().enumerate() {
        let name = cx.string(name);
        array.set(cx, i as u32, name)?;
    }
    Ok(array)
}

fn table<'a, C: Context<'a>>(cx: &mut C, entries: &[(&str, f64)]) -> JsResult<'a, JsObject> {
    let object = cx.empty_object();
    for (name, value) in entries {
        let value = cx.number(*value);
        object.set(cx, *name, value)?;
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each index constant is the position of its name in the layout.
    fn assert_indices(layout: &[&str], indices: &[(&str, usize)]) {
        for (name, index) in indices {
            let position = layout.iter().position(|n| n == name);
            assert_eq!(position, Some(*index), "{name}");
        }
    }

    #[test]
    fn request_field_indices_follow_the_names() {
        assert_indices(
            &REQUEST_FIELDS,
            &[
                ("id", request::ID),
                ("methodLength", request::METHOD_LENGTH),
                ("urlLength", request::URL_LENGTH),
                ("headersLength", request::HEADERS_LENGTH),
                ("bodyMode", request::BODY_MODE),
                ("headersTimeout", request::HEADERS_TIMEOUT),
                ("bodyTimeout", request::BODY_TIMEOUT),
                ("switch", request::SWITCH),
                ("switchLength", request::SWITCH_LENGTH),
                ("gated", request::GATED),
            ],
        );
    }

    #[test]
    fn event_kinds_are_distinct() {
        let mut kinds: Vec<i64> = EVENTS.iter().map(|(_, k)| *k as i64).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), EVENTS.len());
    }
}
