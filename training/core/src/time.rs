//! Hour arithmetic and the command-line time bounds.
//!
//! Everything inside volcast indexes time by *close hour*: the number of whole hours since the Unix
//! epoch at which a candle closes (`open_time + 1h`), as SPEC labels candles by their close time.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the UTC day holding `ms` (00:00), Unix milliseconds: the daily origin at or
/// before it.
#[must_use]
pub fn day_origin(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// Close hour of the candle that opens at `open_time_ms`.
#[must_use]
pub fn close_hour_of_open_ms(open_time_ms: i64) -> i64 {
    open_time_ms.div_euclid(HOUR_MS) + 1
}

/// Unix milliseconds of a close hour.
#[must_use]
pub fn hour_to_ms(hour: i64) -> i64 {
    hour * HOUR_MS
}

/// Formats a close hour as `YYYY-MM-DD HH:MM` UTC.
#[must_use]
pub fn format_hour(hour: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(hour_to_ms(hour)).map_or_else(
        || format!("hour {hour}"),
        |d| d.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// Formats Unix milliseconds as RFC 3339 UTC.
#[must_use]
pub fn format_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Which end of a period a user-given time stands for.
///
/// A bare date means the whole day, so as a start it is the day's first instant and as an end
/// its last: `--eval-until 2021-12-31` includes the origin at 2021-12-31 00:00 and
/// `--fit-until 2020-12-31` includes the candle that opens at 2020-12-31 23:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The first instant of a bare date.
    Start,
    /// The last instant of a bare date.
    End,
}

/// A time argument that is neither RFC 3339 nor `YYYY-MM-DD`.
#[derive(Debug, thiserror::Error)]
#[error("`{input}` is not a time: use RFC 3339 (2021-01-01T00:00:00Z) or a date (2021-01-01)")]
pub struct TimeParseError {
    input: String,
}

/// Parses RFC 3339 or `YYYY-MM-DD` (UTC) into Unix milliseconds.
///
/// # Errors
/// [`TimeParseError`] when the text is neither form.
pub fn parse_time(input: &str, bound: Bound) -> Result<i64, TimeParseError> {
    let s = input.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| TimeParseError {
        input: input.to_owned(),
    })?;
    let start = date.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    Ok(match bound {
        Bound::Start => start,
        Bound::End => start + 24 * HOUR_MS - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_dates_cover_the_whole_day() {
        let start = parse_time("2021-01-01", Bound::Start).unwrap();
        assert_eq!(start, 1_609_459_200_000);
        assert_eq!(
            parse_time("2021-01-01", Bound::End).unwrap(),
            start + 24 * HOUR_MS - 1
        );
        assert_eq!(parse_time("2021-01-01T00:00:00Z", Bound::End).unwrap(), start);
        assert_eq!(
            parse_time("2021-01-01T02:00:00+02:00", Bound::End).unwrap(),
            start
        );
        assert!(parse_time("yesterday", Bound::Start).is_err());
    }

    #[test]
    fn close_hours() {
        assert_eq!(close_hour_of_open_ms(0), 1);
        assert_eq!(close_hour_of_open_ms(HOUR_MS), 2);
        assert_eq!(format_hour(24), "1970-01-02 00:00");
    }
}
