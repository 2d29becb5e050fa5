//! Durations as written in DAG files: `30s`, `10m`, `1h`, `1h30m`, or a number of seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration as it appears in YAML, before validation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum DurationValue {
    /// A whole number of seconds.
    Seconds(u64),
    /// A fractional number of seconds.
    Fractional(f64),
    /// Text such as `1h30m` or `45`.
    Text(String),
}

/// The longest duration accepted anywhere (timeouts, delays): 100 years. Longer values are
/// almost certainly mistakes, and bounding them keeps every `now + duration` in range.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl DurationValue {
    /// Validates the value into a `Duration` of at most [`MAX_DURATION`], explaining what
    /// is wrong otherwise.
    pub fn parse(&self) -> Result<Duration, String> {
        let parsed = match self {
            Self::Seconds(s) => Ok(Duration::from_secs(*s)),
            Self::Fractional(f) if f.is_finite() && *f >= 0.0 => {
                Duration::try_from_secs_f64(*f).map_err(|_| out_of_range(&f.to_string()))
            }
            Self::Fractional(f) => Err(format!("bad duration '{f}': must be zero or positive")),
            Self::Text(text) => return parse_duration(text),
        }?;
        bounded(parsed, &self.shown())
    }

    fn shown(&self) -> String {
        match self {
            Self::Seconds(s) => s.to_string(),
            Self::Fractional(f) => f.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

fn out_of_range(text: &str) -> String {
    format!("bad duration '{text}': out of range (allowed: 0s to 100 years)")
}

fn bounded(d: Duration, text: &str) -> Result<Duration, String> {
    if d > MAX_DURATION {
        Err(out_of_range(text))
    } else {
        Ok(d)
    }
}

/// Parses `30s`, `10m`, `1h30m`, `2 days` or plain seconds (`90`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(secs) = trimmed.parse::<u64>() {
        return bounded(Duration::from_secs(secs), text);
    }
    let parsed = humantime::parse_duration(trimmed).map_err(|e| {
        format!("bad duration '{text}': {e} (use e.g. 30s, 10m, 1h, 1h30m or a number of seconds)")
    })?;
    bounded(parsed, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_beyond_100_years_are_refused_with_the_range() {
        let expected =
            |v: &str| format!("bad duration '{v}': out of range (allowed: 0s to 100 years)");
        assert_eq!(parse_duration("300000y").unwrap_err(), expected("300000y"));
        assert_eq!(
            DurationValue::Seconds(u64::MAX).parse().unwrap_err(),
            expected("18446744073709551615")
        );
        assert_eq!(
            DurationValue::Fractional(1e30).parse().unwrap_err(),
            expected("1000000000000000000000000000000")
        );
        assert_eq!(
            DurationValue::Fractional(1e13).parse().unwrap_err(),
            expected("10000000000000")
        );
        assert!(parse_duration("99y").is_ok());
    }

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            DurationValue::Seconds(5).parse().unwrap(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_bad_duration_says_what_was_wrong() {
        let err = parse_duration("soon").unwrap_err();
        assert!(err.starts_with("bad duration 'soon':"), "{err}");
        assert!(DurationValue::Fractional(-1.0).parse().is_err());
    }
}
