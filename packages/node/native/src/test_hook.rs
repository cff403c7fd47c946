//! The panic-containment test hook: arms the next dispatched request to panic at a chosen point, in the bridge
//! or in the core, so that a test can show that Node survives and only that request fails.
//!
//! It is unreachable unless the process asked for it before the addon loaded: `testArmPanic` is exported only
//! when `REQWEST_DISPATCHER_TEST_HOOKS` (the switch of every test hook of the bridge, see `encode.rs`) is in the
//! environment at load time, and nothing else arms it —
//! no request data, header or server response can (the point is taken from an atomic that only that function
//! sets). An environment variable read once at load, rather than a cargo feature, lets the tests use the very
//! addon that ships instead of a second build.

use neon::prelude::*;
use reqwest_dispatcher_core::PanicPoint;
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that exports `testArmPanic` when set as the addon loads.
const ENABLE: &str = "REQWEST_DISPATCHER_TEST_HOOKS";

/// Where the next request panics (0: nowhere).
static ARMED: AtomicU8 = AtomicU8::new(0);

/// Where a request armed by the hook panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Armed {
    /// In `dispatchBatch`, while the bridge reads the request.
    Dispatch,
    /// In the core, at one of its points.
    Core(PanicPoint),
}

/// Whether the process enabled the hook (read when the addon loads).
pub fn enabled() -> bool {
    std::env::var_os(ENABLE).is_some()
}

/// Takes the armed point, if any: it serves one request.
pub fn take() -> Option<Armed> {
    match ARMED.swap(0, Ordering::SeqCst) {
        1 => Some(Armed::Dispatch),
        2 => Some(Armed::Core(PanicPoint::BeforeSend)),
        3 => Some(Armed::Core(PanicPoint::AtHead)),
        4 => Some(Armed::Core(PanicPoint::InBody)),
        _ => None,
    }
}

/// `testArmPanic(point)`: the next request dispatched (by any agent) panics at `point`: `dispatch`,
/// `beforeSend`, `atHead` or `inBody`.
pub fn arm(mut cx: FunctionContext) -> JsResult<JsUndefined> {
    let point = cx.argument::<JsString>(0)?.value(&mut cx);
    let code = match point.as_str() {
        "dispatch" => 1,
        "beforeSend" => 2,
        "atHead" => 3,
        "inBody" => 4,
        other => return cx.throw_error(format!("unknown panic point: {other}")),
    };
    ARMED.store(code, Ordering::SeqCst);
    Ok(cx.undefined())
}
