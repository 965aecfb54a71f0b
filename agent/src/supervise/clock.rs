//! Wall-clock times as the Kubernetes API writes them (RFC 3339, nanoseconds when present).
//!
//! Supervision decisions take `SystemTime` values from the caller so tests can use a fake
//! clock; this module converts them to and from `k8s_openapi`'s `Time` and text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Converts a `SystemTime` to a jiff `Timestamp` (saturating at the representable range).
pub fn to_timestamp(t: SystemTime) -> Timestamp {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos() as i32,
        ),
        // jiff keeps seconds and nanoseconds with the same sign.
        Err(e) => {
            let d = e.duration();
            (
                -i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                -(d.subsec_nanos() as i32),
            )
        }
    };
    Timestamp::new(secs, nanos).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Converts a jiff `Timestamp` back to a `SystemTime`.
pub fn from_timestamp(ts: Timestamp) -> SystemTime {
    let secs = ts.as_second();
    let nanos = ts.subsec_nanosecond();
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::new(secs.unsigned_abs(), nanos.unsigned_abs())
    }
}

/// The API's `Time` for a `SystemTime`. The API's `Time` has second precision on the wire.
pub fn api_time(t: SystemTime) -> Time {
    Time(to_timestamp(t))
}

/// Formats as RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `time.RFC3339Nano`).
pub fn rfc3339_nano(t: SystemTime) -> String {
    to_timestamp(t).to_string()
}

/// Parses an RFC 3339 time (any precision, `Z` or an offset).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    text.parse::<Timestamp>().ok().map(from_timestamp)
}

/// serde helpers that store a `SystemTime` as RFC 3339 text (readable `state.json`).
pub mod serde_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes as RFC 3339 text.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_nano(*t))
    }

    /// Deserializes RFC 3339 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text).ok_or_else(|| D::Error::custom(format!("bad time {text:?}")))
    }

    /// The same for `Option<SystemTime>` (use with `#[serde(default, with = ...)]`).
    pub mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        /// Serializes `None` as null and `Some` as RFC 3339 text.
        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::rfc3339_nano(*t)),
                None => s.serialize_none(),
            }
        }

        /// Deserializes null or RFC 3339 text.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(text) => super::super::parse_rfc3339(&text)
                    .map(Some)
                    .ok_or_else(|| D::Error::custom(format!("bad time {text:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339_nano() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.123456Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339_nano(whole), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn round_trips_through_text_and_timestamp() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(parse_rfc3339(&rfc3339_nano(t)), Some(t));
        assert_eq!(from_timestamp(to_timestamp(t)), t);
        let before = UNIX_EPOCH - Duration::new(10, 250_000_000);
        assert_eq!(from_timestamp(to_timestamp(before)), before);
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
