//! The Neon bridge of reqwest-dispatcher: exported functions, JS↔Rust marshaling and event delivery.
//!
//! No HTTP logic lives here. JavaScript calls in once per tick with the requests started in it
//! (`dispatch.rs`); the core reports back through each agent's [`queue::EventQueue`], which wakes the JS thread
//! once per batch of events, not once per event, and has them encoded (`encode.rs`). What crosses the boundary,
//! and in which layout, is defined once in `protocol.rs` and exported to JavaScript as `protocol`; agent options
//! cross as one JSON document (`options.rs`); string and header conversions are in `marshal.rs`.

mod agent;
mod dispatch;
mod encode;
mod marshal;
mod options;
mod protocol;
mod queue;
mod test_hook;

/// What the crate's property tests share.
#[cfg(test)]
mod proptest_support {
    /// 512 cases each, and no failure files written into the source tree.
    pub fn config() -> proptest::prelude::ProptestConfig {
        proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        }
    }
}

use neon::prelude::*;

/// mimalloc for every Rust allocation of the addon: requests allocate many small, short-lived objects across
/// tokio threads, where glibc's malloc showed up as ~15% of client CPU in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[neon::main]
fn main(mut cx: ModuleContext) -> NeonResult<()> {
    let protocol = protocol::describe(&mut cx)?;
    cx.export_value("protocol", protocol)?;
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
    cx.export_function("requestsProceed", dispatch::requests_proceed)?;
    cx.export_function("requestPause", dispatch::request_pause)?;
    cx.export_function("requestResume", dispatch::request_resume)?;
    cx.export_function("requestPushBody", dispatch::request_push_body)?;
    cx.export_function("upgradeWrite", dispatch::upgrade_write)?;
    if test_hook::enabled() {
        cx.export_function("testArmPanic", test_hook::arm)?;
    }
    Ok(())
}
