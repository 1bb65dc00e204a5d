//! Cron schedules, without storage: parsing an expression in a time zone, listing fire times,
//! and deciding which due fire times to enqueue under a catch-up policy.
//!
//! Expressions have five fields (minute granularity) or six (a leading seconds field), plus
//! the usual aliases (`@hourly`, ...), parsed by `croner`. Time zones are IANA names; daylight
//! saving gaps and folds are croner's to resolve. Times are milliseconds since the epoch.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

/// The most fire times one catch-up enqueues (`all`); older ones are skipped.
pub const MAX_CATCH_UP: usize = 1_000;

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: Tz,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronSpecError {
    #[error(
        "`{expression}` is not a cron expression: {message}. Use five fields (minute hour day-of-month month day-of-week) or six with a leading seconds field, e.g. `*/10 * * * * *`"
    )]
    Expression { expression: String, message: String },
    #[error("`{0}` is not an IANA time zone; use a name such as `UTC`, `Europe/Paris` or `America/New_York`")]
    Zone(String),
    #[error("`{0}` never fires")]
    NeverFires(String),
}

impl CronSpec {
    pub fn parse(expression: &str, zone: &str) -> Result<CronSpec, CronSpecError> {
        let zone: Tz = zone.parse().map_err(|_| CronSpecError::Zone(zone.to_owned()))?;
        let cron =
            CronParser::builder().seconds(Seconds::Optional).build().parse(expression).map_err(|e| {
                CronSpecError::Expression { expression: expression.to_owned(), message: e.to_string() }
            })?;
        let spec = CronSpec { cron, zone };
        if spec.next_after(crate::time::now_ms()).is_none() {
            return Err(CronSpecError::NeverFires(expression.to_owned()));
        }
        Ok(spec)
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = self.at(after)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?.timestamp_millis();
        crate::time::check(next).ok()
    }

    /// The last fire time at or before `at`.
    pub fn latest_at_or_before(&self, at: i64) -> Option<i64> {
        let start = self.at(at)?;
        self.cron.find_previous_occurrence(&start, true).ok().map(|t| t.timestamp_millis())
    }

    /// Up to `count` fire times strictly after `after`.
    pub fn upcoming(&self, after: i64, count: usize) -> Vec<i64> {
        let mut times = Vec::with_capacity(count);
        let mut cursor = after;
        while times.len() < count {
            match self.next_after(cursor) {
                Some(next) => {
                    times.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        times
    }

    /// `ms` in this schedule's zone, for display.
    pub fn local(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.at(ms)
    }

    /// A sentence describing when the expression fires.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.zone.timestamp_millis_opt(ms).single()
    }
}

/// What happens to fire times that passed while no scheduler ran (downtime, a paused node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Only the most recent due fire time is enqueued, and only when it is younger than the
    /// window: a tick that is merely late fires, missed ones are dropped.
    #[default]
    Skip,
    /// The most recent due fire time is enqueued however old it is; older ones are dropped.
    /// (the original design called this policy "one".)
    #[serde(alias = "one")]
    Latest,
    /// Every due fire time within the window is enqueued, oldest first, at most
    /// [`MAX_CATCH_UP`] at once.
    All,
}

/// What happens when a fire time comes while the job of the previous one has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// The fire time is skipped (and logged).
    #[default]
    Skip,
    /// The job is enqueued anyway; runs may overlap.
    Allow,
}

macro_rules! keyword_enum {
    ($ty:ident, $what:literal, $($variant:ident => $name:literal),+) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(format!(concat!("`{}` is not ", $what, "; use one of {}"), text, [$($name),+].join(", "))),
                }
            }
        }
    };
}

keyword_enum!(CatchUp, "a catch-up policy", Skip => "skip", Latest => "latest", All => "all");
keyword_enum!(Overlap, "an overlap policy", Skip => "skip", Allow => "allow");

impl CatchUp {
    /// Accepts `one`, the name the original design gave it, for `latest` too.
    pub fn parse(text: &str) -> Result<CatchUp, String> {
        if text == "one" { Ok(CatchUp::Latest) } else { text.parse() }
    }
}

/// The fire times to enqueue now, oldest first, for a schedule whose next fire time was
/// `next_due` (at or before `now`), and the next fire time to wait for afterwards.
pub fn due_fire_times(
    spec: &CronSpec,
    next_due: i64,
    now: i64,
    policy: CatchUp,
    window: Duration,
) -> (Vec<i64>, Option<i64>) {
    let following = spec.next_after(now);
    if next_due > now {
        return (Vec::new(), Some(next_due));
    }
    let window_start = now.saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
    let latest = spec.latest_at_or_before(now).filter(|t| *t >= next_due);
    let fire = match policy {
        CatchUp::Skip => latest.filter(|t| *t >= window_start).into_iter().collect(),
        CatchUp::Latest => latest.into_iter().collect(),
        CatchUp::All => {
            let mut times = Vec::new();
            let mut cursor = next_due.max(window_start);
            if spec.latest_at_or_before(cursor) == Some(cursor) {
                times.push(cursor);
            }
            while times.len() < MAX_CATCH_UP {
                match spec.next_after(cursor) {
                    Some(next) if next <= now => {
                        times.push(next);
                        cursor = next;
                    }
                    _ => break,
                }
            }
            // When more than MAX_CATCH_UP are due, keep the most recent ones.
            if times.len() == MAX_CATCH_UP {
                let mut recent = Vec::with_capacity(MAX_CATCH_UP);
                let mut at = now;
                while recent.len() < MAX_CATCH_UP {
                    match spec.latest_at_or_before(at) {
                        Some(t) if t >= next_due.max(window_start) => {
                            recent.push(t);
                            at = t - 1;
                        }
                        _ => break,
                    }
                }
                recent.reverse();
                times = recent;
            }
            times
        }
    };
    (fire, following)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
    }

    #[test]
    fn seconds_fields_and_zones_give_the_right_instants() {
        let every_ten = CronSpec::parse("*/10 * * * * *", "UTC").unwrap();
        assert_eq!(every_ten.next_after(ms("2026-01-01T00:00:03Z")), Some(ms("2026-01-01T00:00:10Z")));
        let nine_in_paris = CronSpec::parse("0 9 * * *", "Europe/Paris").unwrap();
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(nine_in_paris.next_after(ms("2026-01-15T00:00:00Z")), Some(ms("2026-01-15T08:00:00Z")));
        assert_eq!(nine_in_paris.next_after(ms("2026-07-15T00:00:00Z")), Some(ms("2026-07-15T07:00:00Z")));
        assert_eq!(
            every_ten.upcoming(ms("2026-01-01T00:00:00Z"), 3),
            vec![ms("2026-01-01T00:00:10Z"), ms("2026-01-01T00:00:20Z"), ms("2026-01-01T00:00:30Z")]
        );
    }

    #[test]
    fn bad_expressions_and_zones_say_what_to_write() {
        let error = CronSpec::parse("every minute", "UTC").unwrap_err().to_string();
        assert!(error.contains("five fields"), "{error}");
        let error = CronSpec::parse("* * * * *", "Mars/Olympus").unwrap_err().to_string();
        assert!(error.contains("IANA") && error.contains("Mars/Olympus"), "{error}");
        let error = CronSpec::parse("0 0 30 2 *", "UTC").unwrap_err().to_string();
        assert!(error.contains("never fires"), "{error}");
    }

    #[test]
    fn catch_up_policies_pick_the_due_fire_times() {
        let minutely = CronSpec::parse("0 * * * * *", "UTC").unwrap();
        let missed_from = ms("2026-01-01T10:00:00Z");
        let now = ms("2026-01-01T10:05:30Z");
        let window = Duration::from_secs(150);
        let (skip, next) = due_fire_times(&minutely, missed_from, now, CatchUp::Skip, window);
        assert_eq!(skip, vec![ms("2026-01-01T10:05:00Z")]);
        assert_eq!(next, Some(ms("2026-01-01T10:06:00Z")));
        let (latest, _) = due_fire_times(&minutely, missed_from, now, CatchUp::Latest, Duration::ZERO);
        assert_eq!(latest, vec![ms("2026-01-01T10:05:00Z")]);
        let (all, _) = due_fire_times(&minutely, missed_from, now, CatchUp::All, window);
        assert_eq!(
            all,
            vec![ms("2026-01-01T10:03:00Z"), ms("2026-01-01T10:04:00Z"), ms("2026-01-01T10:05:00Z")]
        );
        let (everything, _) =
            due_fire_times(&minutely, missed_from, now, CatchUp::All, Duration::from_secs(3600));
        assert_eq!(everything.len(), 6);
        assert_eq!(everything[0], missed_from);
        // Too old for skip's window: nothing fires, the schedule moves on.
        let (none, next) =
            due_fire_times(&minutely, missed_from, now, CatchUp::Skip, Duration::from_secs(10));
        assert!(none.is_empty());
        assert_eq!(next, Some(ms("2026-01-01T10:06:00Z")));
        // Not yet due.
        let (none, next) = due_fire_times(&minutely, now + 1000, now, CatchUp::All, window);
        assert!(none.is_empty());
        assert_eq!(next, Some(now + 1000));
    }

    #[test]
    fn catch_up_all_keeps_the_most_recent_when_too_many_are_due() {
        let every_second = CronSpec::parse("* * * * * *", "UTC").unwrap();
        let now = ms("2026-01-02T00:00:00Z");
        let (all, _) =
            due_fire_times(&every_second, now - 86_400_000, now, CatchUp::All, Duration::from_secs(86_400));
        assert_eq!(all.len(), MAX_CATCH_UP);
        assert_eq!(*all.last().unwrap(), now);
        assert!(all.windows(2).all(|pair| pair[1] - pair[0] == 1000));
    }

    #[test]
    fn policies_parse_with_their_aliases() {
        assert_eq!(CatchUp::parse("one"), Ok(CatchUp::Latest));
        assert_eq!("allow".parse::<Overlap>(), Ok(Overlap::Allow));
        assert!("sometimes".parse::<Overlap>().unwrap_err().contains("skip, allow"));
    }
}
