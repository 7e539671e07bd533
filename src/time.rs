//! Capture time: the only clock imscan knows.
//!
//! A `Timestamp` is nanoseconds since the Unix epoch, as read from the capture
//! file. Nothing in imscan reads the wall clock to stamp an event.

use std::fmt;

/// Nanoseconds since 1970-01-01T00:00:00Z, from the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;

    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(Self::NANOS_PER_SEC)
                .saturating_add(i64::from(nanos)),
        )
    }

    /// Whole seconds (floor), as IMSpector's `time_t`.
    pub fn secs(self) -> i64 {
        self.0.div_euclid(Self::NANOS_PER_SEC)
    }

    /// Sub-second nanoseconds, always in `0..1_000_000_000`.
    pub fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(Self::NANOS_PER_SEC) as u32
    }

    /// Sub-second microseconds, truncated.
    pub fn subsec_micros(self) -> u32 {
        self.subsec_nanos() / 1000
    }

    pub fn saturating_add_nanos(self, nanos: i64) -> Self {
        Timestamp(self.0.saturating_add(nanos))
    }

    /// Nanoseconds from `earlier` to `self` (negative when `self` is earlier).
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// RFC 3339 UTC with microseconds, e.g. `2008-05-01T12:00:00.123456Z`.
    pub fn rfc3339_micros(self) -> String {
        let (y, m, d, hh, mm, ss) = civil_from_secs(self.secs());
        format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:06}Z",
            self.subsec_micros()
        )
    }

    /// Epoch seconds with 6 decimals, e.g. `1209643200.123456`.
    pub fn epoch_micros_string(self) -> String {
        let secs = self.secs();
        format!("{secs}.{:06}", self.subsec_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339_micros())
    }
}

/// Split Unix seconds into a proleptic Gregorian UTC date and time
/// (Howard Hinnant's days-from-civil algorithm, inverted).
pub fn civil_from_secs(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32, hh as u32, mm as u32, ss as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_micros() {
        let t = Timestamp::from_secs_nanos(1_209_643_200, 123_456_789);
        assert_eq!(t.rfc3339_micros(), "2008-05-01T12:00:00.123456Z");
        assert_eq!(t.epoch_micros_string(), "1209643200.123456");
    }

    #[test]
    fn handles_epoch_and_negative() {
        assert_eq!(Timestamp(0).rfc3339_micros(), "1970-01-01T00:00:00.000000Z");
        let t = Timestamp(-1);
        assert_eq!(t.secs(), -1);
        assert_eq!(t.subsec_nanos(), 999_999_999);
        assert_eq!(t.rfc3339_micros(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn leap_day() {
        // 2024-02-29T00:00:00Z
        assert_eq!(
            Timestamp::from_secs_nanos(1_709_164_800, 0).rfc3339_micros(),
            "2024-02-29T00:00:00.000000Z"
        );
    }
}
