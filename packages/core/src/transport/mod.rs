//! How requests reach the network: the [`Transport`] an agent sends through, and the request and response
//! bodies it carries.
//!
//! Two paths, one file each: agents without a proxy take the direct one (`direct.rs`: hyper-util's pooled
//! client over our rustls connector); agents with a proxy take reqwest (`proxied.rs`), for its proxy support
//! (forward proxying, CONNECT tunnels, socks5). The direct path exists because reqwest's per-request work (its
//! redirect layer and `Url` handling re-parse every URL, header merging, boxed futures) cost about as much CPU
//! as hyper itself in profiles, for features an undici-style dispatcher never uses.
//!
//! Beside them: TLS as Node configures it (`tls.rs`), proxies as undici configures them (`proxy.rs`), the
//! connection events undici reports (`connections.rs`), the per-origin request slots that stand in for
//! undici's `connections` cap (`slots.rs`), and the classification of transport failures into undici's errors
//! (`classify.rs`).

mod classify;
pub(crate) mod connections;
mod direct;
mod proxied;
mod proxy;
pub(crate) mod slots;
mod tls;

use crate::body::PullBody;
use crate::error::CoreError;
use crate::options::AgentOptions;
use bytes::Bytes;
use connections::ConnectionObserver;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The agent's way to the network.
#[derive(Clone)]
pub(crate) enum Transport {
    /// hyper-util's pooled client over our connector: every agent without a proxy. Behind an `Arc` so that
    /// the per-request clone is one reference count, not the client's own several.
    Direct(Arc<direct::DirectClient>),
    /// reqwest, for its proxy support.
    Proxied(reqwest::Client),
}

impl Transport {
    /// `observer` hears of every connection the direct path opens and closes (reqwest's proxied pool does
    /// not tell).
    pub(crate) fn build(
        options: &AgentOptions,
        observer: ConnectionObserver,
    ) -> Result<Transport, CoreError> {
        if options.proxy.is_some() {
            return Ok(Transport::Proxied(proxied::client(options)?));
        }
        Ok(Transport::Direct(Arc::new(direct::client(
            options, observer,
        )?)))
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: http::Request<OutgoingBody>,
    ) -> Result<http::Response<IncomingBody>, CoreError> {
        match self {
            Transport::Direct(client) => {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| classify::direct_send(&e))?;
                Ok(response.map(IncomingBody::Direct))
            }
            Transport::Proxied(client) => {
                let request = reqwest::Request::try_from(request.map(reqwest::Body::wrap))
                    .map_err(|e| CoreError::invalid_argument(format!("invalid request: {e}")))?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| classify::proxied_send(&e))?;
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(IncomingBody::Proxied))
            }
        }
    }
}

/// A request body as hyper sends it: nothing, bytes known up front, or chunks pulled from the caller.
pub(crate) enum OutgoingBody {
    Empty,
    Full(Option<Bytes>),
    Pull(PullBody),
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = CoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CoreError>>> {
        match self.get_mut() {
            OutgoingBody::Empty => Poll::Ready(None),
            OutgoingBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutgoingBody::Pull(pull) => Pin::new(pull).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutgoingBody::Empty | OutgoingBody::Full(None) => true,
            OutgoingBody::Full(Some(_)) => false,
            OutgoingBody::Pull(pull) => pull.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutgoingBody::Empty | OutgoingBody::Full(None) => SizeHint::with_exact(0),
            OutgoingBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            OutgoingBody::Pull(pull) => pull.size_hint(),
        }
    }
}

/// A response body from either transport, with its errors already classified.
pub(crate) enum IncomingBody {
    Direct(hyper::body::Incoming),
    Proxied(reqwest::Body),
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = CoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CoreError>>> {
        match self.get_mut() {
            IncomingBody::Direct(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|e| classify::body(&e)))),
            IncomingBody::Proxied(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|e| classify::body(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            IncomingBody::Direct(body) => body.is_end_stream(),
            IncomingBody::Proxied(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            IncomingBody::Direct(body) => body.size_hint(),
            IncomingBody::Proxied(body) => body.size_hint(),
        }
    }
}
