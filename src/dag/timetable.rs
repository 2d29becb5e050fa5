//! Schedules with Airflow's data-interval meaning: a run covers `[start, end)`, is created
//! when the interval ends, and its logical date is the interval start.
//!
//! Pure functions of (schedule, last interval, now) so they are tested with an injected
//! clock; the scheduler only asks "what is the next interval, and is it due?".

use chrono::{DateTime, Datelike, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
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
    /// Parses 5-field cron or a preset (`@once @hourly @daily @midnight @weekly @monthly
    /// @yearly @annually`); a cron that can never fire is refused.
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
        // Airflow's `@midnight` is `@daily`; croner knows only the latter.
        let text = if text == "@midnight" { "@daily" } else { text };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed);
        let cron = parser
            .build()
            .parse(text)
            .map_err(|e| format!("bad schedule '{text}': {e}"))?;
        // A day and month that never meet (`0 0 31 2 *`) would leave the DAG silently idle.
        // Every calendar repeats within 400 years, so a first fire is found well within it.
        let from = DateTime::<Utc>::UNIX_EPOCH;
        match cron.find_next_occurrence(&from, true) {
            Ok(first) if first.year() < NEVER_FIRES_AFTER_YEAR => Ok(Self::Cron(Box::new(cron))),
            _ => Err(format!(
                "bad schedule '{text}': it never fires (no date matches its day, month and weekday)"
            )),
        }
    }
}

/// A cron with no fire before this year (counting from 1970) never fires.
const NEVER_FIRES_AFTER_YEAR: i32 = 1970 + 400;

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
    /// Zone the cron fields are read in (DST rules: see `fire`).
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
            Schedule::Once => return self.once(last_end, now),
            Schedule::Cron(c) => c,
        };
        let earliest = match self.start_date {
            Some(s) => self.fire_at_or_after(cron, s)?,
            None => self
                .fire_at_or_before(cron, now)
                .and_then(|e| self.fire_before(cron, e))?,
        };
        // Aligned to the schedule as Airflow does: after a schedule change, the next interval
        // starts at the new schedule's fire time at or before the last one's end.
        let mut start = last_end.map_or(earliest, |e| {
            self.fire_at_or_before(cron, e).unwrap_or(e).max(earliest)
        });
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

    /// The interval to create now in place of `due`, the next interval, which has ended.
    /// With catchup that is `due` itself; without, it is the latest complete interval at
    /// `now` (later than `due` when the run was held back past another interval's end, e.g.
    /// by `max_active_runs`), as Airflow decides at the moment it creates the run.
    pub fn to_create(&self, due: DataInterval, now: DateTime<Utc>) -> DataInterval {
        if self.catchup {
            return due;
        }
        self.next_interval(Some(due.start), now)
            .filter(|latest| latest.end <= now && latest.start >= due.start)
            .unwrap_or(due)
    }

    /// The complete intervals (ended by `now`) whose logical date lies in `[from, to]` and
    /// within the DAG's start and end dates, in order, as Airflow 3 backfills them. At most
    /// `limit + 1` are listed, so a caller refusing more than `limit` never walks a huge
    /// range (a minutely schedule over centuries).
    pub fn backfill_intervals(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DataInterval> {
        let from = self.start_date.map_or(from, |s| from.max(s));
        let to = self.end_date.map_or(to, |e| to.min(e));
        self.intervals_between(from, to, limit.saturating_add(1))
            .into_iter()
            .take_while(|i| i.end <= now)
            .collect()
    }

    /// The first `limit` intervals whose logical date lies in `[from, to]`.
    pub fn intervals_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DataInterval> {
        let cron = match &self.schedule {
            Schedule::Once => {
                return self
                    .once(None, from)
                    .filter(|i| i.start >= from && i.start <= to && limit > 0)
                    .into_iter()
                    .collect();
            }
            Schedule::Cron(c) => c,
        };
        let mut out = Vec::new();
        let mut cursor = self.fire_at_or_after(cron, from);
        while let Some(start) = cursor.filter(|s| *s <= to && out.len() < limit) {
            let Some(end) = self.fire_after(cron, start) else {
                break;
            };
            out.push(DataInterval { start, end });
            cursor = Some(end);
        }
        out
    }

    /// `@once`: at `start_date`, or at `now` without one (as Airflow's OnceTimetable).
    fn once(&self, last_end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DataInterval> {
        let start = self.start_date.unwrap_or(now);
        last_end
            .is_none()
            .then_some(DataInterval { start, end: start })
    }

    fn local(&self, t: DateTime<Utc>) -> DateTime<Tz> {
        self.timezone.from_utc_datetime(&t.naive_utc())
    }

    fn fire_at_or_after(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fire(cron, t, Direction::Forward, true)
    }

    fn fire_after(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fire(cron, t, Direction::Forward, false)
    }

    fn fire_at_or_before(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fire(cron, t, Direction::Backward, true)
    }

    fn fire_before(&self, cron: &Cron, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fire(cron, t, Direction::Backward, false)
    }

    /// The nearest fire time from `t` in `direction`, with Airflow 3's DST rules.
    ///
    /// A cron that fires every hour follows the real clock: croner's zone-aware search
    /// fires on both passes of a repeated hour and skips a missing one, as Airflow's
    /// "fold hour" handling does. Any other cron names wall-clock times of day, which are
    /// matched on the naive local clock and then placed on the time line: an ambiguous time
    /// at a fall-back is its later occurrence (as Airflow resolves it), a time in a
    /// spring-forward gap is the first valid instant after the gap.
    fn fire(
        &self,
        cron: &Cron,
        t: DateTime<Utc>,
        direction: Direction,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        if covers_every_hour(cron) {
            let local = self.local(t);
            let found = match direction {
                Direction::Forward => cron.find_next_occurrence(&local, inclusive),
                Direction::Backward => cron.find_previous_occurrence(&local, inclusive),
            };
            return found.ok().map(|d| d.with_timezone(&Utc));
        }
        let naive_t = self.local(t).naive_local();
        // A forward search must also see wall-clock times just before `t`'s own: when `t` is
        // on the first pass of a repeated hour, their later occurrences are still ahead.
        let mut cursor = match direction {
            Direction::Forward => naive_t.checked_sub_signed(self.fold_ahead(t)?)?,
            Direction::Backward => naive_t,
        };
        let mut cursor_inclusive = true;
        // Each step moves to the next matching wall-clock time; only matches inside a
        // repeated or skipped hour are passed over, so this bound is never reached by a
        // real schedule (it guards against a pathological zone).
        for _ in 0..MAX_WALL_STEPS {
            let origin = Utc.from_utc_datetime(&cursor);
            let found = match direction {
                Direction::Forward => cron.find_next_occurrence(&origin, cursor_inclusive),
                Direction::Backward => cron.find_previous_occurrence(&origin, cursor_inclusive),
            };
            let wall = found.ok()?.naive_utc();
            let at = self.place(wall)?;
            let beyond = match direction {
                Direction::Forward => at > t,
                Direction::Backward => at < t,
            };
            if beyond || (inclusive && at == t) {
                return Some(at);
            }
            cursor = wall;
            cursor_inclusive = false;
        }
        None
    }

    /// How far the local clock goes back within the next few hours after `t` (zero if it
    /// does not): the wall-clock span whose later occurrences still lie ahead of `t`.
    fn fold_ahead(&self, t: DateTime<Utc>) -> Option<TimeDelta> {
        let offset = |at: DateTime<Utc>| {
            i64::from(
                self.timezone
                    .offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let later = t.checked_add_signed(TimeDelta::hours(DST_LOOKAHEAD_HOURS))?;
        TimeDelta::try_seconds((offset(t) - offset(later)).max(0))
    }

    /// The instant of a local wall-clock time: the later one if it occurs twice, the first
    /// valid instant after the gap if it does not occur.
    fn place(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&wall) {
            LocalResult::Single(d) => Some(d.with_timezone(&Utc)),
            LocalResult::Ambiguous(_, later) => Some(later.with_timezone(&Utc)),
            LocalResult::None => {
                // Gaps start and end on whole minutes in every zone since 1970, and last at
                // most a day (Samoa, 2011).
                let mut probe = wall;
                for _ in 0..MAX_GAP_MINUTES {
                    probe = probe.checked_add_signed(TimeDelta::minutes(1))?;
                    if let Some(d) = self.timezone.from_local_datetime(&probe).earliest() {
                        return Some(d.with_timezone(&Utc));
                    }
                }
                None
            }
        }
    }
}

/// Search direction along the time line.
#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

/// Longer than any DST shift, so a repeated hour starting soon after `t` is seen.
const DST_LOOKAHEAD_HOURS: i64 = 3;
/// Wall-clock matches passed over inside one repeated or skipped span at most.
const MAX_WALL_STEPS: usize = 10_000;
/// The longest gap in the tz database (a whole day) in minutes, plus one.
const MAX_GAP_MINUTES: usize = 24 * 60 + 1;

/// Whether the cron fires in every hour of the day (`0 * * * *`, `*/5 * * * *`): Airflow
/// treats those as following the real clock across DST changes.
fn covers_every_hour(cron: &Cron) -> bool {
    (0..24).all(|h| cron.pattern.hour_match(h).unwrap_or(false))
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
    fn without_catchup_a_held_back_interval_is_replaced_by_the_latest_at_creation() {
        let mut t = daily(false, Tz::UTC);
        t.schedule = Schedule::parse("0 * * * *").unwrap();
        // 11:00-12:00 was next when computed; creation happens at 13:05 (max_active_runs
        // held it back): the run created is 12:00-13:00.
        let due = t.next_interval(None, utc("2024-01-10T12:05:00Z")).unwrap();
        assert_eq!(due.start, utc("2024-01-10T11:00:00Z"));
        let created = t.to_create(due, utc("2024-01-10T13:05:00Z"));
        assert_eq!(created.start, utc("2024-01-10T12:00:00Z"));
        assert_eq!(created.end, utc("2024-01-10T13:00:00Z"));
        // Created on time, it is the due interval itself; with catchup it always is.
        assert_eq!(t.to_create(due, utc("2024-01-10T12:05:00Z")), due);
        t.catchup = true;
        assert_eq!(t.to_create(due, utc("2024-01-10T13:05:00Z")), due);
    }

    #[test]
    fn after_a_schedule_change_the_next_interval_is_aligned_to_the_new_schedule() {
        let mut t = daily(true, Tz::UTC);
        t.schedule = Schedule::parse("30 5 * * *").unwrap();
        // The last run, under `0 */6 * * *`, ended 2024-01-02 06:00.
        let i = t
            .next_interval(
                Some(utc("2024-01-02T06:00:00Z")),
                utc("2024-01-10T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(i.start, utc("2024-01-02T05:30:00Z"));
        assert_eq!(i.end, utc("2024-01-03T05:30:00Z"));
    }

    #[test]
    fn once_without_a_start_date_runs_now() {
        let t = Timetable {
            schedule: Schedule::parse("@once").unwrap(),
            timezone: Tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
        };
        let now = utc("2024-05-06T07:08:09Z");
        let i = t.next_interval(None, now).unwrap();
        assert_eq!((i.start, i.end), (now, now));
        assert_eq!(t.next_interval(Some(now), now), None);
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
        let all = t.intervals_between(utc("2024-01-01T00:00:00Z"), utc("2024-01-03T23:00:00Z"), 9);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].start, utc("2024-01-03T03:00:00Z"));
    }

    #[test]
    fn backfill_takes_complete_intervals_within_the_dag_dates_only() {
        let mut t = daily(false, Tz::UTC);
        t.end_date = Some(utc("2024-01-05T00:00:00Z"));
        let now = utc("2024-01-04T12:00:00Z");
        // From before start_date to after end_date: 01-01 .. 01-03 (01-04's interval has
        // not ended at `now`; 01-05 03:00 is after end_date).
        let all = t.backfill_intervals(
            utc("2023-12-01T00:00:00Z"),
            utc("2024-02-01T00:00:00Z"),
            now,
            100,
        );
        let starts: Vec<_> = all
            .iter()
            .map(|i| i.start.format("%d").to_string())
            .collect();
        assert_eq!(starts, ["01", "02", "03"]);
    }

    #[test]
    fn a_huge_backfill_range_stops_one_past_the_limit() {
        let mut t = daily(false, Tz::UTC);
        t.schedule = Schedule::parse("* * * * *").unwrap();
        t.start_date = None;
        let all = t.backfill_intervals(
            utc("0001-01-01T00:00:00Z"),
            utc("9999-12-31T00:00:00Z"),
            utc("2024-01-01T00:00:00Z"),
            1000,
        );
        assert_eq!(all.len(), 1001);
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

#[cfg(test)]
mod dst_tests {
    //! Airflow 3's DST rules, in New York and Paris (DST ends on different Sundays, at 02:00
    //! and 03:00 local time).

    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Paris;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn timetable(cron: &str, tz: Tz, start: &str) -> Timetable {
        Timetable {
            schedule: Schedule::parse(cron).unwrap(),
            timezone: tz,
            start_date: Some(utc(start)),
            end_date: None,
            catchup: true,
        }
    }

    /// Logical dates of the intervals from `from` to `to`, in UTC.
    fn starts(t: &Timetable, from: &str, to: &str) -> Vec<String> {
        t.intervals_between(utc(from), utc(to), 100)
            .iter()
            .map(|i| i.start.format("%m-%d %H:%M").to_string())
            .collect()
    }

    #[test]
    fn a_daily_time_repeated_at_fall_back_fires_at_its_later_occurrence_in_new_york() {
        let t = timetable("30 1 * * *", New_York, "2024-11-01T00:00:00Z");
        // 01:30 EDT on the 2nd, then 01:30 EST (not EDT) on the 3rd, then 01:30 EST.
        assert_eq!(
            starts(&t, "2024-11-02T00:00:00Z", "2024-11-04T12:00:00Z"),
            ["11-02 05:30", "11-03 06:30", "11-04 06:30"]
        );
        let i = t
            .next_interval(
                Some(utc("2024-11-02T05:30:00Z")),
                utc("2024-11-10T00:00:00Z"),
            )
            .unwrap();
        assert_eq!(i.start, utc("2024-11-02T05:30:00Z"));
        assert_eq!(i.end, utc("2024-11-03T06:30:00Z"));
    }

    #[test]
    fn a_daily_time_repeated_at_fall_back_fires_at_its_later_occurrence_in_paris() {
        let t = timetable("30 2 * * *", Paris, "2024-10-25T00:00:00Z");
        // 02:30 CEST (00:30Z), then 02:30 CET (01:30Z) on the 27th.
        assert_eq!(
            starts(&t, "2024-10-26T00:00:00Z", "2024-10-28T12:00:00Z"),
            ["10-26 00:30", "10-27 01:30", "10-28 01:30"]
        );
    }

    #[test]
    fn a_search_from_the_first_pass_of_a_repeated_hour_still_finds_the_later_fire() {
        let t = timetable("30 1 * * *", New_York, "2024-11-01T00:00:00Z");
        let Schedule::Cron(cron) = &t.schedule else {
            panic!("cron expected")
        };
        // 01:40 EDT: the day's fire (01:30 EST) is still ahead, and none is behind.
        let first_pass = utc("2024-11-03T05:40:00Z");
        assert_eq!(
            t.fire_after(cron, first_pass),
            Some(utc("2024-11-03T06:30:00Z"))
        );
        assert_eq!(
            t.fire_before(cron, first_pass),
            Some(utc("2024-11-02T05:30:00Z"))
        );
        assert_eq!(
            t.fire_at_or_before(cron, utc("2024-11-03T06:30:00Z")),
            Some(utc("2024-11-03T06:30:00Z"))
        );
    }

    #[test]
    fn a_daily_time_in_the_spring_forward_gap_fires_at_the_first_valid_time() {
        let ny = timetable("30 2 * * *", New_York, "2024-03-08T00:00:00Z");
        // 02:30 does not exist on 10 March: 03:00 EDT (07:00Z); then 02:30 EDT again.
        assert_eq!(
            starts(&ny, "2024-03-09T00:00:00Z", "2024-03-11T12:00:00Z"),
            ["03-09 07:30", "03-10 07:00", "03-11 06:30"]
        );
        let paris = timetable("30 2 * * *", Paris, "2024-03-29T00:00:00Z");
        // 02:30 does not exist on 31 March: 03:00 CEST (01:00Z).
        assert_eq!(
            starts(&paris, "2024-03-30T00:00:00Z", "2024-04-01T12:00:00Z"),
            ["03-30 01:30", "03-31 01:00", "04-01 00:30"]
        );
    }

    #[test]
    fn an_hourly_schedule_fires_every_real_hour_through_fall_back() {
        let ny = timetable("0 * * * *", New_York, "2024-11-01T00:00:00Z");
        // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST: four one-hour intervals.
        assert_eq!(
            starts(&ny, "2024-11-03T04:00:00Z", "2024-11-03T07:00:00Z"),
            ["11-03 04:00", "11-03 05:00", "11-03 06:00", "11-03 07:00"]
        );
        let paris = timetable("15 * * * *", Paris, "2024-10-25T00:00:00Z");
        assert_eq!(
            starts(&paris, "2024-10-26T23:00:00Z", "2024-10-27T02:00:00Z"),
            ["10-26 23:15", "10-27 00:15", "10-27 01:15"]
        );
    }

    #[test]
    fn an_hourly_schedule_skips_the_missing_hour_at_spring_forward() {
        let ny = timetable("0 * * * *", New_York, "2024-03-08T00:00:00Z");
        // 01:00 EST (06:00Z) is followed by 03:00 EDT (07:00Z).
        let all = ny.intervals_between(
            utc("2024-03-10T06:00:00Z"),
            utc("2024-03-10T07:00:00Z"),
            100,
        );
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].end, utc("2024-03-10T07:00:00Z"));
        let paris = timetable("30 * * * *", Paris, "2024-03-29T00:00:00Z");
        // 01:30 CET (00:30Z) is followed by 03:30 CEST (01:30Z).
        assert_eq!(
            starts(&paris, "2024-03-31T00:00:00Z", "2024-03-31T02:00:00Z"),
            ["03-31 00:30", "03-31 01:30"]
        );
    }

    #[test]
    fn midnight_is_a_daily_preset_and_a_cron_that_never_fires_is_refused() {
        let t = timetable("@midnight", Paris, "2024-01-01T00:00:00Z");
        assert_eq!(
            starts(&t, "2024-01-02T00:00:00Z", "2024-01-03T12:00:00Z"),
            ["01-02 23:00"]
        );
        assert_eq!(
            Schedule::parse("0 0 31 2 *").unwrap_err(),
            "bad schedule '0 0 31 2 *': it never fires (no date matches its day, month and weekday)"
        );
        assert!(Schedule::parse("0 0 29 2 *").is_ok());
    }
}
