//! `dispatch` and the per-request controls. Requests are named by the id JS gave them: no per-request JS
//! object is created on the native side (each would be a V8 external with a finalizer for the GC to track).

use crate::agent::BoxedAgent;
use crate::marshal::{
    latin1_to_string, split_fields, string_to_latin1, timeout_override, Latin1Parts,
};
use crate::protocol::{
    request as field, BODY_BYTES, BODY_NONE, REQUEST_FIELDS, SWITCH_CONNECT, SWITCH_PROTOCOL,
};
use crate::queue::{Event, QueueHandler, RequestHandle};
use crate::test_hook::{self, Armed};
use bytes::Bytes;
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    BodyChunk, BodyPull, CoreError, DispatchRequest, ErrorKind, RequestBody, RequestController,
    Switch, Upgrade, UpgradeWrite,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Response bytes of one request that may wait for the JS thread before the core stops reading: enough to
/// keep a fast consumer busy between two drains, small enough that 100 large responses queue at most 25 MiB.
const RESPONSE_CREDIT: usize = 256 * 1024;

/// Most requests an agent may have in flight (these included) for a batch to start on the JavaScript thread
/// (`Agent::dispatch_all_here`: a small request on an idle HTTP/1.1 connection is written before
/// `dispatchBatch` returns). With few in flight the runtime's worker is likely parked, and its wake-up would
/// delay the request; with more it is awake, and the writes stay off the JavaScript thread. Measured on the
/// 8-in-flight row (GET 64 B, 5 rounds, same run): 16 against 4 gave 26.1k against 20.7k req/s and 37.3
/// against 43.1 µs of CPU per request (JS thread 22.8 against 20.2); the 100-in-flight rows never take it.
const START_HERE_IN_FLIGHT: usize = 16;

fn request_id(cx: &mut FunctionContext, index: usize) -> NeonResult<u64> {
    Ok(cx.argument::<JsNumber>(index)?.value(cx) as u64)
}

/// Numbers of one request in `dispatchBatch`'s `Float64Array`.
const NUMBERS_PER_REQUEST: usize = REQUEST_FIELDS.len();

/// `dispatchBatch(agent, text, numbers, count, bodies)`: starts `count` requests, encoded as `protocol.rs`
/// describes. Requests started in the same tick travel together: one call into the addon, and one hand-off to
/// the runtime, which spawns their tasks (`Agent::dispatch_all`).
pub fn dispatch_batch(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let text = cx.argument::<JsString>(1)?.value(&mut cx);
    let numbers = cx.argument::<JsTypedArray<f64>>(2)?;
    let count = cx.argument::<JsNumber>(3)?.value(&mut cx) as usize;
    let bodies = cx
        .argument::<JsValue>(4)?
        .downcast::<JsArray, _>(&mut cx)
        .ok();
    let core = agent.core.borrow();
    let Some(core) = core.as_ref() else {
        return cx.throw_error("the agent is closed");
    };
    let Some(numbers) = numbers.as_slice(&cx).get(..count * NUMBERS_PER_REQUEST) else {
        return cx.throw_range_error("dispatchBatch: fewer numbers than requests");
    };
    let numbers = numbers.to_vec();
    let text = string_to_latin1(text);
    let mut parts = Latin1Parts::new(&text);
    let mut bodies_taken = 0;
    let mut started = Vec::with_capacity(count);
    let mut outcome = Ok(());
    for fields in numbers.chunks_exact(NUMBERS_PER_REQUEST) {
        // Each request's share of the text and of `bodies` is taken first: whatever happens to this request,
        // the next one reads its own.
        let (Some(method), Some(url), Some(headers), Some(switch_to)) = (
            parts.next(fields[field::METHOD_LENGTH]),
            parts.next(fields[field::URL_LENGTH]),
            parts.next(fields[field::HEADERS_LENGTH]),
            parts.next(fields[field::SWITCH_LENGTH]),
        ) else {
            outcome = cx.throw_range_error("dispatchBatch: text shorter than its lengths");
            break;
        };
        let body = (fields[field::BODY_MODE] == BODY_BYTES).then(|| {
            bodies_taken += 1;
            bodies_taken - 1
        });
        let wire = WireRequest {
            id: fields[field::ID] as u64,
            method,
            url,
            headers,
            body_mode: fields[field::BODY_MODE],
            body: body.zip(bodies),
            headers_timeout: fields[field::HEADERS_TIMEOUT],
            body_timeout: fields[field::BODY_TIMEOUT],
            switch: switch_of(fields[field::SWITCH], switch_to),
            gated: fields[field::GATED] != 0.0,
        };
        let id = wire.id;
        // A panic while starting one request fails that request alone: the others of the batch still start,
        // and no exception escapes into the microtask that sent the batch.
        match catch_unwind(AssertUnwindSafe(|| start_request(&mut cx, &agent, wire))) {
            Ok(Ok(request)) => started.push(request),
            Ok(Err(thrown)) => {
                outcome = Err(thrown);
                break;
            }
            Err(panic) => {
                agent.queue.remove(id);
                agent.queue.push(Event::Error(
                    id,
                    CoreError::from_panic("internal error in reqwest-dispatcher", &*panic),
                ));
            }
        }
    }
    // What was read goes out even when the rest could not be: those requests are registered already.
    if agent.queue.in_flight() <= START_HERE_IN_FLIGHT {
        core.dispatch_all_here(started);
    } else {
        core.dispatch_all(started);
    }
    outcome.map(|()| cx.undefined())
}

/// One request of a `dispatchBatch`, as it crossed: its pieces of the text, its numbers, where its body is
/// (its index in `bodies`) when given as bytes, and how it leaves HTTP if it does.
struct WireRequest<'t, 'a> {
    id: u64,
    method: &'t [u8],
    url: &'t [u8],
    headers: &'t [u8],
    body_mode: f64,
    body: Option<(u32, Handle<'a, JsArray>)>,
    headers_timeout: f64,
    body_timeout: f64,
    switch: Option<Switch>,
    /// Held once its connection is assigned until JavaScript answers its CONNECTED event.
    gated: bool,
}

/// How a request leaves HTTP: its `switch` field and its piece of the text (the protocol, or CONNECT's target).
fn switch_of(mode: f64, text: &[u8]) -> Option<Switch> {
    let text = || latin1_to_string(text);
    if mode == SWITCH_PROTOCOL {
        Some(Switch::Protocol(text()))
    } else if mode == SWITCH_CONNECT {
        Some(Switch::Connect(text()))
    } else {
        None
    }
}

/// Reads one request of a batch and registers it with the agent's queue; returns what the core starts.
fn start_request(
    cx: &mut FunctionContext,
    agent: &Handle<BoxedAgent>,
    wire: WireRequest,
) -> NeonResult<(DispatchRequest, RequestController, QueueHandler)> {
    let armed = test_hook::take();
    if armed == Some(Armed::Dispatch) {
        panic!("test panic (Dispatch) armed by the panic-containment hook");
    }
    let id = wire.id;
    let controller = RequestController::with_credit(RESPONSE_CREDIT);
    let mut sender = None;
    let body = if wire.body_mode == BODY_NONE {
        RequestBody::Empty
    } else if let Some((index, bodies)) = wire.body {
        let bytes = bodies.get::<JsTypedArray<u8>, _, _>(cx, index)?;
        RequestBody::Bytes(Bytes::copy_from_slice(bytes.as_slice(cx)))
    } else if wire.body_mode == BODY_BYTES {
        return cx.throw_type_error("dispatchBatch: a body in bytes, and no bodies");
    } else {
        let length = (wire.body_mode >= 0.0).then_some(wire.body_mode as u64);
        let queue = agent.queue.clone();
        let (tx, pull) = BodyPull::channel(length, move || queue.push(Event::Pull(id)));
        sender = Some(tx);
        RequestBody::Pull(pull)
    };

    let mut request =
        DispatchRequest::new(latin1_to_string(wire.method), latin1_to_string(wire.url)).body(body);
    request.headers = split_fields(wire.headers);
    request.headers_timeout = timeout_override(wire.headers_timeout);
    request.body_timeout = timeout_override(wire.body_timeout);
    if wire.gated {
        let queue = agent.queue.clone();
        request.gate = Some(Box::new(move || queue.push(Event::Connected(id))));
    }
    if let Some(Armed::Core(point)) = armed {
        request.panic_at = Some(point);
    }
    let writer = wire.switch.map(|switch| {
        let (writer, upgrade) = Upgrade::new(switch);
        request.upgrade = Some(upgrade);
        writer
    });

    let handler = QueueHandler {
        id,
        queue: agent.queue.clone(),
        controller: controller.clone(),
    };
    agent.queue.register(
        id,
        RequestHandle {
            controller: controller.clone(),
            body: sender,
            upgrade: writer,
        },
    );
    Ok((request, controller, handler))
}

/// `requestAbort(agent, id)`: the core drops the request; JS already told the handler.
pub fn request_abort(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = request_id(&mut cx, 1)?;
    if let Some(handle) = agent.queue.remove(id) {
        handle.controller.abort();
    }
    Ok(cx.undefined())
}

/// `requestsProceed(agent, ids, count)`: the gated requests named by the first `count` numbers of `ids` (a
/// `Float64Array`) were announced to their handlers, which did not abort them: each writes itself onto its
/// connection. The answers of one tick cross together.
pub fn requests_proceed(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let ids = cx.argument::<JsTypedArray<f64>>(1)?;
    let count = cx.argument::<JsNumber>(2)?.value(&mut cx) as usize;
    let Some(ids) = ids.as_slice(&cx).get(..count) else {
        return cx.throw_range_error("requestsProceed: fewer ids than the count");
    };
    for &id in ids {
        agent
            .queue
            .with_request(id as u64, |h| h.controller.open_gate());
    }
    Ok(cx.undefined())
}

pub fn request_pause(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = request_id(&mut cx, 1)?;
    agent.queue.with_request(id, |h| h.controller.pause());
    Ok(cx.undefined())
}

pub fn request_resume(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = request_id(&mut cx, 1)?;
    agent.queue.with_request(id, |h| h.controller.resume());
    Ok(cx.undefined())
}

/// `requestPushBody(agent, id, chunk)`: a Uint8Array is the next chunk, `null` the end, a string an error
/// message (the JS layer keeps the error object itself).
pub fn request_push_body(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = request_id(&mut cx, 1)?;
    let chunk = cx.argument::<JsValue>(2)?;
    let message = if let Ok(bytes) = chunk.downcast::<JsTypedArray<u8>, _>(&mut cx) {
        BodyChunk::Data(Bytes::copy_from_slice(bytes.as_slice(&cx)))
    } else if let Ok(message) = chunk.downcast::<JsString, _>(&mut cx) {
        BodyChunk::Error(CoreError::new(
            ErrorKind::RequestBody,
            message.value(&mut cx),
        ))
    } else {
        BodyChunk::End
    };
    agent.queue.with_request(id, |h| {
        if let Some(body) = &h.body {
            body.send(message);
        }
    });
    Ok(cx.undefined())
}

/// `upgradeWrite(agent, id, chunks)`: writes `chunks` (an array of Uint8Arrays, one write: a `WRITTEN` event
/// reports its completion) onto the request's upgraded connection; `null` ends the caller's direction (its
/// completion is reported the same way).
pub fn upgrade_write(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = request_id(&mut cx, 1)?;
    let chunks = cx.argument::<JsValue>(2)?;
    let write = match chunks.downcast::<JsArray, _>(&mut cx) {
        Ok(list) => {
            let len = list.len(&mut cx);
            let mut data = Vec::with_capacity(len as usize);
            for i in 0..len {
                let chunk = list.get::<JsTypedArray<u8>, _, _>(&mut cx, i)?;
                data.push(Bytes::copy_from_slice(chunk.as_slice(&cx)));
            }
            UpgradeWrite::Data(data)
        }
        Err(_) => UpgradeWrite::End,
    };
    agent.queue.with_request(id, |h| {
        if let Some(writer) = &h.upgrade {
            writer.send(write);
        }
    });
    Ok(cx.undefined())
}
