//! Conversions between JavaScript values and the core's types.
//!
//! Header bytes travel as latin1 strings, as undici treats them: every byte maps to the code point of the same
//! value, so any byte sequence survives the round trip.

use http::HeaderMap;
use neon::prelude::*;
use std::time::Duration;

/// Bytes to a string, one char per byte (latin1).
pub fn latin1_to_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => s.to_owned(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// A string to bytes, one byte per char (latin1); chars above U+00FF keep their low byte, as Node's latin1
/// encoding does when undici writes headers.
pub fn string_to_latin1(s: String) -> Vec<u8> {
    if s.is_ascii() {
        s.into_bytes()
    } else {
        s.chars().map(|c| c as u32 as u8).collect()
    }
}

/// Appends `name, value, name, value, …` for every header to a JS array, starting at `start`.
pub fn push_headers<'a, C: Context<'a>>(
    cx: &mut C,
    array: Handle<'a, JsArray>,
    start: u32,
    headers: &HeaderMap,
) -> NeonResult<u32> {
    let mut at = start;
    for (name, value) in headers {
        let name = cx.string(name.as_str());
        array.set(cx, at, name)?;
        let value = cx.string(latin1_to_string(value.as_bytes()));
        array.set(cx, at + 1, value)?;
        at += 2;
    }
    Ok(at)
}

/// A timeout argument: negative = not given (use the agent's), 0 = disabled, otherwise milliseconds.
pub fn timeout_override(ms: f64) -> Option<Option<Duration>> {
    if ms < 0.0 || ms.is_nan() {
        None
    } else if ms == 0.0 {
        Some(None)
    } else {
        Some(Some(Duration::from_secs_f64(ms / 1000.0)))
    }
}

/// An agent-level timeout: 0 or less disables it.
pub fn timeout_option(ms: f64) -> Option<Duration> {
    (ms > 0.0 && ms.is_finite()).then(|| Duration::from_secs_f64(ms / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(string_to_latin1(latin1_to_string(&bytes)), bytes);
    }

    #[test]
    fn negative_timeout_means_agent_default() {
        assert_eq!(timeout_override(-1.0), None);
        assert_eq!(timeout_override(0.0), Some(None));
        assert_eq!(
            timeout_override(1500.0),
            Some(Some(Duration::from_millis(1500)))
        );
    }
}
