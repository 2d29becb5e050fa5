//! A DAG's schedule in words for the dashboard: "every day at 03:00 Europe/Paris", "every
//! hour at minute 15", "every Monday at 09:30 UTC", "on day 1 of every month at 00:00 UTC",
//! "manual only".
//!
//! The common shapes of 5-field cron are phrased here from croner's parsed pattern (so
//! names, ranges and steps are already resolved). croner's own `describe()` is the fallback
//! for the rest: it covers every shape but reads mechanically ("At 03:00.", no zone), and
//! when even that says nothing the cron text is shown as written.

use chrono_tz::Tz;
use croner::{CronComponent, CronPattern};

use super::Dag;
use super::timetable::Schedule;

/// The schedule of `dag` in words.
pub fn describe_dag(dag: &Dag) -> String {
    describe(dag.schedule_text.as_deref(), dag.timezone)
}

/// A `schedule:` value (`None`: manual runs only) in words, with times of day read in
/// `timezone`. Text that does not parse is returned as written.
pub fn describe(schedule: Option<&str>, timezone: Tz) -> String {
    let Some(text) = schedule else {
        return "manual only".into();
    };
    match Schedule::parse(text) {
        Ok(Schedule::Once) => "once".into(),
        Ok(Schedule::Cron(cron)) => phrase(&cron.pattern, timezone)
            .unwrap_or_else(|| fallback(&cron.pattern, text, timezone)),
        Err(_) => text.trim().to_string(),
    }
}

/// One cron field, resolved to its matching values.
#[derive(Debug, PartialEq)]
enum Field {
    /// Every value (`*`).
    Every,
    /// Every `n`th value from the first (`*/n`, or a list that amounts to it).
    Step(u16),
    /// These values (at least one).
    Values(Vec<u16>),
}

fn field(component: &CronComponent) -> Field {
    classify(component.values(), component.min, component.max)
}

fn classify(values: Vec<u16>, min: u16, max: u16) -> Field {
    if values.len() == usize::from(max - min + 1) {
        return Field::Every;
    }
    if let [first, second, ..] = values[..] {
        let step = second - first;
        let regular = values.windows(2).all(|w| w[1] - w[0] == step);
        let last = values[values.len() - 1];
        if first == min && regular && last + step > max {
            return Field::Step(step);
        }
    }
    Field::Values(values)
}

/// The days a cron fires on, when they have a simple shape.
#[derive(Debug, PartialEq)]
enum Calendar {
    Daily,
    /// Days of the week, 0 = Sunday.
    Weekdays(Vec<u16>),
    /// Days of the month, in some months (`None`: every month).
    MonthDays(Vec<u16>, Option<Vec<u16>>),
    /// Every day of these months.
    Months(Vec<u16>),
}

fn days(p: &CronPattern) -> Option<Calendar> {
    if p.days.has_modifiers() || p.days_of_week.has_modifiers() {
        return None;
    }
    let months = match field(&p.months) {
        Field::Every => None,
        Field::Step(_) | Field::Values(_) => Some(p.months.values()),
    };
    let weekdays = weekdays(p);
    let month_days = p.days.values();
    // Vixie cron: a `*` day field is ignored; when both are restricted a day matching either
    // fires (both with croner's `+`), which the fallback spells out.
    match (p.is_dom_wildcard(), p.is_dow_wildcard()) {
        (true, true) => Some(months.map_or(Calendar::Daily, Calendar::Months)),
        (true, false) if weekdays.len() == WEEKDAYS.len() => {
            Some(months.map_or(Calendar::Daily, Calendar::Months))
        }
        (true, false) => months.is_none().then_some(Calendar::Weekdays(weekdays)),
        (false, true) if month_days.len() == 31 => {
            Some(months.map_or(Calendar::Daily, Calendar::Months))
        }
        (false, true) => Some(Calendar::MonthDays(month_days, months)),
        (false, false) => None,
    }
}

/// The weekdays of the pattern, Monday first (7 is Sunday too).
fn weekdays(p: &CronPattern) -> Vec<u16> {
    let mut days: Vec<u16> = p.days_of_week.values().iter().map(|d| d % 7).collect();
    days.sort_unstable_by_key(|d| (d + 6) % 7);
    days.dedup();
    days
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn weekday(d: u16) -> &'static str {
    WEEKDAYS[usize::from(d % 7)]
}

fn month(m: u16) -> &'static str {
    MONTHS[usize::from(m.clamp(1, 12) - 1)]
}

/// "a", "a and b", "a, b and c".
fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn names(values: &[u16], name: fn(u16) -> &'static str, suffix: &str) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| format!("{}{suffix}", name(*v)))
        .collect();
    list(&items)
}

fn numbers(values: &[u16]) -> String {
    let items: Vec<String> = values.iter().map(u16::to_string).collect();
    list(&items)
}

fn plural(values: &[u16], one: &str, many: &str) -> String {
    let word = if values.len() == 1 { one } else { many };
    format!("{word} {}", numbers(values))
}

const MONDAY_TO_FRIDAY: [u16; 5] = [1, 2, 3, 4, 5];

/// The days as the start of a phrase with fixed times: "every Monday", "on day 1 of every
/// month".
fn days_before_times(days: &Calendar) -> String {
    match days {
        Calendar::Daily => "every day".into(),
        Calendar::Weekdays(d) if d[..] == MONDAY_TO_FRIDAY => "every weekday".into(),
        Calendar::Weekdays(d) => format!("every {}", names(d, weekday, "")),
        Calendar::MonthDays(d, None) => format!("on {} of every month", plural(d, "day", "days")),
        Calendar::MonthDays(d, Some(m)) if d.len() == 1 && m.len() == 1 => {
            format!("every year on {} {}", d[0], month(m[0]))
        }
        Calendar::MonthDays(d, Some(m)) => {
            format!("on {} of {}", plural(d, "day", "days"), names(m, month, ""))
        }
        Calendar::Months(m) => format!("every day in {}", names(m, month, "")),
    }
}

/// The days as the end of a phrase with a recurrence: "" (every day), " on Mondays".
fn days_after_recurrence(days: &Calendar) -> String {
    match days {
        Calendar::Daily => String::new(),
        Calendar::Weekdays(d) if d[..] == MONDAY_TO_FRIDAY => " on weekdays".into(),
        Calendar::Weekdays(d) => format!(" on {}", names(d, weekday, "s")),
        Calendar::MonthDays(d, None) => format!(" on {} of every month", plural(d, "day", "days")),
        Calendar::MonthDays(d, Some(m)) => {
            format!(
                " on {} of {}",
                plural(d, "day", "days"),
                names(m, month, "")
            )
        }
        Calendar::Months(m) => format!(" in {}", names(m, month, "")),
    }
}

/// Times of day listed in full at most this many (`0 6,18 * * *`), with at most two minutes
/// per hour; more is a recurrence.
const MAX_LISTED_TIMES: usize = 6;

/// The words for the common shapes, `None` for the rest.
fn phrase(p: &CronPattern, tz: Tz) -> Option<String> {
    let days = days(p)?;
    let (minutes, hours) = (field(&p.minutes), field(&p.hours));
    let ms = p.minutes.values();
    if let Field::Values(hs) = &hours
        && minutes != Field::Every
        && ms.len() <= 2
        && ms.len() * hs.len() <= MAX_LISTED_TIMES
    {
        let times: Vec<String> = hs
            .iter()
            .flat_map(|h| ms.iter().map(move |m| format!("{h:02}:{m:02}")))
            .collect();
        return Some(format!(
            "{} at {} {tz}",
            days_before_times(&days),
            list(&times)
        ));
    }
    let recurrence = recurrence(&minutes, &hours, p, tz)?;
    Some(format!("{recurrence}{}", days_after_recurrence(&days)))
}

/// Repeating within the day: "every 5 minutes", "every hour at minute 15", "every 15
/// minutes from 09:00 to 17:45 Europe/Paris".
fn recurrence(minutes: &Field, hours: &Field, p: &CronPattern, tz: Tz) -> Option<String> {
    let every = match minutes {
        Field::Every => "every minute".to_string(),
        Field::Step(n) => format!("every {n} minutes"),
        Field::Values(ms) if ms == &[0] => "every hour".to_string(),
        Field::Values(ms) => format!("every hour at {}", plural(ms, "minute", "minutes")),
    };
    match hours {
        Field::Every => Some(every),
        Field::Step(n) => match minutes {
            Field::Values(ms) if ms == &[0] => Some(format!("every {n} hours")),
            Field::Values(ms) => Some(format!(
                "every {n} hours at {}",
                plural(ms, "minute", "minutes")
            )),
            Field::Every | Field::Step(_) => None,
        },
        Field::Values(hs) => {
            let (first, last) = (*hs.first()?, *hs.last()?);
            let contiguous = usize::from(last - first + 1) == hs.len();
            let ms = p.minutes.values();
            let (m_first, m_last) = (*ms.first()?, *ms.last()?);
            contiguous.then(|| {
                format!("{every} from {first:02}:{m_first:02} to {last:02}:{m_last:02} {tz}")
            })
        }
    }
}

/// croner's description, in the same lower-case style, with the zone when times of day
/// matter; the cron text if it has nothing to say.
fn fallback(p: &CronPattern, text: &str, tz: Tz) -> String {
    let words = p.describe();
    let words = words.trim().trim_end_matches('.');
    let mut chars = words.chars();
    let Some(first) = chars.next() else {
        return text.trim().to_string();
    };
    let words = format!("{}{}", first.to_lowercase(), chars.as_str());
    if field(&p.hours) == Field::Every {
        words
    } else {
        format!("{words} ({tz})")
    }
}

#[cfg(test)]
mod tests {
    use chrono_tz::Europe::Paris;

    use super::*;

    fn utc(cron: &str) -> String {
        describe(Some(cron), Tz::UTC)
    }

    #[test]
    fn daily_times_name_the_zone() {
        assert_eq!(
            describe(Some("0 3 * * *"), Paris),
            "every day at 03:00 Europe/Paris"
        );
        assert_eq!(utc("30 23 * * *"), "every day at 23:30 UTC");
        assert_eq!(utc("@daily"), "every day at 00:00 UTC");
        assert_eq!(utc("@midnight"), "every day at 00:00 UTC");
        assert_eq!(utc("0 6,18 * * *"), "every day at 06:00 and 18:00 UTC");
        assert_eq!(utc("0,30 8 * * *"), "every day at 08:00 and 08:30 UTC");
    }

    #[test]
    fn hourly_and_minutely_shapes() {
        assert_eq!(utc("15 * * * *"), "every hour at minute 15");
        assert_eq!(utc("@hourly"), "every hour");
        assert_eq!(utc("0 * * * *"), "every hour");
        assert_eq!(utc("5,35 * * * *"), "every hour at minutes 5 and 35");
        assert_eq!(utc("* * * * *"), "every minute");
        assert_eq!(utc("*/5 * * * *"), "every 5 minutes");
        assert_eq!(utc("0,15,30,45 * * * *"), "every 15 minutes");
        assert_eq!(utc("0 */2 * * *"), "every 2 hours");
        assert_eq!(utc("10 */6 * * *"), "every 6 hours at minute 10");
    }

    #[test]
    fn hour_windows_give_their_first_and_last_fire() {
        assert_eq!(
            describe(Some("*/15 9-17 * * 1-5"), Paris),
            "every 15 minutes from 09:00 to 17:45 Europe/Paris on weekdays"
        );
        assert_eq!(utc("0 9-17 * * *"), "every hour from 09:00 to 17:00 UTC");
        assert_eq!(utc("* 3 * * *"), "every minute from 03:00 to 03:59 UTC");
        assert_eq!(
            utc("*/15 9 * * *"),
            "every 15 minutes from 09:00 to 09:45 UTC"
        );
    }

    #[test]
    fn weekdays_by_name_or_number() {
        assert_eq!(utc("30 9 * * 1"), "every Monday at 09:30 UTC");
        assert_eq!(utc("30 9 * * MON"), "every Monday at 09:30 UTC");
        assert_eq!(utc("0 0 * * 0"), "every Sunday at 00:00 UTC");
        assert_eq!(utc("0 0 * * 7"), "every Sunday at 00:00 UTC");
        assert_eq!(utc("@weekly"), "every Sunday at 00:00 UTC");
        assert_eq!(utc("0 8 * * 1-5"), "every weekday at 08:00 UTC");
        assert_eq!(utc("0 8 * * MON-FRI"), "every weekday at 08:00 UTC");
        assert_eq!(
            utc("30 2 * * 1,3,5"),
            "every Monday, Wednesday and Friday at 02:30 UTC"
        );
        assert_eq!(
            utc("0 10 * * 6,0"),
            "every Saturday and Sunday at 10:00 UTC"
        );
        assert_eq!(utc("0 10 * * 0-6"), "every day at 10:00 UTC");
        assert_eq!(utc("15 * * * 2"), "every hour at minute 15 on Tuesdays");
    }

    #[test]
    fn days_of_the_month_and_year() {
        assert_eq!(utc("0 0 1 * *"), "on day 1 of every month at 00:00 UTC");
        assert_eq!(utc("@monthly"), "on day 1 of every month at 00:00 UTC");
        assert_eq!(
            utc("0 12 1,15 * *"),
            "on days 1 and 15 of every month at 12:00 UTC"
        );
        assert_eq!(utc("@yearly"), "every year on 1 January at 00:00 UTC");
        assert_eq!(utc("@annually"), "every year on 1 January at 00:00 UTC");
        assert_eq!(
            utc("0 6 1 1,7 *"),
            "on day 1 of January and July at 06:00 UTC"
        );
        assert_eq!(utc("0 0 * 12 *"), "every day in December at 00:00 UTC");
        assert_eq!(
            utc("*/10 * 1 * *"),
            "every 10 minutes on day 1 of every month"
        );
        assert_eq!(
            utc("0 0 1 */3 *"),
            "on day 1 of January, April, July and October at 00:00 UTC"
        );
    }

    #[test]
    fn presets_without_a_cron() {
        assert_eq!(describe(None, Paris), "manual only");
        assert_eq!(utc("@once"), "once");
    }

    #[test]
    fn other_shapes_fall_back_to_croner_or_the_text() {
        // Day of month and weekday both restricted: either matches (Vixie cron).
        let either = utc("0 0 1 * 1");
        assert!(either.starts_with("at 00:00"), "{either}");
        assert!(either.ends_with("(UTC)"), "{either}");
        let last = utc("0 0 L * *");
        assert_eq!(last, "at 00:00, on the last day of the month (UTC)");
        assert_eq!(
            utc("*/5 */2 * * *"),
            "at every 5 minutes, of every 2 hours (UTC)"
        );
        assert_eq!(utc("not a cron"), "not a cron");
        assert_eq!(utc("@sometimes"), "@sometimes");
    }

    #[test]
    fn many_times_a_day_are_not_listed_one_by_one() {
        let words = utc("0 1,3,5,7,9,11,13 * * *");
        assert!(!words.contains("01:00, 03:00"), "{words}");
    }

    #[test]
    fn classify_recognises_steps_only_from_the_start() {
        assert_eq!(classify(vec![0, 20, 40], 0, 59), Field::Step(20));
        assert_eq!(
            classify(vec![5, 25, 45], 0, 59),
            Field::Values(vec![5, 25, 45])
        );
        assert_eq!(classify(vec![0, 20], 0, 59), Field::Values(vec![0, 20]));
        assert_eq!(classify((0..=6).collect(), 0, 6), Field::Every);
    }
}
