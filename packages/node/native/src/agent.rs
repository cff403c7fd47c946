//! The JS-visible agent: a boxed core agent, its event queue, and the channel whose reference keeps Node alive
//! only while requests are in flight.

use crate::options::agent_options;
use crate::protocol::STATS_FIELDS;
use crate::queue::{Event, EventQueue};
use neon::prelude::*;
use reqwest_dispatcher_core::{Agent, AgentEvent};
use std::cell::RefCell;
use std::sync::Arc;

pub struct NativeAgent {
    /// `None` once the agent was closed: dropping the core agent drops its pool and idle connections.
    pub core: RefCell<Option<Agent>>,
    pub queue: Arc<EventQueue>,
    /// The referenced/unreferenced handle; the queue holds an unreferenced clone for sending.
    keep_alive: RefCell<Channel>,
}

/// Runs when the agent's JavaScript object goes away: collected (only possible with nothing in flight), or its
/// environment torn down — a worker thread terminated with requests in flight. Those requests are aborted and
/// the pool dropped, so that their connections close instead of living on with nobody to read them (undici
/// leaves them open).
impl Finalize for NativeAgent {
    fn finalize<'a, C: Context<'a>>(self, _cx: &mut C) {
        self.queue.abort_all();
        self.core.borrow_mut().take();
    }
}

pub type BoxedAgent = JsBox<NativeAgent>;

/// `agentNew(options, deliver, agentId)`: `options` is the JSON document of `options.rs`, validated and
/// defaulted by the TypeScript layer.
pub fn agent_new(mut cx: FunctionContext) -> JsResult<BoxedAgent> {
    let options = cx.argument::<JsString>(0)?.value(&mut cx);
    let deliver = cx.argument::<JsFunction>(1)?.root(&mut cx);
    // Names this agent in its connection events (the deliver function is shared by all agents).
    let agent_id = cx.argument::<JsNumber>(2)?.value(&mut cx) as u64;

    let core = match agent_options(&options) {
        Ok(options) => options,
        Err(message) => return cx.throw_error(message),
    };

    let mut keep_alive = cx.channel();
    keep_alive.unref(&mut cx);
    let queue = EventQueue::new(keep_alive.clone(), deliver, agent_id);
    let observer = {
        let queue = Arc::clone(&queue);
        Arc::new(move |event: AgentEvent| queue.push(Event::Agent(agent_id, event)))
    };
    let agent = match Agent::with_observer(core, observer) {
        Ok(agent) => agent,
        Err(error) => return cx.throw_error(error.message),
    };
    Ok(cx.boxed(NativeAgent {
        core: RefCell::new(Some(agent)),
        queue,
        keep_alive: RefCell::new(keep_alive),
    }))
}

/// `agentStats(agent)`: `origin, pending, running, connected` ([`STATS_FIELDS`]) for every origin with requests,
/// open connections or known state.
pub fn agent_stats(mut cx: FunctionContext) -> JsResult<JsArray> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let stats = match agent.core.borrow().as_ref() {
        Some(core) => core.stats(),
        None => Vec::new(),
    };
    let fields = STATS_FIELDS.len();
    let out = JsArray::new(&mut cx, stats.len() * fields);
    for (i, s) in stats.iter().enumerate() {
        let at = (i * fields) as u32;
        let origin = cx.string(&s.origin);
        out.set(&mut cx, at, origin)?;
        for (offset, count) in [s.pending, s.running, s.connected].into_iter().enumerate() {
            let count = cx.number(count as f64);
            out.set(&mut cx, at + 1 + offset as u32, count)?;
        }
    }
    Ok(out)
}

/// `agentRetries(agent, origin, method)`: whether the origin's retry policy covers the method (then JS reads a
/// small streamed body up front so that the core can send it again).
pub fn agent_retries(mut cx: FunctionContext) -> JsResult<JsBoolean> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let origin = cx.argument::<JsString>(1)?.value(&mut cx);
    let method = cx.argument::<JsString>(2)?.value(&mut cx);
    let retries = agent
        .core
        .borrow()
        .as_ref()
        .is_some_and(|core| core.retries(&origin, &method));
    Ok(cx.boolean(retries))
}

/// `agentMetrics(agent, json)`: every origin's counters, as Prometheus text or (`json`) as JSON text. A closed
/// agent has none left.
pub fn agent_metrics(mut cx: FunctionContext) -> JsResult<JsString> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let json = cx.argument::<JsBoolean>(1)?.value(&mut cx);
    let text = match agent.core.borrow().as_ref() {
        Some(core) if json => core.metrics_json(),
        Some(core) => core.metrics_text(),
        None if json => "{}".to_string(),
        None => String::new(),
    };
    Ok(cx.string(text))
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

/// `agentDrainDone(agent)`: JS processed a batch; returns whether more events wait (then JS calls `agentDrain`
/// on a later turn of the event loop).
pub fn agent_drain_done(mut cx: FunctionContext) -> JsResult<JsBoolean> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let more = agent.queue.finish_drain();
    Ok(cx.boolean(more))
}

/// `agentDrain(agent)`: delivers the next batch of waiting events.
pub fn agent_drain(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    agent.queue.drain(&mut cx)?;
    Ok(cx.undefined())
}
