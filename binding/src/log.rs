//! The process-wide debug output function (Steam's `SetDebugOutputFunction`): one JS
//! callback for every endpoint, fed by the driver's log (`netdriver::log`).
//!
//! Lines reach JS through a ThreadsafeFunction in non-blocking mode, so a line logged on
//! the driver thread, or on the JS thread inside a native call, is delivered later on the
//! JS thread and never while protocol state is locked. The function is unreferenced: a
//! debug callback never keeps the process alive.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use netdriver::log::{self, DebugLevel};

type LineFn =
    ThreadsafeFunction<FnArgs<(u32, String)>, (), FnArgs<(u32, String)>, Status, false, true>;

/// Sets the detail level (Steam's `ESteamNetworkingSocketsDebugOutputType` value) and the
/// function that receives `(level, line)`; `null`, or level 0, turns the log off.
#[napi]
pub fn set_debug_output(
    level: u32,
    output: Option<Function<'_, FnArgs<(u32, String)>, ()>>,
) -> Result<()> {
    let Some(f) = output else {
        log::set_debug_output(DebugLevel::None, None);
        return Ok(());
    };
    let tsfn: LineFn = f
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()?;
    let out: log::Output = Arc::new(move |level: DebugLevel, line: &str| {
        tsfn.call(
            (level as u32, line.to_owned()).into(),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
    });
    log::set_debug_output(DebugLevel::from_value(level), Some(out));
    Ok(())
}

/// The detail level in force (0: off).
#[napi]
pub fn debug_level() -> u32 {
    log::debug_level() as u32
}

/// A line from the TS layer, under the same level, rate limit (per `key`) and output as the
/// core's.
#[napi]
pub fn debug_line(level: u32, key: String, text: String) {
    log::log_line(DebugLevel::from_value(level), &key, &text);
}
