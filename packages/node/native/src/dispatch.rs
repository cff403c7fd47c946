//! `dispatch` and the per-request controls: one call starts a request, the returned box steers it.

use crate::agent::BoxedAgent;
use crate::events::{Event, QueueHandler};
use crate::marshal::{string_to_latin1, timeout_override};
use bytes::Bytes;
use neon::prelude::*;
use neon::types::buffer::TypedArray;
use reqwest_dispatcher_core::{
    BodyChunk, BodyPull, BodySender, CoreError, DispatchRequest, ErrorKind, RequestBody,
    RequestController,
};

/// Response bytes that may wait for the JS thread before the core stops reading.
const RESPONSE_CREDIT: usize = 2 * 1024 * 1024;

/// Body-mode argument values (see src/native.ts).
const BODY_NONE: f64 = -1.0;
const BODY_BYTES: f64 = -3.0;

pub struct NativeRequest {
    controller: RequestController,
    body: Option<BodySender>,
}

impl Finalize for NativeRequest {}

type BoxedRequest = JsBox<NativeRequest>;

/// `dispatch(agent, id, method, url, headers, bodyMode, body, headersTimeout, bodyTimeout)`.
///
/// `headers` is a flat `[name, value, …]` array of strings; `bodyMode` is -1 (none), -3 (bytes in `body`),
/// -2 (pulled, unknown length) or a non-negative pulled length.
pub fn dispatch(mut cx: FunctionContext) -> JsResult<BoxedRequest> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let id = cx.argument::<JsNumber>(1)?.value(&mut cx);
    let method = cx.argument::<JsString>(2)?.value(&mut cx);
    let url = cx.argument::<JsString>(3)?.value(&mut cx);
    let header_list = cx.argument::<JsArray>(4)?;
    let body_mode = cx.argument::<JsNumber>(5)?.value(&mut cx);
    let headers_timeout = cx.argument::<JsNumber>(7)?.value(&mut cx);
    let body_timeout = cx.argument::<JsNumber>(8)?.value(&mut cx);

    let len = header_list.len(&mut cx);
    let mut headers = Vec::with_capacity(len as usize / 2);
    let mut i = 0;
    while i + 1 < len {
        let name = header_list
            .get::<JsString, _, _>(&mut cx, i)?
            .value(&mut cx);
        let value = header_list
            .get::<JsString, _, _>(&mut cx, i + 1)?
            .value(&mut cx);
        headers.push((name, Bytes::from(string_to_latin1(value))));
        i += 2;
    }

    let controller = RequestController::with_credit(RESPONSE_CREDIT);
    let mut sender = None;
    let body = if body_mode == BODY_NONE {
        RequestBody::Empty
    } else if body_mode == BODY_BYTES {
        let bytes = cx.argument::<JsTypedArray<u8>>(6)?;
        RequestBody::Bytes(Bytes::copy_from_slice(bytes.as_slice(&cx)))
    } else {
        let length = (body_mode >= 0.0).then_some(body_mode as u64);
        let queue = agent.queue.clone();
        let (tx, pull) = BodyPull::channel(length, move || queue.push(Event::Pull(id)));
        sender = Some(tx);
        RequestBody::Pull(pull)
    };

    let mut request = DispatchRequest::new(method, url).body(body);
    request.headers = headers;
    request.headers_timeout = timeout_override(headers_timeout);
    request.body_timeout = timeout_override(body_timeout);

    let handler = QueueHandler {
        id,
        queue: agent.queue.clone(),
        controller: controller.clone(),
    };
    match agent.core.borrow().as_ref() {
        Some(core) => core.dispatch(request, controller.clone(), handler),
        None => return cx.throw_error("the agent is closed"),
    }
    Ok(cx.boxed(NativeRequest {
        controller,
        body: sender,
    }))
}

pub fn request_abort(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let request = cx.argument::<BoxedRequest>(0)?;
    request.controller.abort();
    Ok(cx.undefined())
}

pub fn request_pause(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let request = cx.argument::<BoxedRequest>(0)?;
    request.controller.pause();
    Ok(cx.undefined())
}

pub fn request_resume(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let request = cx.argument::<BoxedRequest>(0)?;
    request.controller.resume();
    Ok(cx.undefined())
}

/// `requestPushBody(request, chunk)`: a Uint8Array is the next chunk, `null` the end, a string an error message
/// (the JS layer keeps the error object itself).
pub fn request_push_body(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let request = cx.argument::<BoxedRequest>(0)?;
    let chunk = cx.argument::<JsValue>(1)?;
    let Some(sender) = &request.body else {
        return cx.throw_error("request has no pulled body");
    };
    if let Ok(bytes) = chunk.downcast::<JsTypedArray<u8>, _>(&mut cx) {
        sender.send(BodyChunk::Data(Bytes::copy_from_slice(bytes.as_slice(&cx))));
    } else if let Ok(message) = chunk.downcast::<JsString, _>(&mut cx) {
        let message = message.value(&mut cx);
        sender.send(BodyChunk::Error(CoreError::new(
            ErrorKind::RequestBody,
            message,
        )));
    } else {
        sender.send(BodyChunk::End);
    }
    Ok(cx.undefined())
}
