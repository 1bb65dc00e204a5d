//! The clock and ids. Times as Ratchet keeps them: integer milliseconds since the Unix epoch, within one range
//! that every entry point accepts (CLI, REST, GraphQL, schedules) and every reader can show.
//! A value stored outside it (by an older version, or by hand) is shown clamped to the range,
//! never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The earliest time accepted: 1970-01-01T00:00:00Z.
pub const MIN_MS: i64 = 0;
/// The latest time accepted: 9999-12-31T23:59:59.999Z, the last an RFC 3339 time can write.
pub const MAX_MS: i64 = 253_402_300_799_999;
/// The range, as messages state it.
pub const RANGE: &str = "from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    #[error("`{0}` is not an RFC 3339 time such as 2026-11-26T09:00:00Z")]
    NotRfc3339(String),
    #[error("{0} is outside the times Ratchet accepts ({RANGE})")]
    OutOfRange(String),
    #[error("`{0}` is neither a time such as 2026-11-26T09:00:00Z nor a duration ago such as 30m, 1h or 7d")]
    NotABound(String),
}

/// A new id for a job, an execution or a schedule: a UUID v7, whose leading bits are the time.
/// Rows made one after another get ids in order, so each insert appends to the end of the
/// primary-key index (one page, likely the one the last insert wrote) instead of a random
/// page of it, and ids sort by creation.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// An RFC 3339 time (`2026-11-26T09:00:00Z`), within the range.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimeError> {
    // humantime refuses years before 1970 as it refuses malformed text: tell them apart.
    let year: Option<u32> =
        text.get(..4).filter(|_| text.as_bytes().get(4) == Some(&b'-')).and_then(|y| y.parse().ok());
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| match year {
        Some(year) if year < 1970 => TimeError::OutOfRange(text.to_owned()),
        _ => TimeError::NotRfc3339(text.to_owned()),
    })?;
    let since = at.duration_since(UNIX_EPOCH).map_err(|_| TimeError::OutOfRange(text.to_owned()))?;
    i64::try_from(since.as_millis())
        .ok()
        .filter(|ms| *ms <= MAX_MS)
        .ok_or_else(|| TimeError::OutOfRange(text.to_owned()))
}

/// A bound of a time range, as lists take it: an RFC 3339 time, or a duration (`30m`, `1h`,
/// `7d`) meaning that long before `now`.
pub fn parse_bound(text: &str, now: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        let ago = i64::try_from(ago.as_millis()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(ago).max(MIN_MS));
    }
    match parse_rfc3339(text) {
        Err(TimeError::NotRfc3339(_)) => Err(TimeError::NotABound(text.to_owned())),
        parsed => parsed,
    }
}

/// Why a time range's bounds cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// `which` (`since` or `until`) is not a bound.
    #[error("{which}: {error}")]
    Bound { which: &'static str, error: TimeError },
    /// The bounds leave no time between them.
    #[error("since ({}) must be before until ({})", format(*.since), format(*.until))]
    Empty { since: i64, until: i64 },
}

/// The bounds of a list's time filter, each [`parse_bound`] (an empty one is no bound), with
/// some time between them.
pub fn parse_range(
    since: Option<&str>,
    until: Option<&str>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>), RangeError> {
    let bound = |which: &'static str, text: Option<&str>| {
        text.filter(|t| !t.trim().is_empty())
            .map(|t| parse_bound(t, now))
            .transpose()
            .map_err(|error| RangeError::Bound { which, error })
    };
    let (since, until) = (bound("since", since)?, bound("until", until)?);
    match (since, until) {
        (Some(since), Some(until)) if since >= until => Err(RangeError::Empty { since, until }),
        _ => Ok((since, until)),
    }
}

/// `delay` after `now`, within the range.
pub fn after(now: i64, delay: Duration) -> Result<i64, TimeError> {
    i64::try_from(delay.as_millis())
        .ok()
        .and_then(|delay| now.checked_add(delay))
        .filter(|ms| (MIN_MS..=MAX_MS).contains(ms))
        .ok_or_else(|| TimeError::OutOfRange(format!("{} from now", humantime::format_duration(delay))))
}

/// `ms` when it is within the range.
pub fn check(ms: i64) -> Result<i64, TimeError> {
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(TimeError::OutOfRange(format!("{ms} ms since 1970")))
    }
}

/// `ms` as an RFC 3339 time with milliseconds; clamped to the range.
pub fn format(ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms.clamp(MIN_MS, MAX_MS) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_is_a_time_or_a_duration_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_bound("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_bound(" 7d ", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_bound("1970-01-01T00:00:01Z", now), Ok(1_000));
        assert_eq!(parse_bound("100000000d", now), Ok(MIN_MS));
        assert_eq!(parse_bound("yesterday", now), Err(TimeError::NotABound("yesterday".into())));
        assert!(matches!(parse_bound("1969-12-31T00:00:00Z", now), Err(TimeError::OutOfRange(_))));
    }

    #[test]
    fn a_range_names_its_bad_bound_and_needs_time_between() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_range(Some("2h"), Some(" "), now), Ok((Some(now - 7_200_000), None)));
        assert_eq!(
            parse_range(Some("1h"), Some("soon"), now),
            Err(RangeError::Bound { which: "until", error: TimeError::NotABound("soon".into()) })
        );
        let empty = parse_range(Some("1h"), Some("2h"), now).unwrap_err();
        assert!(
            empty.to_string().starts_with("since (") && matches!(empty, RangeError::Empty { .. }),
            "{empty}"
        );
    }

    #[test]
    fn times_stay_in_one_range_and_any_stored_value_can_be_shown() {
        assert_eq!(parse_rfc3339("2026-11-26T09:00:00Z"), Ok(1_795_683_600_000));
        assert_eq!(format(MAX_MS), "9999-12-31T23:59:59.999Z");
        assert_eq!(format(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(format(i64::MIN), "1970-01-01T00:00:00.000Z");
        assert!(matches!(parse_rfc3339("1969-12-31T23:59:59Z"), Err(TimeError::OutOfRange(_))));
        assert!(matches!(parse_rfc3339("next tuesday"), Err(TimeError::NotRfc3339(_))));
        assert!(matches!(after(0, Duration::from_secs(u64::MAX)), Err(TimeError::OutOfRange(_))));
        assert!(matches!(
            after(now_ms(), Duration::from_secs(500_000 * 365 * 86_400)),
            Err(TimeError::OutOfRange(_))
        ));
        assert_eq!(after(1000, Duration::from_secs(1)), Ok(2000));
        assert!(check(MAX_MS + 1).is_err() && check(-1).is_err());
    }
}
