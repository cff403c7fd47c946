//! Conversions between JavaScript values and the core's types.
//!
//! Header bytes travel as latin1 strings, as undici treats them: every byte maps to the code point of the same
//! value, so any byte sequence survives the round trip.

use crate::protocol::FIELD_SEPARATOR;
use reqwest_dispatcher_core::RawHeaders;
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

/// `[first\0]name\0value\0…` as one latin1 string: one JS string per head instead of two per header.
/// Names keep the sender's case.
pub fn join_fields(first: Option<&[u8]>, headers: &RawHeaders) -> String {
    join_fields_after(String::new(), first, headers)
}

/// [`join_fields`] appended to `out` (which, when not empty, already ends with a separator).
pub fn join_fields_after(mut out: String, first: Option<&[u8]>, headers: &RawHeaders) -> String {
    if let Some(first) = first {
        push_latin1(&mut out, first);
    }
    let mut started = first.is_some();
    for (name, value) in headers.iter() {
        if started {
            out.push(FIELD_SEPARATOR);
        }
        started = true;
        push_latin1(&mut out, name);
        out.push(FIELD_SEPARATOR);
        push_latin1(&mut out, value);
    }
    out
}

/// Appends bytes to a string, one char per byte (latin1).
fn push_latin1(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => out.push_str(s),
        _ => out.extend(bytes.iter().map(|&b| char::from(b))),
    }
}

/// Splits `name\0value\0…` (latin1) into header pairs.
pub fn split_fields(joined: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut parts = joined.split(FIELD_SEPARATOR);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        out.push((name.to_owned(), string_to_latin1(value.to_owned())));
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
    fn latin1_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut text = String::new();
        push_latin1(&mut text, &bytes);
        assert_eq!(string_to_latin1(text), bytes);
    }

    #[test]
    fn fields_join_and_split_back() {
        let mut headers = RawHeaders::new();
        headers.push("Set-Cookie", "a=1");
        headers.push("set-cookie", "b=2");
        headers.push("x-latin1", &b"caf\xe9"[..]);
        let joined = join_fields(Some(b"OK"), &headers);
        let (status, rest) = joined.split_once(FIELD_SEPARATOR).unwrap();
        assert_eq!(status, "OK");
        let pairs = split_fields(rest);
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], ("Set-Cookie".to_string(), b"a=1".to_vec()));
        assert_eq!(pairs[2], ("x-latin1".to_string(), b"caf\xe9".to_vec()));
        assert_eq!(join_fields(None, &RawHeaders::new()), "");
        assert_eq!(join_fields(Some(b""), &RawHeaders::new()), "");
    }

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

        fn config() -> ProptestConfig {
            ProptestConfig {
                cases: 512,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]

            #[test]
            fn every_byte_sequence_survives_latin1(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let mut text = String::new();
                push_latin1(&mut text, &bytes);
                prop_assert_eq!(string_to_latin1(text), bytes);
            }

            #[test]
            fn any_field_string_splits_without_panicking(text in "\\PC{0,100}") {
                let _ = split_fields(&text);
            }

            #[test]
            fn header_fields_join_and_split_back(
                pairs in proptest::collection::vec(("[a-zA-Z-]{1,12}", proptest::collection::vec(1u8..=255, 0..20)), 0..8),
            ) {
                let mut headers = RawHeaders::new();
                for (name, value) in &pairs {
                    headers.push(name.clone(), value.clone());
                }
                let joined = join_fields(None, &headers);
                let expected: Vec<(String, Vec<u8>)> = pairs.clone();
                prop_assert_eq!(split_fields(&joined), expected);
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
