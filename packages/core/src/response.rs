//! The response side of a request: its head checked against `maxHeaderSize` and handed on, then its body
//! chunk by chunk as the request's controller allows (pause, credit), within `bodyTimeout` and
//! `maxResponseSize`, then its trailers. A response that switched protocols hands the connection on instead
//! (`tunnel.rs`).

use crate::controller::RequestController;
use crate::error::{CoreError, ErrorKind};
use crate::handler::{DispatchHandler, ResponseHead};
use crate::options::AgentOptions;
use crate::policy::upstream::{upstream_failed, Permit};
use crate::request::PanicPoint;
use crate::runtime::within;
use crate::transport::slots::Slot;
use crate::transport::{BodyPiece, IncomingBody, Response, Upgraded};
use crate::tunnel;
use crate::upgrade::UpgradeWrites;
use bytes::Bytes;
use std::time::Duration;

/// Hands a response on: head, body chunks as the controller allows, trailers. `held` (the request's place
/// in its origin's request slots and circuit breaker) lasts until the body ended — or, for a connection that
/// switched protocols (then carried with `writes`), until the switch.
pub(crate) async fn deliver<H: DispatchHandler>(
    options: &AgentOptions,
    (body_timeout, panic_at): (Option<Duration>, Option<PanicPoint>),
    response: Response,
    held: (Slot, Permit),
    writes: Option<UpgradeWrites>,
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let (slot, permit) = held;
    let failed_status = (500..600).contains(&response.status);
    let result = stream_response(
        options,
        (body_timeout, panic_at),
        response,
        controller,
        handler,
    )
    .await;
    permit.record(failed_status || result.as_ref().is_err_and(upstream_failed));
    drop(slot);
    match result? {
        None => Ok(()),
        Some((head, io)) => match writes {
            Some(writes) => {
                // Announced once the request left its slot: the agent has forgotten it by then.
                handler.on_upgrade(head);
                tunnel::carry(io, writes, controller, handler).await
            }
            None => Err(CoreError::new(
                ErrorKind::Internal,
                "a connection switched protocols for a request that asked for no switch",
            )),
        },
    }
}

/// Reads the response to its end; a connection that switched protocols is returned instead, with its head.
async fn stream_response<H: DispatchHandler>(
    options: &AgentOptions,
    (body_timeout, panic_at): (Option<Duration>, Option<PanicPoint>),
    response: Response,
    controller: &RequestController,
    handler: &mut H,
) -> Result<Option<(ResponseHead, Upgraded)>, CoreError> {
    let Response {
        status,
        reason,
        version,
        headers,
        remote,
        local,
        body,
    } = response;
    let mut body: IncomingBody = body;
    // The HTTP/1.1 engine enforces maxHeaderSize while reading; hyper's paths are checked once parsed.
    if !matches!(body, IncomingBody::H1(_)) && headers.wire_size() > options.max_header_size {
        return Err(CoreError::new(
            ErrorKind::HeadersOverflow,
            "Headers Overflow Error",
        ));
    }
    // A response is final only with a status of 200 or more, or a 101 that switched the connection for a
    // request that asked for it: undici fails an unsolicited 101 so. (The HTTP/1.1 engine refuses it while
    // parsing; hyper hands it over as a response.)
    if status == 101 && !matches!(body, IncomingBody::Upgraded(_)) {
        return Err(CoreError::new(ErrorKind::Socket, "bad upgrade"));
    }
    // HTTP/2 has no reason phrase on the wire: undici reports '' there, and the server's own phrase on HTTP/1.1.
    let status_text = if version >= http::Version::HTTP_2 {
        Bytes::new()
    } else {
        reason.unwrap_or_else(|| {
            Bytes::from_static(
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .as_bytes(),
            )
        })
    };
    let head = ResponseHead {
        status,
        status_text,
        version,
        remote_addr: remote,
        local_addr: local,
        headers,
    };
    if let IncomingBody::Upgraded(io) = body {
        return Ok(Some((head, io)));
    }
    handler.on_response_start(head);
    PanicPoint::check(panic_at, PanicPoint::AtHead);

    let mut received: u64 = 0;
    loop {
        controller.ready().await;
        let piece = within(body_timeout, body.next(), || {
            CoreError::new(ErrorKind::BodyTimeout, "Body Timeout Error")
        })
        .await??;
        match piece {
            BodyPiece::Data(data) => {
                received += data.len() as u64;
                if options.max_response_size.is_some_and(|max| received > max) {
                    return Err(CoreError::new(
                        ErrorKind::ResponseExceededMaxSize,
                        "Response content exceeded max size",
                    ));
                }
                controller.charge(data.len());
                handler.on_response_data(data);
                PanicPoint::check(panic_at, PanicPoint::InBody);
            }
            BodyPiece::End(trailers) => {
                handler.on_response_end(trailers);
                return Ok(None);
            }
        }
    }
}
