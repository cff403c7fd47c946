//! The Neon bridge of reqwest-dispatcher: exported functions, JS↔Rust marshaling and event delivery.
//!
//! No HTTP logic lives here. JavaScript calls in once per request ([`dispatch::dispatch`]); the core reports
//! back through [`events::EventQueue`], which wakes the JS thread once per batch of events, not once per event.

mod agent;
mod dispatch;
mod events;
mod marshal;

use neon::prelude::*;

/// mimalloc for every Rust allocation of the addon: requests allocate many small, short-lived objects across
/// tokio threads, where glibc's malloc showed up as ~15% of client CPU in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[neon::main]
fn main(mut cx: ModuleContext) -> NeonResult<()> {
    cx.export_function("agentNew", agent::agent_new)?;
    cx.export_function("agentSetActive", agent::agent_set_active)?;
    cx.export_function("agentStats", agent::agent_stats)?;
    cx.export_function("agentMetrics", agent::agent_metrics)?;
    cx.export_function("agentRetries", agent::agent_retries)?;
    cx.export_function("agentClose", agent::agent_close)?;
    cx.export_function("agentDrainDone", agent::agent_drain_done)?;
    cx.export_function("agentDrain", agent::agent_drain)?;
    cx.export_function("setWorkerThreads", agent::set_worker_threads)?;
    cx.export_function("dispatchBatch", dispatch::dispatch_batch)?;
    cx.export_function("requestAbort", dispatch::request_abort)?;
    cx.export_function("requestPause", dispatch::request_pause)?;
    cx.export_function("requestResume", dispatch::request_resume)?;
    cx.export_function("requestPushBody", dispatch::request_push_body)?;
    Ok(())
}
