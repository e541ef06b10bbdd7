//! `Timestamp`: an instant as nanoseconds since the Unix epoch, the unit stored in the
//! database. The clock that produces it belongs to the caller; this crate never reads it.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant in UTC with nanosecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From nanoseconds since 1970-01-01T00:00:00Z.
    pub const fn from_unix_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub const fn unix_nanos(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-25T19:15:15.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0))
            .expect("every i64 nanosecond count is a valid date")
            .format(&Rfc3339)
            .expect("RFC 3339 formatting of a UTC date cannot fail")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Timestamp {
    /// This instant plus `seconds` (saturating).
    pub fn plus_secs(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1_000_000_000)))
    }

    /// Whole seconds since the epoch (for TOTP steps).
    pub fn unix_secs(self) -> u64 {
        u64::try_from(self.0.div_euclid(1_000_000_000)).unwrap_or(0)
    }
}

/// Timestamps in stored documents are RFC 3339 text, as shown everywhere else.
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)?;
        i64::try_from(parsed.unix_timestamp_nanos())
            .map(Timestamp::from_unix_nanos)
            .map_err(|_| serde::de::Error::custom("timestamp out of range"))
    }
}

/// Parses a duration such as `90s`, `30m`, `8h` or `7d` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration like 30m, 8h or 7d");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number.checked_mul(unit).filter(|&s| s > 0).ok_or_else(bad)
}

/// Where the current time comes from. Code that needs "now" takes a `Clock` (or a
/// `Timestamp` read from one) so that tests can move time instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8h"), Ok(8 * 3600));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400));
        for bad in ["", "h", "8", "8x", "-1h", "0m", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Timestamp::from_unix_nanos(1_500_000_000)
                .plus_secs(2)
                .unix_secs(),
            3
        );
    }

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        let t = Timestamp::from_unix_nanos(1_764_098_115_123_456_789);
        assert_eq!(t.to_rfc3339(), "2025-11-25T19:15:15.123456789Z");
    }
}
