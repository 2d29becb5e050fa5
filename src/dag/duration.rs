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

impl DurationValue {
    /// Validates the value into a `Duration`, explaining what is wrong otherwise.
    pub fn parse(&self) -> Result<Duration, String> {
        match self {
            Self::Seconds(s) => Ok(Duration::from_secs(*s)),
            Self::Fractional(f) if f.is_finite() && *f >= 0.0 => Duration::try_from_secs_f64(*f)
                .map_err(|_| format!("bad duration '{f}': too large")),
            Self::Fractional(f) => Err(format!("bad duration '{f}': must be zero or positive")),
            Self::Text(text) => parse_duration(text),
        }
    }
}

/// Parses `30s`, `10m`, `1h30m`, `2 days` or plain seconds (`90`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if let Ok(secs) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        format!("bad duration '{text}': {e} (use e.g. 30s, 10m, 1h, 1h30m or a number of seconds)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
