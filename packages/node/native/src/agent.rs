//! The JS-visible agent: a boxed core agent, its event queue, and the channel whose reference keeps Node alive
//! only while requests are in flight.

use crate::events::EventQueue;
use crate::marshal::timeout_option;
use neon::prelude::*;
use reqwest_dispatcher_core::{Agent, AgentOptions};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

pub struct NativeAgent {
    /// `None` once the agent was closed: dropping the core agent drops its pool and idle connections.
    pub core: RefCell<Option<Agent>>,
    pub queue: Arc<EventQueue>,
    /// The referenced/unreferenced handle; the queue holds an unreferenced clone for sending.
    keep_alive: RefCell<Channel>,
}

impl Finalize for NativeAgent {}

pub type BoxedAgent = JsBox<NativeAgent>;

fn number_option(
    cx: &mut FunctionContext,
    options: Handle<JsObject>,
    key: &str,
) -> NeonResult<Option<f64>> {
    let value: Handle<JsValue> = options.get_value(cx, key)?;
    Ok(value.downcast::<JsNumber, _>(cx).ok().map(|n| n.value(cx)))
}

/// `agentNew(options, deliver)`: options were validated and defaulted by the TypeScript layer.
pub fn agent_new(mut cx: FunctionContext) -> JsResult<BoxedAgent> {
    let options = cx.argument::<JsObject>(0)?;
    let deliver = cx.argument::<JsFunction>(1)?.root(&mut cx);

    let mut core = AgentOptions::default();
    if let Some(ms) = number_option(&mut cx, options, "connectTimeout")? {
        core.connect_timeout = timeout_option(ms);
    }
    if let Some(ms) = number_option(&mut cx, options, "headersTimeout")? {
        core.headers_timeout = timeout_option(ms);
    }
    if let Some(ms) = number_option(&mut cx, options, "bodyTimeout")? {
        core.body_timeout = timeout_option(ms);
    }
    if let Some(ms) = number_option(&mut cx, options, "keepAliveTimeout")? {
        core.keep_alive_timeout = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    }
    if let Some(max) = number_option(&mut cx, options, "maxResponseSize")? {
        core.max_response_size = (max >= 0.0).then_some(max as u64);
    }
    if let Some(max) = number_option(&mut cx, options, "maxHeaderSize")? {
        core.max_header_size = max as usize;
    }
    let allow_h2: Handle<JsValue> = options.get_value(&mut cx, "allowH2")?;
    core.allow_h2 = allow_h2
        .downcast::<JsBoolean, _>(&mut cx)
        .is_ok_and(|b| b.value(&mut cx));

    let agent = match Agent::new(core) {
        Ok(agent) => agent,
        Err(error) => return cx.throw_error(error.message),
    };
    let mut keep_alive = cx.channel();
    keep_alive.unref(&mut cx);
    let queue = EventQueue::new(keep_alive.clone(), deliver);
    Ok(cx.boxed(NativeAgent {
        core: RefCell::new(Some(agent)),
        queue,
        keep_alive: RefCell::new(keep_alive),
    }))
}

/// `agentSetActive(agent, active)`: while active (requests in flight) the agent keeps the process alive.
pub fn agent_set_active(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let active = cx.argument::<JsBoolean>(1)?.value(&mut cx);
    let mut channel = agent.keep_alive.borrow_mut();
    if active {
        channel.reference(&mut cx);
    } else {
        channel.unref(&mut cx);
    }
    Ok(cx.undefined())
}

/// `setWorkerThreads(n)`: the tokio worker count, effective only before the first agent exists.
pub fn set_worker_threads(mut cx: FunctionContext) -> JsResult<JsBoolean> {
    let threads = cx.argument::<JsNumber>(0)?.value(&mut cx);
    let applied = reqwest_dispatcher_core::set_worker_threads(threads.max(0.0) as usize);
    Ok(cx.boolean(applied))
}

/// `agentClose(agent)`: drops the core agent, closing its idle connections. Requests still in flight keep the
/// connections they use until they finish; the JS layer calls this once none are left (close) or all were
/// aborted (destroy).
pub fn agent_close(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    agent.core.borrow_mut().take();
    Ok(cx.undefined())
}
