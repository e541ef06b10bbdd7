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
    fn formats_rfc3339_with_nanoseconds() {
        let t = Timestamp::from_unix_nanos(1_764_098_115_123_456_789);
        assert_eq!(t.to_rfc3339(), "2025-11-25T19:15:15.123456789Z");
    }
}
