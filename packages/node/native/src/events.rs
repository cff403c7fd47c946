//! Event delivery from tokio threads to the JS thread: one queue and one Neon `Channel` per agent.
//!
//! Core tasks push events; the first push into an empty queue schedules a drain on the JS thread. The drain
//! takes every queued event and hands them to JavaScript in one call, as a flat array of
//! `kind, id, a, b` quadruples, so a burst of responses costs one wake-up of the event loop.

use crate::marshal::{latin1_to_string, push_headers};
use bytes::Bytes;
use http::HeaderMap;
use neon::prelude::*;
use reqwest_dispatcher_core::{CoreError, DispatchHandler, RequestController, ResponseHead};
use std::sync::{Arc, Mutex};

// Event kinds, mirrored in src/native.ts.
const START: f64 = 1.0;
const DATA: f64 = 2.0;
const END: f64 = 3.0;
const ERROR: f64 = 4.0;
const PULL: f64 = 5.0;

pub enum Event {
    Start(f64, ResponseHead),
    Data(f64, Bytes, RequestController),
    End(f64, HeaderMap),
    Error(f64, CoreError),
    Pull(f64),
}

#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    scheduled: bool,
}

pub struct EventQueue {
    pending: Mutex<Pending>,
    channel: Channel,
    deliver: Root<JsFunction>,
}

impl EventQueue {
    /// `channel` should be an unreferenced clone: keeping the process alive is the agent's decision.
    pub fn new(channel: Channel, deliver: Root<JsFunction>) -> Arc<Self> {
        Arc::new(EventQueue {
            pending: Mutex::new(Pending::default()),
            channel,
            deliver,
        })
    }

    pub fn push(self: &Arc<Self>, event: Event) {
        let schedule = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.events.push(event);
            !std::mem::replace(&mut pending.scheduled, true)
        };
        if schedule {
            let queue = Arc::clone(self);
            // Fails only while Node shuts down, when nobody is left to deliver to.
            let _ = self.channel.try_send(move |cx| queue.drain(cx));
        }
    }

    fn drain(&self, mut cx: Cx) -> NeonResult<()> {
        let events = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.scheduled = false;
            std::mem::take(&mut pending.events)
        };
        let batch = JsArray::new(&mut cx, events.len() * 4);
        let mut released: Vec<(RequestController, usize)> = Vec::new();
        for (i, event) in events.into_iter().enumerate() {
            let at = (i * 4) as u32;
            let (kind, id): (f64, f64) = match event {
                Event::Start(id, head) => {
                    let status = cx.number(head.status);
                    batch.set(&mut cx, at + 2, status)?;
                    let fields = JsArray::new(&mut cx, 1 + head.headers.len() * 2);
                    let text = cx.string(latin1_to_string(&head.status_text));
                    fields.set(&mut cx, 0, text)?;
                    push_headers(&mut cx, fields, 1, &head.headers)?;
                    batch.set(&mut cx, at + 3, fields)?;
                    (START, id)
                }
                Event::Data(id, chunk, controller) => {
                    let buffer = JsBuffer::from_slice(&mut cx, &chunk)?;
                    batch.set(&mut cx, at + 2, buffer)?;
                    released.push((controller, chunk.len()));
                    (DATA, id)
                }
                Event::End(id, trailers) => {
                    if !trailers.is_empty() {
                        let fields = JsArray::new(&mut cx, trailers.len() * 2);
                        push_headers(&mut cx, fields, 0, &trailers)?;
                        batch.set(&mut cx, at + 2, fields)?;
                    }
                    (END, id)
                }
                Event::Error(id, error) => {
                    let code = cx.string(error.code());
                    batch.set(&mut cx, at + 2, code)?;
                    let message = cx.string(&error.message);
                    batch.set(&mut cx, at + 3, message)?;
                    (ERROR, id)
                }
                Event::Pull(id) => (PULL, id),
            };
            let kind = cx.number(kind);
            batch.set(&mut cx, at, kind)?;
            let id = cx.number(id);
            batch.set(&mut cx, at + 1, id)?;
        }
        let deliver = self.deliver.to_inner(&mut cx);
        let result = deliver.call_with(&cx).arg(batch).exec(&mut cx);
        // The JS side has taken the data (or dropped it with its request): it no longer counts as in flight.
        for (controller, bytes) in released {
            controller.release(bytes);
        }
        result
    }
}

/// Forwards one request's events to its agent's queue.
pub struct QueueHandler {
    pub id: f64,
    pub queue: Arc<EventQueue>,
    pub controller: RequestController,
}

impl DispatchHandler for QueueHandler {
    fn on_response_start(&mut self, head: ResponseHead) {
        self.queue.push(Event::Start(self.id, head));
    }

    fn on_response_data(&mut self, chunk: Bytes) {
        self.queue
            .push(Event::Data(self.id, chunk, self.controller.clone()));
    }

    fn on_response_end(&mut self, trailers: HeaderMap) {
        self.queue.push(Event::End(self.id, trailers));
    }

    fn on_error(&mut self, error: CoreError) {
        self.queue.push(Event::Error(self.id, error));
    }
}
