//! The JS-visible agent: a boxed core agent, its event queue, and the channel whose reference keeps Node alive
//! only while requests are in flight.

use crate::events::{Event, EventQueue};
use crate::marshal::timeout_option;
use neon::prelude::*;
use reqwest_dispatcher_core::{
    Agent, AgentEvent, AgentOptions, Policies, ProxyOptions, TlsOptions,
};
use std::cell::RefCell;
use std::net::IpAddr;
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

fn string_option(
    cx: &mut FunctionContext,
    options: Handle<JsObject>,
    key: &str,
) -> NeonResult<Option<String>> {
    let value: Handle<JsValue> = options.get_value(cx, key)?;
    Ok(value.downcast::<JsString, _>(cx).ok().map(|s| s.value(cx)))
}

fn bool_option(
    cx: &mut FunctionContext,
    options: Handle<JsObject>,
    key: &str,
) -> NeonResult<Option<bool>> {
    let value: Handle<JsValue> = options.get_value(cx, key)?;
    Ok(value.downcast::<JsBoolean, _>(cx).ok().map(|b| b.value(cx)))
}

fn object_option<'a>(
    cx: &mut FunctionContext<'a>,
    options: Handle<JsObject>,
    key: &str,
) -> NeonResult<Option<Handle<'a, JsObject>>> {
    let value: Handle<JsValue> = options.get_value(cx, key)?;
    if value.is_a::<JsNull, _>(cx) || value.is_a::<JsUndefined, _>(cx) {
        return Ok(None);
    }
    Ok(value.downcast::<JsObject, _>(cx).ok())
}

/// `{ ca, extraCa, cert, key, rejectUnauthorized, servername }`, PEM strings (see src/tls-options.ts).
fn tls_options(cx: &mut FunctionContext, tls: Handle<JsObject>) -> NeonResult<TlsOptions> {
    Ok(TlsOptions {
        ca: string_option(cx, tls, "ca")?.map(String::into_bytes),
        extra_ca: string_option(cx, tls, "extraCa")?.map(String::into_bytes),
        cert: string_option(cx, tls, "cert")?.map(String::into_bytes),
        key: string_option(cx, tls, "key")?.map(String::into_bytes),
        reject_unauthorized: bool_option(cx, tls, "rejectUnauthorized")?.unwrap_or(true),
        servername: string_option(cx, tls, "servername")?,
    })
}

/// `{ http, https, noProxy, headers: [name, value, …], tls }` (see src/proxy-agent.ts).
fn proxy_options(cx: &mut FunctionContext, proxy: Handle<JsObject>) -> NeonResult<ProxyOptions> {
    let mut headers = Vec::new();
    if let Some(list) = object_option(cx, proxy, "headers")? {
        let list = list.downcast_or_throw::<JsArray, _>(cx)?;
        let len = list.len(cx);
        let mut i = 0;
        while i + 1 < len {
            let name = list.get::<JsString, _, _>(cx, i)?.value(cx);
            let value = list.get::<JsString, _, _>(cx, i + 1)?.value(cx);
            headers.push((name, value));
            i += 2;
        }
    }
    let tls = match object_option(cx, proxy, "tls")? {
        Some(tls) => Some(tls_options(cx, tls)?),
        None => None,
    };
    Ok(ProxyOptions {
        http: string_option(cx, proxy, "http")?,
        https: string_option(cx, proxy, "https")?,
        no_proxy: string_option(cx, proxy, "noProxy")?,
        headers,
        tls,
    })
}

/// Milliseconds as a duration: negative or NaN is zero, too large is the longest duration (never a panic).
fn millis(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).unwrap_or(Duration::MAX)
}

/// `agentNew(options, deliver, agentId)`: options were validated and defaulted by the TypeScript layer.
pub fn agent_new(mut cx: FunctionContext) -> JsResult<BoxedAgent> {
    let options = cx.argument::<JsObject>(0)?;
    let deliver = cx.argument::<JsFunction>(1)?.root(&mut cx);
    // Names this agent in its connection events (the deliver function is shared by all agents).
    let agent_id = cx.argument::<JsNumber>(2)?.value(&mut cx) as u64;

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
    if let Some(ms) = number_option(&mut cx, options, "keepAliveMaxTimeout")? {
        core.keep_alive_max_timeout = millis(ms);
    }
    if let Some(ms) = number_option(&mut cx, options, "keepAliveTimeoutThreshold")? {
        core.keep_alive_timeout_threshold = millis(ms);
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
    core.h2c = bool_option(&mut cx, options, "h2c")?.unwrap_or(false);
    if let Some(connections) = number_option(&mut cx, options, "connections")? {
        core.connections = (connections >= 1.0).then_some(connections as usize);
    }
    if let Some(address) = string_option(&mut cx, options, "localAddress")? {
        match address.parse::<IpAddr>() {
            Ok(ip) => core.local_address = Some(ip),
            Err(_) => return cx.throw_error(format!("invalid localAddress: {address}")),
        }
    }
    if let Some(tls) = object_option(&mut cx, options, "tls")? {
        core.tls = tls_options(&mut cx, tls)?;
    }
    if let Some(proxy) = object_option(&mut cx, options, "proxy")? {
        core.proxy = Some(proxy_options(&mut cx, proxy)?);
    }
    if let Some(policies) = string_option(&mut cx, options, "policies")? {
        core.policies = match Policies::from_json(&policies) {
            Ok(policies) => policies,
            Err(error) => return cx.throw_error(error.message),
        };
    }

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

/// `agentStats(agent)`: `[origin, pending, running, …]` for every origin with requests or known state.
pub fn agent_stats(mut cx: FunctionContext) -> JsResult<JsArray> {
    let agent = cx.argument::<BoxedAgent>(0)?;
    let stats = match agent.core.borrow().as_ref() {
        Some(core) => core.stats(),
        None => Vec::new(),
    };
    let out = JsArray::new(&mut cx, stats.len() * 3);
    for (i, s) in stats.iter().enumerate() {
        let at = (i * 3) as u32;
        let origin = cx.string(&s.origin);
        out.set(&mut cx, at, origin)?;
        let pending = cx.number(s.pending as f64);
        out.set(&mut cx, at + 1, pending)?;
        let running = cx.number(s.running as f64);
        out.set(&mut cx, at + 2, running)?;
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
