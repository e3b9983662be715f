//! Prometheus durations (`1h30m`, `1d`, `0s`) and API timestamps (Unix seconds or RFC 3339),
//! parsed and printed exactly as Prometheus does so configs and API calls round-trip.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration with millisecond precision, written the Prometheus way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was refused; the texts are Prometheus's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The empty string.
    #[error("empty duration string")]
    Empty,
    /// Bad syntax or units out of order.
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// A unit that Prometheus does not know.
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// More than about 292 years.
    #[error("duration out of range")]
    OutOfRange,
}

const MS: u64 = 1_000_000;
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000 * MS),
    ("w", 7 * 24 * 3600 * 1000 * MS),
    ("d", 24 * 3600 * 1000 * MS),
    ("h", 3600 * 1000 * MS),
    ("m", 60 * 1000 * MS),
    ("s", 1000 * MS),
    ("ms", MS),
];

impl Duration {
    /// Wraps a std duration.
    pub fn new(d: std::time::Duration) -> Self {
        Duration(d)
    }

    /// From whole seconds.
    pub fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// From milliseconds.
    pub fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The std duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }

    /// Whole milliseconds.
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses as Prometheus's `model.ParseDuration`: units `y w d h m s ms`, each at most once,
    /// largest first; `0` alone is allowed.
    pub fn parse(s: &str) -> Result<Self, DurationError> {
        match s {
            "0" => return Ok(Duration::default()),
            "" => return Err(DurationError::Empty),
            _ => {}
        }
        let invalid = || DurationError::Invalid(s.to_string());
        let mut rest = s;
        let mut total: u64 = 0;
        let mut last_pos = 0usize;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid());
            }
            let v: u64 = rest[..digits].parse().map_err(|_| invalid())?;
            rest = &rest[digits..];
            let ulen = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
            if ulen == 0 {
                return Err(invalid());
            }
            let unit = &rest[..ulen];
            rest = &rest[ulen..];
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_string(),
                    input: s.to_string(),
                });
            };
            if pos < last_pos {
                return Err(invalid());
            }
            last_pos = pos + 1;
            let mult = UNITS[pos].1;
            if v > (1u64 << 63) / mult {
                return Err(DurationError::OutOfRange);
            }
            total = total
                .checked_add(v * mult)
                .ok_or(DurationError::OutOfRange)?;
            if total > (1u64 << 63) - 1 {
                return Err(DurationError::OutOfRange);
            }
        }
        Ok(Duration(std::time::Duration::from_nanos(total)))
    }
}

impl fmt::Display for Duration {
    /// Prints as Prometheus's `model.Duration.String`: years and weeks only when exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (i, (unit, mult_ns)) in UNITS.iter().enumerate() {
            let mult = mult_ns / MS;
            let exact_only = i < 2;
            if exact_only && !ms.is_multiple_of(mult) {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The smallest timestamp the API accepts (Prometheus's `MinTime`), in milliseconds.
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
/// The largest timestamp the API accepts (Prometheus's `MaxTime`), in milliseconds.
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// Parses an API timestamp as Prometheus does: Unix seconds (float, rounded to milliseconds)
/// or RFC 3339; returns milliseconds. The error text is Prometheus's.
pub fn parse_api_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            let secs = f.trunc();
            let frac = ((f - secs) * 1000.0).round();
            let ms = secs * 1000.0 + frac;
            if ms >= MIN_TIME_MS as f64 && ms <= MAX_TIME_MS as f64 {
                return Ok(ms as i64);
            }
            return Ok(if ms < 0.0 { MIN_TIME_MS } else { MAX_TIME_MS });
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s {
        "-292273086-05-16T16:47:06Z" => Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => Ok(MAX_TIME_MS),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// Formats milliseconds since the epoch as RFC 3339 with the precision Go's `time.Time`
/// JSON encoding uses (nanoseconds, trailing zeros trimmed, `Z` for UTC).
pub fn format_rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => {
            let s = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            // Go's RFC3339Nano layout drops trailing zeros of the fraction, and the dot with them.
            let body = s
                .trim_end_matches('Z')
                .trim_end_matches('0')
                .trim_end_matches('.');
            format!("{body}Z")
        }
        None => String::from("0001-01-01T00:00:00Z"),
    }
}

/// A byte size as Prometheus writes `body_size_limit` (`10MB`, `512KiB`; base 2, `0` = none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `<int><unit>` with units B, KB/KiB, MB/MiB, GB/GiB, TB/TiB, PB/PiB, EB/EiB.
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = s[..digits]
            .parse()
            .map_err(|_| format!("invalid byte size {s:?}"))?;
        let unit = &s[digits..];
        let shift = match unit {
            "" | "B" if n == 0 || !unit.is_empty() => 0,
            "KB" | "KiB" => 10,
            "MB" | "MiB" => 20,
            "GB" | "GiB" => 30,
            "TB" | "TiB" => 40,
            "PB" | "PiB" => 50,
            "EB" | "EiB" => 60,
            _ => {
                return Err(format!(
                    "invalid byte size {s:?}: units are B, KB, MB, GB, TB, PB, EB"
                ))
            }
        };
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("byte size {s:?} out of range"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ByteSize::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let units = [
            (60, "EiB"),
            (50, "PiB"),
            (40, "TiB"),
            (30, "GiB"),
            (20, "MiB"),
            (10, "KiB"),
        ];
        for (shift, u) in units {
            if self.0 != 0 && self.0.is_multiple_of(1u64 << shift) {
                return s.serialize_str(&format!("{}{u}", self.0 >> shift));
            }
        }
        s.serialize_str(&format!("{}B", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_prometheus() {
        let ok = [
            ("0", 0),
            ("0s", 0),
            ("1ms", 1),
            ("15s", 15_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            (
                "1y2w3d4h5m6s7ms",
                31_536_000_000
                    + 2 * 604_800_000
                    + 3 * 86_400_000
                    + 4 * 3_600_000
                    + 5 * 60_000
                    + 6_000
                    + 7,
            ),
        ];
        for (s, ms) in ok {
            assert_eq!(Duration::parse(s).map(|d| d.as_millis()), Ok(ms), "{s}");
        }
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "1m1h",
            "1s1s",
            "1x",
            "1 s",
            "1sm",
            "106751991167301d",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad} must fail");
        }
        assert_eq!(
            Duration::parse("1x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                input: "1x".into()
            })
        );
    }

    #[test]
    fn prints_like_prometheus() {
        for (ms, s) in [
            (0, "0s"),
            (1500, "1s500ms"),
            (5_400_000, "1h30m"),
            (90 * 86_400_000, "90d"),
            (1_209_600_000, "2w"),
            (31_536_000_000, "1y"),
            (8 * 86_400_000, "8d"),
        ] {
            assert_eq!(Duration::from_millis(ms).to_string(), s);
        }
    }

    #[test]
    fn api_times() {
        assert_eq!(parse_api_time("1.5"), Ok(1500));
        assert_eq!(parse_api_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_api_time("2015-06-04T19:15:17.5Z"),
            Ok(1_433_445_317_500)
        );
        assert_eq!(
            parse_api_time("2015-06-04T21:15:17+02:00"),
            Ok(1_433_445_317_000)
        );
        assert!(parse_api_time("foo")
            .unwrap_err()
            .contains("cannot parse \"foo\" to a valid timestamp"));
        assert_eq!(format_rfc3339(1_433_445_317_500), "2015-06-04T19:15:17.5Z");
    }
}
