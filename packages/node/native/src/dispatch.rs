//! `dispatch` and the per-request controls. Requests are named by the id JS gave them: no per-request JS
//! object is created on the native side (each would be a V8 external with a finalizer for the GC to track).

use crate::agent::BoxedAgent;
use crate::marshal::{split_fields, timeout_override};
use crate::protocol::{request as field, BODY_BYTES, BODY_NONE, REQUEST_FIELDS};
use crate::queue::{Event, QueueHandler, RequestHandle};
use crate::test_hook::{self, Armed};
use bytes::Bytes;
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    Agent, BodyChunk, BodyPull, CoreError, DispatchRequest, ErrorKind, RequestBody,
    RequestController, Switch, Upgrade, UpgradeWrite,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Response bytes of one request that may wait for the JS thread before the core stops reading: enough to
/// keep a fast consumer busy between two drains, small enough that 100 large responses queue at most 25 MiB.
const RESPONSE_CREDIT: usize = 256 * 1024;

fn request_id(cx: &mut FunctionContext, index: usize) -> NeonResult<u64> {
    Ok(cx.argument::<JsNumber>(index)?.value(cx) as u64)
}

/// Values of one request in a `dispatchBatch` array.
const FIELDS_PER_REQUEST: u32 = REQUEST_FIELDS.len() as u32;

/// `dispatchBatch(agent, requests)`: starts every request of `requests`, a flat array of
/// [`REQUEST_FIELDS`] per request (see `protocol.rs`). Requests started in the same tick travel together: one
/// call into the addon and back-to-back spawns, so one wake-up of the runtime usually serves them all.
pub fn dispatch_batch(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let list = cx.argument::<JsArray>(1)?;
    let core = agent.core.borrow();
    let Some(core) = core.as_ref() else {
        return cx.throw_error("the agent is closed");
    };
    let len = list.len(&mut cx);
    let mut at = 0;
    while at + FIELDS_PER_REQUEST <= len {
        let id = list
            .get::<JsNumber, _, _>(&mut cx, at + field::ID)?
            .value(&mut cx) as u64;
        start_contained(&mut cx, &agent, core, list, at, id, None)?;
        at += FIELDS_PER_REQUEST;
    }
    Ok(cx.undefined())
}

/// `dispatchUpgrade(agent, request, protocol, target)`: starts one request that leaves HTTP, its
/// [`REQUEST_FIELDS`] in `request`: an upgrade to `protocol`, or (`protocol` null) a `CONNECT` for `target`.
/// Its upgraded connection takes writes through `upgradeWrite`.
pub fn dispatch_upgrade(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let list = cx.argument::<JsArray>(1)?;
    let protocol = cx.argument::<JsValue>(2)?;
    let target = cx.argument::<JsString>(3)?.value(&mut cx);
    let switch = match protocol.downcast::<JsString, _>(&mut cx) {
        Ok(protocol) => Switch::Protocol(protocol.value(&mut cx)),
        Err(_) => Switch::Connect(target),
    };
    let core = agent.core.borrow();
    let Some(core) = core.as_ref() else {
        return cx.throw_error("the agent is closed");
    };
    let id = list
        .get::<JsNumber, _, _>(&mut cx, field::ID)?
        .value(&mut cx) as u64;
    start_contained(&mut cx, &agent, core, list, 0, id, Some(switch))?;
    Ok(cx.undefined())
}

/// Starts the request at `at` in `list`. A panic while starting it fails that request alone: the others of
/// a batch still start, and no exception escapes into the microtask that sent them.
fn start_contained(
    cx: &mut FunctionContext,
    agent: &Handle<BoxedAgent>,
    core: &Agent,
    list: Handle<JsArray>,
    at: u32,
    id: u64,
    switch: Option<Switch>,
) -> NeonResult<()> {
    let started = catch_unwind(AssertUnwindSafe(|| {
        start_request(cx, agent, core, list, at, id, switch)
    }));
    match started {
        Ok(result) => result,
        Err(panic) => {
            agent.queue.remove(id);
            agent.queue.push(Event::Error(
                id,
                CoreError::from_panic("internal error in reqwest-dispatcher", &*panic),
            ));
            Ok(())
        }
    }
}

/// Reads the request at `at` in `list` and hands it to the core; `switch`: how it leaves HTTP, if it does.
fn start_request(
    cx: &mut FunctionContext,
    agent: &Handle<BoxedAgent>,
    core: &Agent,
    list: Handle<JsArray>,
    at: u32,
    id: u64,
    switch: Option<Switch>,
) -> NeonResult<()> {
    let armed = test_hook::take();
    if armed == Some(Armed::Dispatch) {
        panic!("test panic (Dispatch) armed by the panic-containment hook");
    }
    let method = list
        .get::<JsString, _, _>(cx, at + field::METHOD)?
        .value(cx);
    let url = list.get::<JsString, _, _>(cx, at + field::URL)?.value(cx);
    let headers = list
        .get::<JsString, _, _>(cx, at + field::HEADERS)?
        .value(cx);
    let body_mode = list
        .get::<JsNumber, _, _>(cx, at + field::BODY_MODE)?
        .value(cx);
    let headers_timeout = list
        .get::<JsNumber, _, _>(cx, at + field::HEADERS_TIMEOUT)?
        .value(cx);
    let body_timeout = list
        .get::<JsNumber, _, _>(cx, at + field::BODY_TIMEOUT)?
        .value(cx);

    let controller = RequestController::with_credit(RESPONSE_CREDIT);
    let mut sender = None;
    let body = if body_mode == BODY_NONE {
        RequestBody::Empty
    } else if body_mode == BODY_BYTES {
        let bytes = list.get::<JsTypedArray<u8>, _, _>(cx, at + field::BODY)?;
        RequestBody::Bytes(Bytes::copy_from_slice(bytes.as_slice(cx)))
    } else {
        let length = (body_mode >= 0.0).then_some(body_mode as u64);
        let queue = agent.queue.clone();
        let (tx, pull) = BodyPull::channel(length, move || queue.push(Event::Pull(id)));
        sender = Some(tx);
        RequestBody::Pull(pull)
    };

    let mut request = DispatchRequest::new(method, url).body(body);
    request.headers = split_fields(&headers)
        .into_iter()
        .map(|(name, value)| (name, Bytes::from(value)))
        .collect();
    request.headers_timeout = timeout_override(headers_timeout);
    request.body_timeout = timeout_override(body_timeout);
    if let Some(Armed::Core(point)) = armed {
        request.panic_at = Some(point);
    }
    let writer = switch.map(|switch| {
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
    core.dispatch(request, controller, handler);
    Ok(())
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
