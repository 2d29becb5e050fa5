//! Schedules with Airflow's data-interval meaning: a run covers `[start, end)`, is created
//! when the interval ends, and its logical date is the interval start.
//!
//! Pure functions of (schedule, last interval, now) so they are tested with an injected
//! clock; the scheduler only asks "what is the next interval, and is it due?".

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed `schedule:` value.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A 5-field cron expression or a preset other than `@once`.
    Cron(Box<Cron>),
    /// `@once`: a single run at the start date.
    Once,
}

impl Schedule {
    /// Parses 5-field cron or a preset (`@once @hourly @daily @weekly @monthly @yearly`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "@once" {
            return Ok(Self::Once);
        }
        if text.starts_with('@') && !PRESETS.contains(&text) {
            return Err(format!(
                "bad schedule '{text}': unknown preset (use one of @once, {})",
                PRESETS.join(", ")
            ));
        }
        if !text.starts_with('@') && text.split_whitespace().count() != 5 {
            return Err(format!(
                "bad schedule '{text}': expected 5 cron fields (minute hour day month weekday)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed);
        parser
            .build()
            .parse(text)
            .map(|c| Self::Cron(Box::new(c)))
            .map_err(|e| format!("bad schedule '{text}': {e}"))
    }
}

const PRESETS: [&str; 7] = [
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
    "@midnight",
];

/// The interval a run covers; `start` is its logical date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataInterval {
    /// Interval start = logical date.
    pub start: DateTime<Utc>,
    /// Interval end = when the run becomes due.
    pub end: DateTime<Utc>,
}

/// A schedule bound to a DAG's time zone, dates and catchup setting.
#[derive(Clone, Debug)]
pub struct Timetable {
    /// What fires.
    pub schedule: Schedule,
    /// Zone the cron fields are read in (DST handled by croner).
    pub timezone: Tz,
    /// No interval starts before this.
    pub start_date: Option<DateTime<Utc>>,
    /// No interval starts after this.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether missed intervals are all run, or only the latest.
    pub catchup: bool,
}

impl Timetable {
    /// The interval to create after the one that ended at `last_end` (None: no automated run
    /// yet). It may not be due yet: the caller compares `end` with the clock.
    pub fn next_interval(
        &self,
        last_end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let cron = match &self.schedule {
            Schedule::Once => return self.once(last_end),
            Schedule::Cron(c) => c,
        };
        let earliest = match self.start_date {
            Some(s) => self.fire_at_or_after(cron, s)?,
            None => self
                .fire_at_or_before(cron, now)
                .and_then(|e| self.fire_before(cron, e))?,
        };
        let mut start = last_end.map_or(earliest, |e| e.max(earliest));
        if !self.catchup {
            // Only the latest complete interval (or the one in progress) is run.
            if let Some(latest_end) = self.fire_at_or_before(cron, now)
                && let Some(latest_start) = self.fire_before(cron, latest_end)
            {
                start = start.max(latest_start);
            }
        }
        let end = self.fire_after(cron, start)?;
        match self.end_date {
            Some(limit) if start > limit => None,
            _ => Some(DataInterval { start, end }),
        }
    }

    /// Every interval whose logical date lies in `[from, to]` (for backfill).
    pub fn intervals_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DataInterval> {
        let cron = match &self.schedule {
            Schedule::Once => {
                return self
                    .once(None)
                    .filter(|i| i.start >= from && i.start <= to)
                    .into_iter()
                    .collect();
            }
            Schedule::Cron(c) => c,
        };
        let mut out = Vec::new();
        let mut cursor = self.fire_at_or_after(cron, from);
        while let Some(start) = cursor.filter(|s| *s <= to) {
            let Some(end) = self.fire_after(cron, start) else {
                break;
            };
            out.push(DataInterval { start, end });
            cursor = Some(end);
        }
        out
    }

    fn once(&self, last_end: Option<DateTime<Utc>>) -> Option<DataInterval> {
        let start = self.start_date.unwrap_or(DateTime::UNIX_EPOCH);
        last_end
            .is_none()
            .then_some(DataInterval { start, end: start })
    }

    fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        self.timezone.from_utc_datetime(&t.naive_utc())
    }

    fn fire_at_or_after(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_next_occurrence(&self.local(t), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn fire_after(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_next_occurrence(&self.local(t), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn fire_at_or_before(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_previous_occurrence(&self.local(t), true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn fire_before(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        cron.find_previous_occurrence(&self.local(t), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily(catchup: bool, tz: Tz) -> Timetable {
        Timetable {
            schedule: Schedule::parse("0 3 * * *").unwrap(),
            timezone: tz,
            start_date: Some(utc("2024-01-01T00:00:00Z")),
            end_date: None,
            catchup,
        }
    }

    #[test]
    fn the_first_catchup_interval_starts_at_the_first_fire_after_start_date() {
        let t = daily(true, Tz::UTC);
        let i = t.next_interval(None, utc("2024-01-10T00:00:00Z")).unwrap();
        assert_eq!(i.start, utc("2024-01-01T03:00:00Z"));
        assert_eq!(i.end, utc("2024-01-02T03:00:00Z"));
        let next = t
            .next_interval(Some(i.end), utc("2024-01-10T00:00:00Z"))
            .unwrap();
        assert_eq!(next.start, utc("2024-01-02T03:00:00Z"));
    }

    #[test]
    fn without_catchup_only_the_latest_complete_interval_runs() {
        let t = daily(false, Tz::UTC);
        let i = t.next_interval(None, utc("2024-01-10T05:00:00Z")).unwrap();
        assert_eq!(i.start, utc("2024-01-09T03:00:00Z"));
        assert_eq!(i.end, utc("2024-01-10T03:00:00Z"));
    }

    #[test]
    fn cron_fields_are_read_in_the_dag_time_zone() {
        let t = daily(true, chrono_tz::Europe::Paris);
        let i = t.next_interval(None, utc("2024-01-10T00:00:00Z")).unwrap();
        // 03:00 in Paris in winter is 02:00 UTC.
        assert_eq!(i.start, utc("2024-01-01T02:00:00Z"));
    }

    #[test]
    fn monday_means_monday() {
        let t = Timetable {
            schedule: Schedule::parse("0 9 * * 1").unwrap(),
            timezone: Tz::UTC,
            start_date: Some(utc("2024-01-01T00:00:00Z")),
            end_date: None,
            catchup: true,
        };
        let i = t.next_interval(None, utc("2024-03-01T00:00:00Z")).unwrap();
        assert_eq!(i.start, utc("2024-01-01T09:00:00Z")); // 2024-01-01 was a Monday
        assert_eq!(i.end, utc("2024-01-08T09:00:00Z"));
    }

    #[test]
    fn end_date_stops_the_schedule_and_once_runs_once() {
        let mut t = daily(true, Tz::UTC);
        t.end_date = Some(utc("2024-01-02T00:00:00Z"));
        assert!(
            t.next_interval(
                Some(utc("2024-01-02T03:00:00Z")),
                utc("2024-02-01T00:00:00Z")
            )
            .is_none()
        );
        t.schedule = Schedule::Once;
        assert!(t.next_interval(None, utc("2024-02-01T00:00:00Z")).is_some());
        assert!(
            t.next_interval(
                Some(utc("2024-01-01T00:00:00Z")),
                utc("2024-02-01T00:00:00Z")
            )
            .is_none()
        );
    }

    #[test]
    fn backfill_lists_every_interval_in_range() {
        let t = daily(false, Tz::UTC);
        let all = t.intervals_between(utc("2024-01-01T00:00:00Z"), utc("2024-01-03T23:00:00Z"));
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].start, utc("2024-01-03T03:00:00Z"));
    }

    #[test]
    fn bad_cron_and_presets_are_explained() {
        assert!(Schedule::parse("@daily").is_ok());
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(e.starts_with("bad schedule '61 * * * *'"), "{e}");
        assert!(
            Schedule::parse("* * * *")
                .unwrap_err()
                .contains("expected 5 cron fields")
        );
        assert!(
            Schedule::parse("@sometimes")
                .unwrap_err()
                .contains("unknown preset")
        );
    }
}
