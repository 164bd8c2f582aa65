//! Hourly candles and the bad-input rules of SPEC ("Input data").
//!
//! Validation is pure and shared: the file loader wraps a [`CandleError`] with the file name, the
//! server with the request field, so the same rule gives the same answer everywhere.

use serde::{Deserialize, Serialize};

use crate::time::{HOUR_MS, format_ms};

/// One hourly candle, labelled by its open time as in the data files.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    /// Candle open time, Unix milliseconds UTC, on the hour.
    pub open_time: i64,
    /// First trade price.
    pub open: f64,
    /// Highest trade price.
    pub high: f64,
    /// Lowest trade price.
    pub low: f64,
    /// Last trade price.
    pub close: f64,
    /// Traded amount in the base asset.
    pub volume: f64,
    /// Traded amount in the quote currency (USD or USDT).
    pub quote_volume: f64,
}

/// One asset's candles, oldest first, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetCandles {
    /// Asset id: the file stem, e.g. `BTCUSDT`.
    pub asset: String,
    /// Candles in strictly increasing `open_time`.
    pub candles: Vec<Candle>,
}

/// What is wrong with a candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CandleProblem {
    /// NaN or infinite.
    NonFinite,
    /// A price that is zero or negative.
    NonPositive,
    /// A volume below zero.
    Negative,
    /// `high < low`.
    HighBelowLow,
    /// `close` outside `[low, high]`.
    CloseOutsideRange,
    /// `open_time` not a whole hour.
    NotOnTheHour,
    /// `open_time` earlier than the row before.
    Unsorted,
    /// `open_time` equal to the row before.
    Duplicate,
}

impl CandleProblem {
    /// Stable machine-readable code, also used by the server's error bodies.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NonFinite => "non_finite",
            Self::NonPositive => "non_positive_price",
            Self::Negative => "negative_volume",
            Self::HighBelowLow => "high_below_low",
            Self::CloseOutsideRange => "close_outside_range",
            Self::NotOnTheHour => "not_on_the_hour",
            Self::Unsorted => "unsorted_timestamps",
            Self::Duplicate => "duplicate_timestamp",
        }
    }

    /// What is wrong, as the end of a sentence naming the field (`high = 9 is below low`);
    /// shared by the file loader's and the server's messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::NonFinite => "is not a finite number",
            Self::NonPositive => "is not positive",
            Self::Negative => "is negative",
            Self::HighBelowLow => "is below low",
            Self::CloseOutsideRange => "is outside [low, high]",
            Self::NotOnTheHour => "is not on a whole hour (Unix ms, a multiple of 3600000)",
            Self::Unsorted => "is earlier than the previous candle's (candles go oldest first)",
            Self::Duplicate => "repeats the previous candle's",
        }
    }
}

/// A rejected candle: which row, which field, what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("row {row} (open_time {open_time}, {when}): {field} = {value} {}", problem.describe(), when = format_ms(*open_time))]
pub struct CandleError {
    /// Zero-based row index among the candles (data rows, header not counted).
    pub row: usize,
    /// The row's open time in Unix milliseconds.
    pub open_time: i64,
    /// The offending field's name, as in SPEC's column names.
    pub field: &'static str,
    /// The offending value.
    pub value: f64,
    /// The rule it breaks.
    pub problem: CandleProblem,
}

/// Checks one candle against SPEC's rules that need no neighbour.
///
/// # Errors
/// The first rule broken, in field order.
pub fn validate_candle(row: usize, c: &Candle) -> Result<(), CandleError> {
    let err = |field, value, problem| CandleError {
        row,
        open_time: c.open_time,
        field,
        value,
        problem,
    };
    if c.open_time.rem_euclid(HOUR_MS) != 0 {
        return Err(err("open_time", c.open_time as f64, CandleProblem::NotOnTheHour));
    }
    for (field, value) in [
        ("open", c.open),
        ("high", c.high),
        ("low", c.low),
        ("close", c.close),
    ] {
        if !value.is_finite() {
            return Err(err(field, value, CandleProblem::NonFinite));
        }
        if value <= 0.0 {
            return Err(err(field, value, CandleProblem::NonPositive));
        }
    }
    for (field, value) in [("volume", c.volume), ("quote_volume", c.quote_volume)] {
        if !value.is_finite() {
            return Err(err(field, value, CandleProblem::NonFinite));
        }
        if value < 0.0 {
            return Err(err(field, value, CandleProblem::Negative));
        }
    }
    if c.high < c.low {
        return Err(err("high", c.high, CandleProblem::HighBelowLow));
    }
    if c.close < c.low || c.close > c.high {
        return Err(err("close", c.close, CandleProblem::CloseOutsideRange));
    }
    Ok(())
}

/// Checks a whole series: every candle, then strictly increasing open times.
///
/// # Errors
/// The first offending row.
pub fn validate_candles(candles: &[Candle]) -> Result<(), CandleError> {
    let mut previous: Option<i64> = None;
    for (row, c) in candles.iter().enumerate() {
        validate_candle(row, c)?;
        if let Some(prev) = previous {
            let problem = if c.open_time == prev {
                Some(CandleProblem::Duplicate)
            } else if c.open_time < prev {
                Some(CandleProblem::Unsorted)
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CandleError {
                    row,
                    open_time: c.open_time,
                    field: "open_time",
                    value: c.open_time as f64,
                    problem,
                });
            }
        }
        previous = Some(c.open_time);
    }
    Ok(())
}

/// Ratios of a candle's quote volume to the median positive quote volume of the candles around
/// it that the server accepts (`implausible_volume` otherwise): every window of the shared
/// Binance data stays far inside (`tests/tests/volume_plausibility.rs`), while a unit or data
/// error of a million times, which would move the forecasts at will, does not.
pub const VOLUME_RATIO_RANGE: (f64, f64) = (1e-8, 1e5);

/// The median positive quote volume of `candles` (the upper median for an even count), what
/// [`VOLUME_RATIO_RANGE`] is relative to; None without any positive volume (hours without trades
/// have none and are left out).
#[must_use]
pub fn median_quote_volume(candles: &[Candle]) -> Option<f64> {
    let mut positive: Vec<f64> = candles
        .iter()
        .map(|c| c.quote_volume)
        .filter(|v| *v > 0.0)
        .collect();
    if positive.is_empty() {
        return None;
    }
    let mid = positive.len() / 2;
    let (_, &mut median, _) = positive.select_nth_unstable_by(mid, f64::total_cmp);
    Some(median)
}

/// Merges several validated series of the same asset in time order.
///
/// Sources come in priority order: where two hold the same open time, the earlier source's
/// candle is kept (SPEC: "the first directory wins").
#[must_use]
pub fn merge_sources(sources: Vec<Vec<Candle>>) -> Vec<Candle> {
    let mut sources = sources.into_iter().filter(|s| !s.is_empty());
    let Some(mut merged) = sources.next() else {
        return Vec::new();
    };
    for next in sources {
        let mut out = Vec::with_capacity(merged.len() + next.len());
        let (mut i, mut j) = (0, 0);
        while i < merged.len() && j < next.len() {
            let (a, b) = (merged[i], next[j]);
            if a.open_time <= b.open_time {
                out.push(a);
                i += 1;
                if a.open_time == b.open_time {
                    j += 1;
                }
            } else {
                out.push(b);
                j += 1;
            }
        }
        out.extend_from_slice(&merged[i..]);
        out.extend_from_slice(&next[j..]);
        merged = out;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn candle(hour: i64, close: f64) -> Candle {
        Candle {
            open_time: hour * HOUR_MS,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            quote_volume: close,
        }
    }

    #[test]
    fn accepts_clean_series() {
        let c = vec![candle(0, 1.0), candle(1, 2.0), candle(5, 3.0)];
        assert!(validate_candles(&c).is_ok());
    }

    #[test]
    fn names_row_field_and_rule() {
        let mut c = vec![candle(0, 1.0), candle(1, 2.0), candle(2, 3.0)];
        c[1].high = 1.5;
        let e = validate_candles(&c).unwrap_err();
        assert_eq!(
            (e.row, e.field, e.problem),
            (1, "high", CandleProblem::HighBelowLow)
        );
        assert!(e.to_string().contains("row 1"), "{e}");

        let mut c = vec![candle(0, 1.0), candle(1, 2.0)];
        c[1].close = 2.5;
        c[1].high = 2.4;
        let e = validate_candles(&c).unwrap_err();
        assert_eq!((e.field, e.problem), ("close", CandleProblem::CloseOutsideRange));

        type Case = (fn(&mut Candle), &'static str, CandleProblem);
        let cases: Vec<Case> = vec![
            (|c| c.open = f64::NAN, "open", CandleProblem::NonFinite),
            (|c| c.low = 0.0, "low", CandleProblem::NonPositive),
            (|c| c.close = -1.0, "close", CandleProblem::NonPositive),
            (|c| c.volume = -1.0, "volume", CandleProblem::Negative),
            (
                |c| c.quote_volume = f64::INFINITY,
                "quote_volume",
                CandleProblem::NonFinite,
            ),
            (|c| c.open_time += 1, "open_time", CandleProblem::NotOnTheHour),
        ];
        for (break_it, field, problem) in cases {
            let mut c = vec![candle(0, 1.0), candle(1, 2.0)];
            break_it(&mut c[1]);
            let e = validate_candles(&c).unwrap_err();
            assert_eq!((e.row, e.field, e.problem), (1, field, problem));
        }
    }

    #[test]
    fn rejects_unsorted_and_duplicates() {
        let e = validate_candles(&[candle(3, 1.0), candle(2, 1.0)]).unwrap_err();
        assert_eq!(e.problem, CandleProblem::Unsorted);
        let e = validate_candles(&[candle(3, 1.0), candle(3, 1.0)]).unwrap_err();
        assert_eq!(e.problem, CandleProblem::Duplicate);
    }

    #[test]
    fn merge_keeps_first_source_on_ties() {
        let a = vec![candle(1, 1.0), candle(3, 1.0)];
        let b = vec![candle(0, 9.0), candle(1, 9.0), candle(2, 9.0), candle(4, 9.0)];
        let m = merge_sources(vec![a, b]);
        let times: Vec<i64> = m.iter().map(|c| c.open_time / HOUR_MS).collect();
        assert_eq!(times, vec![0, 1, 2, 3, 4]);
        assert_eq!(m[1].close, 1.0);
        assert_eq!(m[0].close, 9.0);
    }
}
