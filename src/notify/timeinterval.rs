//! Alertmanager's time intervals (`time_intervals` / `mute_time_intervals`): `times`,
//! `weekdays`, `days_of_month` (negative counts from the month's end), `months`, `years` and
//! `location`, parsed and checked as Alertmanager does, and evaluated at an instant.

use chrono::{Datelike, TimeZone, Timelike};
use serde_json::Value;

/// One entry of a named interval; `None` fields match anything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeInterval {
    times: Option<Vec<(u32, u32)>>,
    weekdays: Option<Vec<(u32, u32)>>,
    days_of_month: Option<Vec<(i32, i32)>>,
    months: Option<Vec<(u32, u32)>>,
    years: Option<Vec<(i32, i32)>>,
    location: Option<chrono_tz::Tz>,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn list(v: &Value, key: &str) -> Result<Option<Vec<String>>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.trim().to_lowercase(),
                    other => other.to_string(),
                })
                .collect(),
        )),
        Some(other) => Err(format!("{key}: expected a list, got {other}")),
    }
}

fn ranges<T: Copy + PartialOrd>(
    items: Vec<String>,
    one: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(T, T)>, String> {
    items
        .iter()
        .map(|s| {
            // Negative days (`-3:-1`) start with '-', so split on ':' only.
            let (a, b) = match s.split_once(':') {
                Some((a, b)) => (one(a)?, one(b)?),
                None => {
                    let x = one(s)?;
                    (x, x)
                }
            };
            if b < a {
                return Err(format!("range {s:?}: start is after end"));
            }
            Ok((a, b))
        })
        .collect()
}

fn hhmm(s: &str) -> Result<u32, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("couldn't parse timestamp {s}, invalid format"))?;
    let (h, m): (u32, u32) = (
        h.parse()
            .map_err(|_| format!("couldn't parse timestamp {s}, invalid format"))?,
        m.parse()
            .map_err(|_| format!("couldn't parse timestamp {s}, invalid format"))?,
    );
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("timestamp {s} out of range"));
    }
    Ok(h * 60 + m)
}

impl TimeInterval {
    /// Parses one entry of a named interval's `time_intervals` list.
    pub fn parse(v: &Value) -> Result<TimeInterval, String> {
        let mut ti = TimeInterval::default();
        if let Some(Value::Array(times)) = v.get("times") {
            let mut out = Vec::new();
            for t in times {
                let s = t.get("start_time").and_then(Value::as_str).unwrap_or("");
                let e = t.get("end_time").and_then(Value::as_str).unwrap_or("");
                let (s, e) = (hhmm(s)?, hhmm(e)?);
                if e <= s {
                    return Err("start time cannot be equal or greater than end time".into());
                }
                out.push((s, e));
            }
            ti.times = Some(out);
        }
        if let Some(items) = list(v, "weekdays")? {
            ti.weekdays = Some(ranges(items, |s| {
                WEEKDAYS
                    .iter()
                    .position(|d| *d == s)
                    .map(|i| i as u32)
                    .ok_or_else(|| format!("{s:?} is not a valid weekday"))
            })?);
        }
        if let Some(items) = list(v, "days_of_month")? {
            let parsed = items
                .iter()
                .map(|s| {
                    let (a, b) = match s.split_once(':') {
                        Some((a, b)) => (a, b),
                        None => (s.as_str(), s.as_str()),
                    };
                    let p = |x: &str| -> Result<i32, String> {
                        let n: i32 = x
                            .parse()
                            .map_err(|_| format!("invalid day of month {x:?}"))?;
                        if n == 0 || !(-31..=31).contains(&n) {
                            return Err(format!(
                                "{n} is not a valid day of the month: out of range"
                            ));
                        }
                        Ok(n)
                    };
                    Ok((p(a)?, p(b)?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            ti.days_of_month = Some(parsed);
        }
        if let Some(items) = list(v, "months")? {
            ti.months = Some(ranges(items, |s| {
                MONTHS
                    .iter()
                    .position(|m| *m == s)
                    .map(|i| i as u32 + 1)
                    .or_else(|| s.parse::<u32>().ok().filter(|n| (1..=12).contains(n)))
                    .ok_or_else(|| format!("{s:?} is not a valid month"))
            })?);
        }
        if let Some(items) = list(v, "years")? {
            ti.years = Some(ranges(items, |s| {
                s.parse::<i32>()
                    .map_err(|_| format!("{s:?} is not a valid year"))
            })?);
        }
        if let Some(loc) = v.get("location").and_then(Value::as_str) {
            let tz = match loc {
                "" | "UTC" | "Local" => chrono_tz::UTC,
                other => other
                    .parse::<chrono_tz::Tz>()
                    .map_err(|_| format!("unknown time zone {other}"))?,
            };
            ti.location = Some(tz);
        }
        Ok(ti)
    }

    /// Whether the instant `ms` (Unix ms) falls inside.
    pub fn contains(&self, ms: i64) -> bool {
        let tz = self.location.unwrap_or(chrono_tz::UTC);
        let Some(t) = tz.timestamp_millis_opt(ms).single() else {
            return false;
        };
        let minute = t.hour() * 60 + t.minute();
        if let Some(times) = &self.times {
            if !times.iter().any(|(s, e)| minute >= *s && minute < *e) {
                return false;
            }
        }
        if let Some(days) = &self.weekdays {
            let d = t.weekday().num_days_from_sunday();
            if !days.iter().any(|(a, b)| d >= *a && d <= *b) {
                return false;
            }
        }
        if let Some(doms) = &self.days_of_month {
            let month_len = days_in_month(t.year(), t.month()) as i32;
            let day = t.day() as i32;
            let abs = |x: i32| if x < 0 { month_len + x + 1 } else { x };
            if !doms.iter().any(|(a, b)| day >= abs(*a) && day <= abs(*b)) {
                return false;
            }
        }
        if let Some(months) = &self.months {
            if !months
                .iter()
                .any(|(a, b)| t.month() >= *a && t.month() <= *b)
            {
                return false;
            }
        }
        if let Some(years) = &self.years {
            if !years.iter().any(|(a, b)| t.year() >= *a && t.year() <= *b) {
                return false;
            }
        }
        true
    }
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    chrono::NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(31)
}

/// Parses a named interval (`{name, time_intervals: [...]}`).
pub fn parse_named(v: &Value) -> Result<Vec<TimeInterval>, String> {
    v.get("time_intervals")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(TimeInterval::parse).collect())
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// Whether any entry contains `ms`.
pub fn any_contains(intervals: &[TimeInterval], ms: i64) -> bool {
    intervals.iter().any(|t| t.contains(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ti(y: &str) -> TimeInterval {
        TimeInterval::parse(&serde_saphyr::from_str(y).unwrap()).unwrap()
    }

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn fields_and_ranges() {
        let office =
            ti("times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n");
        assert!(
            office.contains(at("2026-11-26T10:00:00Z")),
            "Thursday morning"
        );
        assert!(
            !office.contains(at("2026-11-26T17:00:00Z")),
            "end is exclusive"
        );
        assert!(!office.contains(at("2026-11-28T10:00:00Z")), "Saturday");
        let last_days = ti("days_of_month: ['-3:-1']\nmonths: ['february']\n");
        assert!(
            last_days.contains(at("2028-02-27T00:00:00Z")),
            "leap year: 27..29"
        );
        assert!(!last_days.contains(at("2028-02-26T23:59:00Z")));
        assert!(!last_days.contains(at("2028-03-30T00:00:00Z")));
        let berlin =
            ti("times: [{start_time: '00:00', end_time: '01:00'}]\nlocation: Europe/Berlin\n");
        assert!(
            berlin.contains(at("2026-11-26T23:30:00Z")),
            "00:30 in Berlin"
        );
        let years = ti("years: ['2025:2026']\n");
        assert!(years.contains(at("2026-01-01T00:00:00Z")));
        assert!(!years.contains(at("2027-01-01T00:00:00Z")));
        for bad in [
            "weekdays: ['funday']",
            "times: [{start_time: '10:00', end_time: '09:00'}]",
            "days_of_month: ['0']",
            "months: ['13']",
            "location: Mars/Base",
        ] {
            assert!(
                TimeInterval::parse(&serde_saphyr::from_str(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }
}
