//! Conversions between JavaScript values and the core's types.
//!
//! Header bytes travel as latin1 strings, as undici treats them: every byte maps to the code point of the same
//! value, so any byte sequence survives the round trip.

use crate::protocol::FIELD_SEPARATOR;
use bytes::Bytes;
use std::time::Duration;

/// A string to bytes, one byte per char (latin1); chars above U+00FF keep their low byte, as Node's latin1
/// encoding does when undici writes headers.
pub fn string_to_latin1(s: String) -> Vec<u8> {
    if s.is_ascii() {
        s.into_bytes()
    } else {
        s.chars().map(|c| c as u32 as u8).collect()
    }
}

/// Latin1 bytes as a string, one char per byte.
pub fn latin1_to_string(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => s.to_owned(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Splits latin1 `name\0value\0…` into header pairs.
pub fn split_fields(joined: &[u8]) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    let mut parts = joined.split(|&b| b == FIELD_SEPARATOR as u8);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        out.push((latin1_to_string(name), Bytes::copy_from_slice(value)));
    }
    out
}

/// Longest wait handed to the core, in ms (about 31 years; the TypeScript layer clamps to the same bound).
const LONGEST_WAIT_MS: f64 = 1e12;

/// `ms` milliseconds as a `Duration`: zero for NaN and negative values, at most [`LONGEST_WAIT_MS`], so that no
/// number (1e300, infinity) can make the conversion, or clock arithmetic with the result, panic.
pub fn millis(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(ms.min(LONGEST_WAIT_MS) / 1000.0)
    }
}

/// Consecutive pieces of a latin1 text whose lengths are given one after the other (`dispatchBatch`'s text).
pub struct Latin1Parts<'t> {
    text: &'t [u8],
}

impl<'t> Latin1Parts<'t> {
    pub fn new(text: &'t [u8]) -> Self {
        Latin1Parts { text }
    }

    /// The next `length` bytes; `None` when fewer are left (or `length` is not a length).
    pub fn next(&mut self, length: f64) -> Option<&'t [u8]> {
        // NaN compares false both ways: it is no length either.
        if length.is_nan() || length < 0.0 || length > self.text.len() as f64 {
            return None;
        }
        let (part, rest) = self.text.split_at(length as usize);
        self.text = rest;
        Some(part)
    }
}

/// A timeout argument: negative = not given (use the agent's), 0 = disabled, otherwise milliseconds.
pub fn timeout_override(ms: f64) -> Option<Option<Duration>> {
    if ms < 0.0 || ms.is_nan() {
        None
    } else if ms == 0.0 {
        Some(None)
    } else {
        Some(Some(millis(ms)))
    }
}

/// An agent-level timeout: 0 or less (or NaN) disables it.
pub fn timeout_option(ms: f64) -> Option<Duration> {
    (ms > 0.0).then(|| millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_number_makes_a_duration_panic() {
        for ms in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            1e23,
            -1.0,
            0.0,
            5e-324,
            f64::MAX,
        ] {
            let _ = millis(ms);
            let _ = timeout_override(ms);
            let _ = timeout_option(ms);
        }
        assert_eq!(millis(1e300), millis(LONGEST_WAIT_MS));
        assert_eq!(millis(f64::NAN), Duration::ZERO);
        assert_eq!(timeout_option(f64::INFINITY), Some(millis(LONGEST_WAIT_MS)));
    }

    #[test]
    fn latin1_text_is_cut_at_the_lengths_given() {
        let text = b"GEThttp://h/caf\xe9a\0b";
        let mut parts = Latin1Parts::new(text);
        assert_eq!(parts.next(3.0), Some(&b"GET"[..]));
        let url = parts.next(13.0).unwrap();
        assert_eq!(latin1_to_string(url), "http://h/caf\u{e9}");
        assert_eq!(
            split_fields(parts.next(3.0).unwrap()),
            vec![("a".to_string(), Bytes::from("b"))]
        );
        assert_eq!(parts.next(0.0), Some(&b""[..]));
        assert_eq!(parts.next(1.0), None);
        assert_eq!(Latin1Parts::new(b"ab").next(-1.0), None);
        assert_eq!(Latin1Parts::new(b"ab").next(f64::NAN), None);
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

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::proptest_support::config())]

            #[test]
            fn any_field_string_splits_without_panicking(text in "\\PC{0,100}") {
                let _ = split_fields(text.as_bytes());
            }

            #[test]
            fn any_lengths_cut_a_text_without_panicking(
                text in proptest::collection::vec(any::<u8>(), 0..64),
                lengths in proptest::collection::vec(any::<f64>(), 0..8),
            ) {
                let mut parts = Latin1Parts::new(&text);
                let mut taken = 0;
                for length in lengths {
                    taken += parts.next(length).map_or(0, <[u8]>::len);
                }
                prop_assert!(taken <= text.len());
            }

            #[test]
            fn no_number_of_milliseconds_panics_or_exceeds_the_longest_wait(ms in any::<f64>()) {
                let longest = millis(LONGEST_WAIT_MS);
                prop_assert!(millis(ms) <= longest);
                prop_assert!(timeout_option(ms).is_none_or(|d| d <= longest));
                prop_assert!(timeout_override(ms).flatten().is_none_or(|d| d <= longest));
            }
        }
    }
}
