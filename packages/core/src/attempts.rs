//! The attempt loop: the task behind one dispatch, which carries the request through its origin's policies
//! (circuit breaker, rate limit), its request slot, and attempts on the transport, until one attempt is not
//! retried; then hands the response on (`response.rs`).

use crate::controller::RequestController;
use crate::error::{CoreError, ErrorKind};
use crate::handler::DispatchHandler;
use crate::options::AgentOptions;
use crate::policy::upstream::{upstream_failed, Turn, Upstream};
use crate::request::{DispatchRequest, PanicPoint, Template};
use crate::response::deliver;
use crate::runtime::within;
use crate::transport::slots::{Entry, Slots};
use crate::transport::Transport;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Most times a request the server refused unprocessed is sent again.
const MAX_RESENDS: u32 = 3;

/// What every attempt of one agent goes through.
pub(crate) struct Attempts<'a> {
    pub(crate) transport: &'a Transport,
    pub(crate) slots: &'a Arc<Slots>,
    pub(crate) options: &'a AgentOptions,
}

impl Attempts<'_> {
    /// Carries one request through its origin's policies: circuit breaker, rate limit, a request slot (the
    /// `connections` cap, the HTTP/2 probe; the first attempt's place in line may be taken already), then
    /// attempts until one is not retried.
    pub(crate) async fn run<H: DispatchHandler>(
        &self,
        upstream: &Arc<Upstream>,
        request: DispatchRequest,
        (first_turn, entry): (Turn, Option<Entry>),
        controller: &RequestController,
        handler: &mut H,
    ) -> Result<(), CoreError> {
        let headers_timeout = request
            .headers_timeout
            .unwrap_or(self.options.headers_timeout);
        let body_timeout = request.body_timeout.unwrap_or(self.options.body_timeout);
        let panic_at = request.panic_at;
        PanicPoint::check(panic_at, PanicPoint::BeforeSend);
        let mut template = Template::new(request, &upstream.metrics)?;
        // Only a request whose body can be sent again is retried.
        let retry = upstream
            .retry
            .as_ref()
            .filter(|retry| template.replayable && retry.allows_method(template.method.as_str()));
        let mut retries = 0u32;
        // Attempts the server refused unprocessed (HTTP/2 GOAWAY, REFUSED_STREAM), sent again at once on a
        // new connection whatever the method: the server did not act on them.
        let mut resent = 0u32;
        let mut turn = Some(first_turn);
        let mut entry = entry;
        loop {
            let turn = turn.take().unwrap_or_else(|| upstream.take_turn());
            let permit = upstream.breaker_permit()?;
            upstream.wait_turn(turn).await?;
            let slot = match entry.take() {
                Some(entry) => entry.wait().await,
                None => self.slots.acquire(&template.url).await,
            };
            let sent = within(
                headers_timeout,
                self.transport.send(template.attempt(controller)),
                || CoreError::new(ErrorKind::HeadersTimeout, "Headers Timeout Error"),
            )
            .await
            .and_then(|result| result);
            let response = match sent {
                Ok(response) => response,
                Err(error)
                    if error.kind == ErrorKind::Unprocessed
                        && template.replayable
                        && resent < MAX_RESENDS =>
                {
                    resent += 1;
                    drop(permit);
                    drop(slot);
                    continue;
                }
                Err(error) => {
                    // A failure of the request's own making (its body source, an abort) says nothing
                    // about the upstream: the attempt leaves no outcome in the breaker.
                    if upstream_failed(&error) {
                        permit.record(true);
                    }
                    drop(slot);
                    match retry.and_then(|r| r.after_error(&error, retries + 1)) {
                        Some(wait) => {
                            retries += 1;
                            self.retry_after(upstream, handler, retries, wait).await;
                            continue;
                        }
                        None => return Err(error),
                    }
                }
            };
            slot.observe(response.version);
            let status = response.status;
            if let Some(wait) =
                retry.and_then(|r| r.after_status(status, &response.headers, retries + 1))
            {
                permit.record(status >= 500);
                drop(response);
                drop(slot);
                retries += 1;
                self.retry_after(upstream, handler, retries, wait).await;
                continue;
            }
            let writes = template.take_writes();
            return deliver(
                self.options,
                (body_timeout, panic_at),
                response,
                (slot, permit),
                writes,
                controller,
                handler,
            )
            .await;
        }
    }

    async fn retry_after<H: DispatchHandler>(
        &self,
        upstream: &Upstream,
        handler: &mut H,
        retry: u32,
        wait: Duration,
    ) {
        upstream.metrics.retries.fetch_add(1, Relaxed);
        handler.on_retry(retry);
        tokio::time::sleep(wait).await;
    }
}
