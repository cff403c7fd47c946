//! The response side of a request: its head checked against `maxHeaderSize` and handed on, then its body
//! chunk by chunk as the request's controller allows (pause, credit), within `bodyTimeout` and
//! `maxResponseSize`, then its trailers.

use crate::controller::RequestController;
use crate::error::{CoreError, ErrorKind};
use crate::handler::{DispatchHandler, ResponseHead};
use crate::options::AgentOptions;
use crate::policy::upstream::{upstream_failed, Permit};
use crate::runtime::within;
use crate::transport::slots::Slot;
use crate::transport::IncomingBody;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use std::time::Duration;

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Hands a response on: head, body chunks as the controller allows, trailers. `held` (the request's place
/// in its origin's request slots and circuit breaker) lasts until the body ended.
pub(crate) async fn deliver<H: DispatchHandler>(
    options: &AgentOptions,
    body_timeout: Option<Duration>,
    response: http::Response<IncomingBody>,
    held: (Slot, Permit),
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let (slot, permit) = held;
    let failed_status = response.status().is_server_error();
    let result = stream_response(options, body_timeout, response, controller, handler).await;
    permit.record(failed_status || result.as_ref().is_err_and(upstream_failed));
    drop(slot);
    result
}

async fn stream_response<H: DispatchHandler>(
    options: &AgentOptions,
    body_timeout: Option<Duration>,
    response: http::Response<IncomingBody>,
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let (parts, mut body) = response.into_parts();
    if header_bytes(&parts.headers) > options.max_header_size {
        return Err(CoreError::new(
            ErrorKind::HeadersOverflow,
            "Headers Overflow Error",
        ));
    }
    // HTTP/2 has no reason phrase on the wire: undici reports '' there, and the server's own phrase on HTTP/1.1.
    let status_text = if parts.version >= http::Version::HTTP_2 {
        Bytes::new()
    } else {
        match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => Bytes::copy_from_slice(reason.as_bytes()),
            None => Bytes::from_static(parts.status.canonical_reason().unwrap_or("").as_bytes()),
        }
    };
    let connection = parts
        .extensions
        .get::<hyper_util::client::legacy::connect::HttpInfo>();
    handler.on_response_start(ResponseHead {
        status: parts.status.as_u16(),
        status_text,
        version: parts.version,
        remote_addr: connection.map(|info| info.remote_addr()),
        local_addr: connection.map(|info| info.local_addr()),
        headers: parts.headers,
    });

    let mut received: u64 = 0;
    let mut trailers = HeaderMap::new();
    loop {
        controller.ready().await;
        let frame = within(body_timeout, body.frame(), || {
            CoreError::new(ErrorKind::BodyTimeout, "Body Timeout Error")
        })
        .await?;
        let frame = match frame {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                received += data.len() as u64;
                if options.max_response_size.is_some_and(|max| received > max) {
                    return Err(CoreError::new(
                        ErrorKind::ResponseExceededMaxSize,
                        "Response content exceeded max size",
                    ));
                }
                controller.charge(data.len());
                handler.on_response_data(data);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    handler.on_response_end(trailers);
    Ok(())
}
