//! A tenant's business hours: when its service desk is open, so SLA deadlines of work orders
//! can be counted in *business minutes*.
//!
//! Hours are local wall-clock intervals per weekday in the tenant's time zone, plus holidays
//! (local dates with no hours at all). Each local day's intervals are converted to UTC instants
//! for that very date, and a business minute is a real elapsed minute inside one of them; so
//! a 09:00–17:00 day is 480 minutes even on a DST change day, and a deadline lands at the
//! local wall-clock time it would without the change. A local time that does not exist (the
//! spring-forward gap) means the first instant after the gap; an ambiguous one (fall-back)
//! the earliest. The JSON shape (`BusinessHoursInput`) is stored inside events forever, so it
//! is a contract.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone as _, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::TimeZone;
use crate::ValidationError;

/// The day keys of the JSON shape, Monday first: the position is the index into
/// `BusinessHours::week`.
pub const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The most holidays a tenant may list: decades of public holidays, yet few enough that a
/// deadline computation stays bounded.
pub const MAX_HOLIDAYS: usize = 500;

/// How many days ahead time is walked: a deadline more than a century away is "never"
/// (`DateTime::<Utc>::MAX_UTC`). This bounds the work any minute count can cause.
const HORIZON_DAYS: usize = 36_525;

/// One stretch of a day when the desk is open, `[start, end)` in local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenInterval {
    pub start: NaiveTime,
    /// `None` is 24:00, the midnight that ends the day, so a day can be open to its very end.
    pub end: Option<NaiveTime>,
}

impl OpenInterval {
    fn start_seconds(&self) -> u32 {
        self.start.num_seconds_from_midnight()
    }

    fn end_seconds(&self) -> u32 {
        self.end.map_or(86_400, |t| t.num_seconds_from_midnight())
    }

    /// As people read it: `09:00–24:00`.
    fn label(&self) -> String {
        format!("{}–{}", clock_text(Some(self.start)), clock_text(self.end))
    }
}

/// When a tenant's desk is open. Build it with `parse` (or `standard`), which guarantees at
/// least one open interval a week, sorted non-overlapping intervals and at most
/// `MAX_HOLIDAYS` holidays. (De)serialises as the `BusinessHoursInput` JSON shape.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    pub time_zone: TimeZone,
    /// Index 0 is Monday, 6 Sunday; each day's intervals sorted and non-overlapping.
    pub week: [Vec<OpenInterval>; 7],
    /// Local dates with no business hours at all.
    pub holidays: BTreeSet<NaiveDate>,
}

/// The raw JSON shape, also the API body and what is stored in events:
/// `{"time_zone": "America/New_York", "week": {"mon": [["09:00", "17:00"]]},
/// "holidays": ["2026-11-26"]}`. Times are `HH:MM`, `24:00` ending a day; days are `mon`
/// to `sun`; dates are `YYYY-MM-DD`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursInput {
    pub time_zone: String,
    /// Written in `mon`..`sun` order (a map's own order would be alphabetical).
    #[serde(default, serialize_with = "serialize_week")]
    pub week: BTreeMap<String, Vec<[String; 2]>>,
    #[serde(default)]
    pub holidays: Vec<String>,
}

fn serialize_week<S: Serializer>(
    week: &BTreeMap<String, Vec<[String; 2]>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut days: Vec<_> = week.iter().collect();
    days.sort_by_key(|(key, _)| DAY_KEYS.iter().position(|k| k == key).unwrap_or(7));
    serializer.collect_map(days)
}

/// `HH:MM` from 00:00 to 24:00; `Some(None)` is 24:00.
fn parse_clock(text: &str) -> Option<Option<NaiveTime>> {
    let b = text.trim().as_bytes();
    if b.len() != 5 || b[2] != b':' || !b[..2].iter().chain(&b[3..]).all(u8::is_ascii_digit) {
        return None;
    }
    let number = |i: usize| u32::from(b[i] - b'0') * 10 + u32::from(b[i + 1] - b'0');
    match (number(0), number(3)) {
        (24, 0) => Some(None),
        (h, m) => NaiveTime::from_hms_opt(h, m, 0).map(Some),
    }
}

fn clock_text(time: Option<NaiveTime>) -> String {
    time.map_or_else(|| "24:00".to_owned(), |t| t.format("%H:%M").to_string())
}

/// The UTC instant of a local wall-clock time: the earliest when it is ambiguous, the first
/// instant after the gap when it does not exist.
fn instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return t.with_timezone(&Utc);
    }
    // In a gap: the first local minute that exists is the gap's end. Modern offset changes
    // fall on whole minutes (only some historical local-mean-time offsets have seconds, where
    // this can be up to a minute late), and no gap lasts more than a day.
    let mut later = local;
    for _ in 0..2 * 1440 {
        let Some(next) = later.checked_add_signed(TimeDelta::minutes(1)) else {
            break;
        };
        later = next;
        if let Some(t) = tz.from_local_datetime(&later).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    // Only at the ends of the calendar, where the instant would be out of range.
    if local.year() > 0 {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::MIN_UTC
    }
}

impl BusinessHours {
    /// Checks everything, reporting all problems at once: the time zone ("time_zone"); the
    /// day keys, times (`HH:MM`, 00:00 to 24:00, start before end), overlaps and that the
    /// week has an open interval at all ("week"); the dates and their number ("holidays").
    /// Duplicate holidays are merged.
    pub fn parse(input: &BusinessHoursInput) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let time_zone = TimeZone::parse(&input.time_zone).map_err(|e| errors.push(e));
        let mut week: [Vec<OpenInterval>; 7] = Default::default();
        let mut issues = Vec::new(); // with the week
        for (key, raw) in &input.week {
            let Some(day) = DAY_KEYS.iter().position(|k| k == key) else {
                issues.push(format!("{key:?} is not a day; use mon to sun"));
                continue;
            };
            let mut intervals = Vec::new();
            for [start_text, end_text] in raw {
                let (start, end) = (parse_clock(start_text), parse_clock(end_text));
                for (text, parsed) in [(start_text, start), (end_text, end)] {
                    if parsed.is_none() {
                        issues.push(format!("{key}: {text:?} is not a time written HH:MM"));
                    }
                }
                match (start, end) {
                    (Some(None), _) => issues.push(format!("{key}: nothing starts at 24:00")),
                    (Some(Some(start)), Some(end)) => {
                        let interval = OpenInterval { start, end };
                        if interval.start_seconds() < interval.end_seconds() {
                            intervals.push(interval);
                        } else {
                            let label = interval.label();
                            issues.push(format!("{key}: {label} must end after it starts"));
                        }
                    }
                    _ => {}
                }
            }
            intervals.sort_by_key(OpenInterval::start_seconds);
            for pair in intervals.windows(2) {
                if pair[1].start_seconds() < pair[0].end_seconds() {
                    let (first, second) = (pair[0].label(), pair[1].label());
                    issues.push(format!("{key}: {first} and {second} overlap"));
                }
            }
            week[day] = intervals;
        }
        if issues.is_empty() && week.iter().all(Vec::is_empty) {
            issues.push("must have at least one open interval".to_owned());
        }
        errors.extend(issues.into_iter().map(|p| ValidationError::new("week", p)));
        let mut holidays = BTreeSet::new();
        for raw in &input.holidays {
            let text = raw.trim();
            match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(date) if text.len() == 10 => {
                    holidays.insert(date);
                }
                _ => errors.push(ValidationError::new(
                    "holidays",
                    format!("{raw:?} is not a date written YYYY-MM-DD"),
                )),
            }
        }
        if holidays.len() > MAX_HOLIDAYS {
            errors.push(ValidationError::new(
                "holidays",
                format!("must be at most {MAX_HOLIDAYS} dates"),
            ));
        }
        match time_zone {
            Ok(time_zone) if errors.is_empty() => Ok(Self {
                time_zone,
                week,
                holidays,
            }),
            _ => Err(errors),
        }
    }

    /// Monday to Friday 09:00–17:00 in the given zone, no holidays: what a tenant has until
    /// it sets its own.
    pub fn standard(time_zone: TimeZone) -> Self {
        let (start, end) = (
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(17, 0, 0),
        );
        let week = std::array::from_fn(|day| match day {
            0..=4 => vec![OpenInterval { start, end }],
            _ => Vec::new(),
        });
        Self {
            time_zone,
            week,
            holidays: BTreeSet::new(),
        }
    }

    /// The instant `minutes` business minutes after `start`. Outside hours the clock starts
    /// at the next opening, so 0 minutes is `start` itself when open, else the next opening;
    /// an end of a day's hours is reached, not skipped (16:00 + 60 is 17:00, not 09:00 the next
    /// day). Seconds of `start` are kept. More than a century away (or if hand-built hours are
    /// never open) the answer is `DateTime::<Utc>::MAX_UTC`, "never".
    pub fn add_minutes(&self, start: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
        let mut left = TimeDelta::minutes(i64::from(minutes));
        for day in self.days_from(start) {
            for (open, close) in self.day_intervals(day) {
                let from = open.max(start);
                if close <= from {
                    continue;
                }
                if left <= close - from {
                    return from + left;
                }
                left -= close - from;
            }
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// Business minutes in `[from, to)`, whole minutes rounded down; 0 if `to <= from`.
    /// Counting stops a century after `from`, as `add_minutes` does.
    pub fn minutes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
        if to <= from {
            return 0;
        }
        let last_day = self
            .local_day(to)
            .checked_add_days(Days::new(2))
            .unwrap_or(NaiveDate::MAX);
        let mut total = TimeDelta::zero();
        for day in self.days_from(from).take_while(|d| *d <= last_day) {
            for (open, close) in self.day_intervals(day) {
                let (a, b) = (open.max(from), close.min(to));
                if b > a {
                    total += b - a;
                }
            }
        }
        u32::try_from(total.num_minutes()).unwrap_or(u32::MAX)
    }

    /// Whether `at` is inside business hours (an interval's end is already closed).
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let mut days = self.days_from(at).take(3); // the day before, the day and the day after
        days.any(|day| {
            self.day_intervals(day)
                .any(|(open, close)| open <= at && at < close)
        })
    }

    /// Back to the JSON shape (for GET and the settings form): only days with intervals,
    /// times `HH:MM` (`24:00` ending a day), holidays in date order.
    pub fn to_input(&self) -> BusinessHoursInput {
        let week = DAY_KEYS
            .iter()
            .zip(&self.week)
            .filter(|(_, intervals)| !intervals.is_empty())
            .map(|(key, intervals)| {
                let pairs = intervals
                    .iter()
                    .map(|i| [clock_text(Some(i.start)), clock_text(i.end)])
                    .collect();
                ((*key).to_owned(), pairs)
            })
            .collect();
        BusinessHoursInput {
            time_zone: self.time_zone.to_string(),
            week,
            holidays: self.holidays.iter().map(NaiveDate::to_string).collect(),
        }
    }

    /// `at`'s local date; saturating at the ends of the calendar, where a far-off "never"
    /// (`DateTime::<Utc>::MAX_UTC`) has no local date chrono can hold.
    fn local_day(&self, at: DateTime<Utc>) -> NaiveDate {
        let utc = at.naive_utc();
        let offset = self.time_zone.tz().offset_from_utc_datetime(&utc).fix();
        let shift = TimeDelta::seconds(offset.local_minus_utc().into());
        match utc.checked_add_signed(shift) {
            Some(local) => local.date(),
            None if shift > TimeDelta::zero() => NaiveDate::MAX,
            None => NaiveDate::MIN,
        }
    }

    /// The local days to walk from `at` on, in order. It starts the day before `at`'s local
    /// date, whose hours can reach past `at` when clocks fall back across midnight.
    fn days_from(&self, at: DateTime<Utc>) -> impl Iterator<Item = NaiveDate> {
        let day = self.local_day(at);
        day.pred_opt().unwrap_or(day).iter_days().take(HORIZON_DAYS)
    }

    /// A local day's open intervals as UTC instants, in order; none on a holiday, and none
    /// of zero length (an interval swallowed by a DST gap).
    fn day_intervals(
        &self,
        day: NaiveDate,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let tz = self.time_zone.tz();
        let intervals: &[OpenInterval] = if self.holidays.contains(&day) {
            &[]
        } else {
            &self.week[day.weekday().num_days_from_monday() as usize]
        };
        intervals.iter().filter_map(move |interval| {
            let end = match interval.end {
                Some(end) => day.and_time(end),
                None => day.succ_opt()?.and_time(NaiveTime::MIN),
            };
            let (open, close) = (instant(tz, day.and_time(interval.start)), instant(tz, end));
            (close > open).then_some((open, close))
        })
    }
}

impl Serialize for BusinessHours {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_input().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BusinessHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = BusinessHoursInput::deserialize(deserializer)?;
        Self::parse(&input).map_err(|errors| {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            serde::de::Error::custom(format!("invalid business hours: {}", problems.join("; ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    fn between(hours: &BusinessHours, (from, to): (&str, &str)) -> u32 {
        hours.minutes_between(at(from), at(to))
    }

    fn hours(value: serde_json::Value) -> BusinessHours {
        serde_json::from_value(value).unwrap()
    }

    fn standard(zone: &str) -> BusinessHours {
        BusinessHours::standard(TimeZone::parse(zone).unwrap())
    }

    /// Mon–Fri 09–17 New York with Thanksgiving 2026 (Thu 26 Nov) off.
    fn new_york() -> BusinessHours {
        let mut hours = standard("America/New_York");
        hours.holidays.insert("2026-11-26".parse().unwrap());
        hours
    }

    /// New York open on Sundays from 00:00 to 24:00, and on Mondays as given.
    fn sundays(mon: Option<[&str; 2]>) -> BusinessHours {
        let mut week = json!({"sun": [["00:00", "24:00"]]});
        if let Some(mon) = mon {
            week["mon"] = json!([mon]);
        }
        hours(json!({"time_zone": "America/New_York", "week": week}))
    }

    #[test]
    fn a_deadline_skips_the_weekend_and_holidays() {
        let ny = new_york();
        // Fri 16:00 EST: 60 min to 17:00, the other 60 from Mon 09:00 → Mon 10:00 EST = 15:00Z.
        let due = ny.add_minutes(at("2026-11-20T16:00:00-05:00"), 120);
        assert_eq!(due, at("2026-11-23T10:00:00-05:00"));
        assert_eq!(due, at("2026-11-23T15:00:00Z"));
        // Wed 16:30: 30 min to 17:00; Thu 26th is a holiday; 30 more from Fri 09:00 → 09:30.
        let due = ny.add_minutes(at("2026-11-25T16:30:00-05:00"), 60);
        assert_eq!(due, at("2026-11-27T09:30:00-05:00"));
        // Without the holiday: Thu 09:30.
        let plain = standard("America/New_York");
        let due = plain.add_minutes(at("2026-11-25T16:30:00-05:00"), 60);
        assert_eq!(due, at("2026-11-26T09:30:00-05:00"));
    }

    #[test]
    fn spring_forward_keeps_local_deadlines() {
        // New York springs forward Sun 2026-03-08 02:00 EST → 03:00 EDT.
        // Fri 16:00 EST (21:00Z) + 60 to 17:00, + 60 from Mon 09:00 EDT → 10:00 EDT = 14:00Z.
        let ny = standard("America/New_York");
        let due = ny.add_minutes(at("2026-03-06T16:00:00-05:00"), 120);
        assert_eq!(due, at("2026-03-09T10:00:00-04:00"));
        assert_eq!(due, at("2026-03-09T14:00:00Z"));
    }

    #[test]
    fn a_whole_day_open_across_the_gap_counts_real_minutes() {
        // Sun 2026-03-08 runs 00:00 EST (05:00Z) to Mon 00:00 EDT (04:00Z): 23 h = 1380 min.
        let start = at("2026-03-08T00:00:00-05:00");
        let nine_to_five = sundays(Some(["09:00", "17:00"]));
        let sunday = ("2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00");
        assert_eq!(between(&nine_to_five, sunday), 1380);
        // 1440 − 1380 = 60 left, counted from Mon 09:00 EDT → Mon 10:00 EDT (14:00Z).
        let due = nine_to_five.add_minutes(start, 24 * 60);
        assert_eq!(due, at("2026-03-09T10:00:00-04:00"));
        // With Monday open from midnight, the 60 left run Mon 00:00 → 01:00 EDT (05:00Z).
        let due = sundays(Some(["00:00", "24:00"])).add_minutes(start, 24 * 60);
        assert_eq!(due, at("2026-03-09T01:00:00-04:00"));
        assert_eq!(due, at("2026-03-09T05:00:00Z"));
    }

    #[test]
    fn gap_and_ambiguous_times_map_to_the_rule() {
        let sunday = |from: &str, to: &str| {
            hours(json!({"time_zone": "America/New_York", "week": {"sun": [[from, to]]}}))
        };
        // 02:30 does not exist on 2026-03-08: the interval opens at the gap's end, 03:00 EDT
        // (07:00Z), and lasts to 05:00 EDT (09:00Z): 120 min.
        let gap = sunday("02:30", "05:00");
        let opens = gap.add_minutes(at("2026-03-07T12:00:00Z"), 0);
        assert_eq!(opens, at("2026-03-08T03:00:00-04:00"));
        assert_eq!(
            between(&gap, ("2026-03-07T12:00:00Z", "2026-03-09T00:00:00Z")),
            120
        );
        // 01:30 happens twice on 2026-11-01: the earliest is 01:30 EDT (05:30Z); the interval
        // ends 03:00 EST (08:00Z): 150 min.
        let overlap = sunday("01:30", "03:00");
        let opens = overlap.add_minutes(at("2026-10-31T12:00:00Z"), 0);
        assert_eq!(opens, at("2026-11-01T01:30:00-04:00"));
        assert_eq!(
            between(&overlap, ("2026-10-31T12:00:00Z", "2026-11-02T00:00:00Z")),
            150
        );
        assert!(overlap.is_open(at("2026-11-01T01:15:00-05:00"))); // the second 01:15
        assert!(!overlap.is_open(at("2026-11-01T03:00:00-05:00")));
    }

    #[test]
    fn fall_back_and_european_changes_keep_local_deadlines() {
        // New York falls back Sun 2026-11-01: Fri 16:00 EDT (20:00Z) + 120
        // → Mon 10:00 EST (15:00Z).
        let ny = standard("America/New_York");
        let due = ny.add_minutes(at("2026-10-30T16:00:00-04:00"), 120);
        assert_eq!(due, at("2026-11-02T15:00:00Z"));
        let paris = standard("Europe/Paris");
        // Paris springs forward Sun 2026-03-29: Fri 16:00 CET (15:00Z) + 120
        // → Mon 10:00 CEST (08:00Z).
        let due = paris.add_minutes(at("2026-03-27T16:00:00+01:00"), 120);
        assert_eq!(due, at("2026-03-30T08:00:00Z"));
        // Paris falls back Sun 2026-10-25: Fri 16:00 CEST (14:00Z) + 120
        // → Mon 10:00 CET (09:00Z).
        let due = paris.add_minutes(at("2026-10-23T16:00:00+02:00"), 120);
        assert_eq!(due, at("2026-10-26T09:00:00Z"));
        // Fri 27 Mar 09:00 CET + 2400 = 480 Friday + 4 × 480 (Mon 30 to Thu 2 Apr)
        // → Thu 17:00 CEST (15:00Z): the same local hour as before the change.
        let due = paris.add_minutes(at("2026-03-27T09:00:00+01:00"), 2400);
        assert_eq!(due, at("2026-04-02T15:00:00Z"));
        // The week of the autumn change is still 5 × 480.
        let week = ("2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00");
        assert_eq!(between(&paris, week), 2400);
    }

    #[test]
    fn the_clock_starts_at_the_next_opening() {
        let ny = new_york();
        let add = |start: &str, minutes| ny.add_minutes(at(start), minutes);
        // Sat 10:00 + 30 → Mon 09:30; Tue 07:00 + 30 → Tue 09:30.
        let due = add("2026-11-21T10:00:00-05:00", 30);
        assert_eq!(due, at("2026-11-23T09:30:00-05:00"));
        let due = add("2026-11-24T07:00:00-05:00", 30);
        assert_eq!(due, at("2026-11-24T09:30:00-05:00"));
        // Tue 17:00 is closed: + 1 → Wed 09:01.
        let due = add("2026-11-24T17:00:00-05:00", 1);
        assert_eq!(due, at("2026-11-25T09:01:00-05:00"));
        // 0 minutes from Tue 20:00 → Wed 09:00; from Tue 10:00 → Tue 10:00 itself.
        let due = add("2026-11-24T20:00:00-05:00", 0);
        assert_eq!(due, at("2026-11-25T09:00:00-05:00"));
        let due = add("2026-11-24T10:00:00-05:00", 0);
        assert_eq!(due, at("2026-11-24T10:00:00-05:00"));
        // Tue 16:00 + 60 reaches 17:00 itself; seconds are kept: 09:00:30 + 60 → 10:00:30.
        let due = add("2026-11-24T16:00:00-05:00", 60);
        assert_eq!(due, at("2026-11-24T17:00:00-05:00"));
        let due = add("2026-11-24T09:00:30-05:00", 60);
        assert_eq!(due, at("2026-11-24T10:00:30-05:00"));
        assert!(ny.is_open(at("2026-11-24T09:00:00-05:00")));
        assert!(ny.is_open(at("2026-11-24T16:59:59-05:00")));
        assert!(!ny.is_open(at("2026-11-24T17:00:00-05:00")));
        assert!(!ny.is_open(at("2026-11-21T12:00:00-05:00"))); // Saturday
        assert!(!ny.is_open(at("2026-11-26T12:00:00-05:00"))); // Thanksgiving
    }

    #[test]
    fn a_split_day_skips_lunch() {
        let split = hours(json!({"time_zone": "America/New_York",
            "week": {"tue": [["13:00", "17:00"], ["09:00", "12:00"]]}}));
        // Tue 11:30: 30 min to 12:00, 30 more from 13:00 → 13:30.
        let due = split.add_minutes(at("2026-11-24T11:30:00-05:00"), 60);
        assert_eq!(due, at("2026-11-24T13:30:00-05:00"));
        assert!(!split.is_open(at("2026-11-24T12:30:00-05:00")));
        // 3 h + 4 h.
        assert_eq!(
            between(&split, ("2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z")),
            420
        );
    }

    #[test]
    fn minutes_between_sums_the_open_time() {
        let ny = new_york();
        // Fri 16:00 → Mon 10:00: 60 Friday + 60 Monday.
        let weekend = ("2026-11-20T16:00:00-05:00", "2026-11-23T10:00:00-05:00");
        assert_eq!(between(&ny, weekend), 120);
        // Wed 16:30 → Fri 09:30 across Thanksgiving: 30 + 0 + 30.
        let thanksgiving = ("2026-11-25T16:30:00-05:00", "2026-11-27T09:30:00-05:00");
        assert_eq!(between(&ny, thanksgiving), 60);
        // Mon 2026-03-02 → Mon 2026-03-09 across the spring change: 5 × 480.
        let spring = ("2026-03-02T00:00:00-05:00", "2026-03-09T00:00:00-04:00");
        assert_eq!(between(&ny, spring), 2400);
        // Rounded down; empty or backwards ranges are 0.
        let nine = "2026-11-24T09:00:00-05:00";
        assert_eq!(between(&ny, (nine, "2026-11-24T09:00:59-05:00")), 0);
        assert_eq!(between(&ny, (nine, nine)), 0);
        assert_eq!(between(&ny, (nine, "2026-11-23T09:00:00-05:00")), 0);
        // A Sunday open all day on the fall-back date is 25 h = 1500 min.
        let fall_back = ("2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z");
        assert_eq!(between(&sundays(None), fall_back), 1500);
    }

    #[test]
    fn a_pause_moves_the_deadline_by_the_business_time_stopped() {
        let ny = new_york();
        // Due Tue 15:00, paused Tue 11:00: 240 business minutes were left.
        let paused = ("2026-11-24T11:00:00-05:00", "2026-11-24T15:00:00-05:00");
        let remaining = between(&ny, paused);
        assert_eq!(remaining, 240);
        // Resumed Wed 10:00 + 240 → Wed 14:00.
        let due = ny.add_minutes(at("2026-11-25T10:00:00-05:00"), remaining);
        assert_eq!(due, at("2026-11-25T14:00:00-05:00"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let input: BusinessHoursInput = serde_json::from_value(json!({
            "time_zone": "Mars/Olympus",
            "week": {"monday": [["09:00", "17:00"]], "tue": [["09:00", "25:00"]],
                     "wed": [["17:00", "09:00"]],
                     "thu": [["09:00", "12:00"], ["11:00", "13:00"]]},
            "holidays": ["2026-13-01", "2026-11-26"]}))
        .unwrap();
        let errors = BusinessHours::parse(&input).unwrap_err();
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 6, "{all:#?}");
        for needle in [
            "time_zone: \"Mars/Olympus\" is not an IANA time zone",
            "week: \"monday\" is not a day; use mon to sun",
            "week: tue: \"25:00\" is not a time written HH:MM",
            "week: wed: 17:00–09:00 must end after it starts",
            "week: thu: 09:00–12:00 and 11:00–13:00 overlap",
            "holidays: \"2026-13-01\" is not a date written YYYY-MM-DD",
        ] {
            let found = all.iter().any(|e| e.starts_with(needle));
            assert!(found, "{needle} not in {all:#?}");
        }
    }

    #[test]
    fn parse_checks_times_weeks_and_holidays() {
        let parse = |value: serde_json::Value| {
            BusinessHours::parse(&serde_json::from_value(value).unwrap())
        };
        let monday = |interval: [&str; 2], holidays: serde_json::Value| {
            parse(json!({"time_zone": "UTC", "week": {"mon": [interval]}, "holidays": holidays}))
        };
        let no_hours = vec![ValidationError::new(
            "week",
            "must have at least one open interval",
        )];
        assert_eq!(parse(json!({"time_zone": "UTC"})).unwrap_err(), no_hours);
        let empty_day = parse(json!({"time_zone": "UTC", "week": {"sat": []}}));
        assert_eq!(empty_day.unwrap_err(), no_hours);
        let all_day = monday(["00:00", "24:00"], json!([])).unwrap().week;
        let open = all_day[0][0]; // 24:00 is the end of the day
        assert_eq!((open.start, open.end), (NaiveTime::MIN, None));
        assert!(all_day[1..].iter().all(Vec::is_empty));
        for bad in ["24:00-24:00", "09:00-24:30", "9:00-17:00", "09:60-17:00"] {
            let (start, end) = bad.split_once('-').unwrap();
            assert!(monday([start, end], json!([])).is_err(), "{bad} accepted");
        }
        // Touching intervals do not overlap.
        let touching = json!({"mon": [["09:00", "12:00"], ["12:00", "17:00"]]});
        assert!(parse(json!({"time_zone": "UTC", "week": touching})).is_ok());
        // Duplicates merge; more than MAX_HOLIDAYS distinct dates are refused.
        let merged = monday(["09:00", "17:00"], json!(vec!["2026-12-25"; 600])).unwrap();
        assert_eq!(merged.holidays.len(), 1);
        let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        let many: Vec<String> = first.iter_days().take(501).map(|d| d.to_string()).collect();
        let too_many = monday(["09:00", "17:00"], json!(many)).unwrap_err();
        let limit = ValidationError::new("holidays", "must be at most 500 dates");
        assert_eq!(too_many, [limit]);
        // Unknown fields are refused, and so is a bad value inside a stored event.
        let unknown = json!({"time_zone": "UTC", "weeks": {}});
        assert!(serde_json::from_value::<BusinessHoursInput>(unknown).is_err());
        let bad = serde_json::from_value::<BusinessHours>(json!({"time_zone": "Nowhere"}));
        assert!(bad.unwrap_err().to_string().contains("time_zone"));
    }

    #[test]
    fn the_json_shape_round_trips() {
        let written = hours(json!({"time_zone": "America/New_York",
            "week": {"tue": [["13:00", "17:00"], ["09:00", "12:00"]],
                     "mon": [["09:00", "17:00"]], "sun": [["00:00", "24:00"]]},
            "holidays": ["2026-12-25", "2026-11-26", "2026-12-25"]}));
        let canonical = concat!(
            r#"{"time_zone":"America/New_York","week":{"mon":[["09:00","17:00"]],"#,
            r#""tue":[["09:00","12:00"],["13:00","17:00"]],"sun":[["00:00","24:00"]]},"#,
            r#""holidays":["2026-11-26","2026-12-25"]}"#
        );
        assert_eq!(serde_json::to_string(&written).unwrap(), canonical);
        let again: BusinessHours = serde_json::from_str(canonical).unwrap();
        assert_eq!(again, written);
        assert_eq!(serde_json::to_string(&again).unwrap(), canonical);
        let day = json!([["09:00", "17:00"]]);
        let days = json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day});
        let shape = json!({"time_zone": "UTC", "week": days, "holidays": []});
        assert_eq!(serde_json::to_value(standard("UTC")).unwrap(), shape);
    }

    #[test]
    fn adding_and_counting_agree_over_a_year() {
        let zones = [
            hours(json!({"time_zone": "America/New_York",
                "week": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]],
                         "wed": [["00:00", "24:00"]], "fri": [["08:30", "16:45"]],
                         "sun": [["01:30", "03:00"]]},
                "holidays": ["2026-07-03", "2026-11-25", "2026-12-25"]})),
            standard("Europe/Paris"),
            standard("Australia/Lord_Howe"), // a half-hour DST change
        ];
        let counts = [0, 1, 59, 60, 61, 479, 480, 481, 1000, 2400, 10_000];
        for hours in &zones {
            let mut start = at("2026-01-01T00:00:00Z");
            while start < at("2027-01-01T00:00:00Z") {
                let mut previous = hours.add_minutes(start, 0);
                assert!(previous >= start);
                assert_eq!(previous == start, hours.is_open(start), "{start}");
                for m in counts {
                    let due = hours.add_minutes(start, m);
                    assert_eq!(hours.minutes_between(start, due), m, "{start} + {m}");
                    assert!(due >= previous, "{start} + {m} went backwards");
                    previous = due;
                }
                start += TimeDelta::seconds(7 * 3600 + 13 * 60 + 17);
            }
        }
    }

    #[test]
    fn long_deadlines_are_walked_a_day_at_a_time() {
        let ny = new_york();
        let start = at("2026-01-05T09:00:00-05:00");
        let begun = std::time::Instant::now();
        let due = ny.add_minutes(start, 100_000);
        let took = begun.elapsed();
        assert_eq!(ny.minutes_between(start, due), 100_000);
        // Generous even for an unoptimised build; minute-by-minute would be far slower.
        assert!(took < std::time::Duration::from_millis(200), "{took:?}");
        // Absurd counts saturate rather than run for ever.
        assert_eq!(ny.add_minutes(start, u32::MAX), DateTime::<Utc>::MAX_UTC);
        // "Never" and the calendar's ends do not panic, even where local time overflows.
        let (never, dawn) = (DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC);
        for zone in ["Pacific/Kiritimati", "Etc/GMT+12"] {
            let hours = standard(zone);
            assert_eq!(hours.add_minutes(never, 5), never);
            assert!(!hours.is_open(never) && !hours.is_open(dawn));
            assert!(hours.add_minutes(dawn, 5) > dawn);
            assert!(hours.minutes_between(start, never) > 100_000);
        }
    }
}
