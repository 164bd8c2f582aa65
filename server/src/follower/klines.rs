//! The exchange's side of a round: one klines request, its failures classified (rate limits and
//! server errors retried with backoff, refusals reported), and a page of klines turned into the
//! candles to store.

use std::collections::HashSet;
use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use volcast_core::candles::{Candle, CandleError, validate_candles};
use volcast_core::time::{HOUR_MS, format_ms};
use volcast_store::StoreError;

/// Longest `Retry-After` honoured (a 418 ban can ask for days; we ask again after a day).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Characters of an error body kept in a message.
const MAX_BODY_CHARS: usize = 200;

/// Largest answer read: a full page of 1,000 klines is about 200 KB, so a larger body is no
/// klines page (a proxy's or a wrong `--binance-url`'s) and is not held in memory whole.
pub(super) const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RoundError {
    #[error("rate limited (HTTP {status})")]
    RateLimited {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("exchange unavailable (HTTP {status}): {message}")]
    Unavailable { status: StatusCode, message: String },
    #[error("exchange refused the request (HTTP {status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("request failed: {0}")]
    Network(String),
    #[error("unreadable klines: {0}")]
    Malformed(String),
    /// A row that cannot be read or a candle refused, with the refused candle's open time.
    #[error("{0}")]
    Invalid(String, Option<i64>),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store's write gave no answer within the limit (given up; written again later).
    #[error("store: no answer within {0:?}")]
    StoreTimeout(Duration),
    /// The follower was told to stop while the request was out (not a failure).
    #[error("stopped")]
    Stopped,
}

impl RoundError {
    /// The exchange's answer, not the way to it, is at fault.
    pub(super) fn is_refused_data(&self) -> bool {
        matches!(
            self,
            Self::Refused { .. } | Self::Malformed(_) | Self::Invalid(..)
        )
    }
}

/// One klines request: the rows of a 200 answer and the exchange's time when it answered (its
/// `Date` header, Unix ms, floored to the second, where it gives one), or why there are none.
pub(super) async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    page_limit: u32,
    symbol: &str,
    start: i64,
) -> Result<(Vec<Value>, Option<i64>), RoundError> {
    let response = client
        .get(url.clone())
        .query(&[
            ("symbol", symbol),
            ("interval", "1h"),
            ("startTime", &start.to_string()),
            ("limit", &page_limit.to_string()),
        ])
        .send()
        .await
        .map_err(|e| network(&e))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let date = exchange_time(response.headers());
    if !status.is_success() {
        // Classified by its status whatever its size (a proxy's large error page): only the
        // start of its body is read, for the message.
        let start = read_start(response, ERROR_BODY_BYTES).await;
        return Err(http_error(status, retry_after, &start));
    }
    let body = read_capped(response, MAX_ANSWER_BYTES).await?;
    let rows =
        serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| RoundError::Malformed(e.to_string()))?;
    Ok((rows, date))
}

/// Bytes of an error answer's body read for its message.
const ERROR_BODY_BYTES: usize = 64 << 10;

/// The first `cap` bytes of the answer's body, or as many as it has (what could be read, if the
/// body breaks off).
async fn read_start(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            _ => break,
        }
    }
    body
}

/// The answer's body, refused once it passes `cap` bytes (its length, where it says one, is
/// checked before a byte is read).
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, RoundError> {
    let too_large = || RoundError::Malformed(format!("an answer larger than {cap} bytes is no klines page"));
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| network(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The answer's `Date` header, Unix ms; `None` when absent or unreadable.
fn exchange_time(headers: &HeaderMap) -> Option<i64> {
    let text = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let at = httpdate::parse_http_date(text).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

fn network(e: &reqwest::Error) -> RoundError {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    RoundError::Network(message)
}

/// The answer's `Retry-After`: seconds, or an HTTP date (RFC 9110 allows both; a date was
/// ignored, and a proxy's ban retried within seconds), counted from the answer's `Date`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(text).ok()?;
            let now = exchange_time(headers)
                .and_then(|ms| u64::try_from(ms).ok())
                .map_or_else(std::time::SystemTime::now, |ms| {
                    std::time::UNIX_EPOCH + Duration::from_millis(ms)
                });
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Classifies a non-2xx answer: rate limits and server errors are retried with backoff, other
/// refusals (unknown symbol, bad parameter) are the request's fault.
fn http_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> RoundError {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::IM_A_TEAPOT {
        return RoundError::RateLimited { status, retry_after };
    }
    let message = error_message(body);
    if status.is_client_error() {
        RoundError::Refused { status, message }
    } else {
        RoundError::Unavailable { status, message }
    }
}

/// Binance's `{"code":-1121,"msg":"Invalid symbol."}`, or the start of another body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct BinanceError {
        code: i64,
        msg: String,
    }
    match serde_json::from_slice::<BinanceError>(body) {
        Ok(e) => format!("{} (code {})", e.msg, e.code),
        Err(_) => String::from_utf8_lossy(body)
            .chars()
            .take(MAX_BODY_CHARS)
            .collect(),
    }
}

/// A page's candles to store, and what stopped it early.
#[derive(Debug)]
pub(super) struct Page {
    /// Closed candles from the cursor on, once each, checked, oldest first.
    pub(super) candles: Vec<Candle>,
    /// The unreadable or refused row that ended the page, if one did.
    pub(super) problem: Option<String>,
    /// The open time of the candle [`validate_candles`] refused, or of the row that could not be
    /// read where its open time could, if one ended the page.
    pub(super) refused_at: Option<i64>,
}

/// Turns a page of klines into the candles to store: rows before `start` and candles not closed
/// before `closed_before` are left out, a repeated open time keeps its first row, the rest are
/// put in time order, and the page ends before the first row that cannot be read or the first
/// candle (in time) that [`validate_candles`] refuses. A row that cannot be read but whose open
/// time can is left out where a readable one would be (not asked for, not closed, or its hour
/// has a readable row), and otherwise refused at that hour, the earliest such in the page (and
/// skipped as a refused candle is, if the exchange never corrects it); one whose open time
/// cannot be read either stands for an hour between the rows around it whose times can be (klines
/// come in time order): the hour before the next one, past any gap the exchange has there (the
/// hour after the one before it when none follows; the page's first hour asked for when neither).
pub(super) fn prepare(symbol: &str, rows: &[Value], start: i64, closed_before: i64) -> Page {
    let mut candles = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    let mut problem = None;
    let mut refused_at = None;
    // Rows that cannot be read, by open time: the page goes on past them (a row earlier in time
    // may follow, the page out of order), and ends at the earliest.
    let mut unreadable = std::collections::BTreeMap::new();
    let times: Vec<Option<i64>> = rows.iter().map(|raw| raw.get(0).and_then(open_time)).collect();
    for (row, raw) in rows.iter().enumerate() {
        let candle = match parse_kline(raw) {
            Ok(c) => c,
            Err(e) => {
                let said = format!("row {row} of the page: {e}");
                // Without a readable open time, the hour it stands in for (it ended the page
                // and named no hour: asked for again for good, no later hour ever stored).
                let t = times[row].unwrap_or_else(|| guessed_hour(&times, row, start));
                // Left out as a readable row would be: not asked for or not closed.
                if (start..closed_before).contains(&t) {
                    unreadable.entry(t).or_insert(said);
                }
                continue;
            }
        };
        if candle.open_time < start || candle.open_time >= closed_before {
            continue;
        }
        if !seen.insert(candle.open_time) {
            tracing::warn!(symbol = %symbol, open_time = %format_ms(candle.open_time), "the exchange repeated a candle; keeping the first");
            continue;
        }
        candles.push((candle, row));
    }
    // Oldest first whatever the page's order: the cursor moves past the last candle kept, so a
    // row out of order, refused as such, would never be asked for again.
    candles.sort_by_key(|(c, _)| c.open_time);
    let (mut candles, page_rows): (Vec<Candle>, Vec<usize>) = candles.into_iter().unzip();
    // An hour with a readable row too keeps that row (a repeated open time keeps one row).
    unreadable.retain(|t, _| !seen.contains(t));
    if let Some((at, said)) = unreadable.into_iter().next() {
        // Rows later in time wait until it is stored or skipped.
        let before = candles.partition_point(|c| c.open_time < at);
        candles.truncate(before);
        problem.get_or_insert(said);
        refused_at = Some(at);
    }
    if let Err(e) = validate_candles(&candles) {
        refused_at = candles.get(e.row).map(|c| c.open_time);
        candles.truncate(e.row);
        let row = page_rows.get(e.row).copied().unwrap_or(e.row);
        problem = Some(format!("refused candle: {}", CandleError { row, ..e }));
    }
    Page {
        candles,
        problem,
        refused_at,
    }
}

/// The hour a row at `row` without a readable open time stands for, from the readable `times`
/// around it: the hour before the next one (past a gap of the exchange's there: the hour after
/// the one before would be refused, skipped an hour later, and the next guessed again, an hour
/// per missing hour), else the hour after the one before, else `start`.
fn guessed_hour(times: &[Option<i64>], row: usize, start: i64) -> i64 {
    let before = times[..row].iter().rev().flatten().next().copied();
    let after = times[row + 1..].iter().flatten().next().copied();
    match (before, after) {
        (b, Some(a)) if b.is_none_or(|b| a.saturating_sub(HOUR_MS) > b) => a.saturating_sub(HOUR_MS),
        (Some(b), _) => b.saturating_add(HOUR_MS),
        (None, _) => start,
    }
}

/// A kline's open time: an integer, also written as a string or as a whole float (a mirror's
/// or proxy's rewriting of Binance's integer).
fn open_time(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
}

/// One kline row: `[openTime, "open", "high", "low", "close", "volume", closeTime,
/// "quoteAssetVolume", ...]`.
fn parse_kline(raw: &Value) -> Result<Candle, String> {
    let fields = raw.as_array().ok_or("not an array")?;
    if fields.len() < 8 {
        return Err(format!("{} fields, expected at least 8", fields.len()));
    }
    let number = |i: usize, name: &str| -> Result<f64, String> {
        let value = match &fields[i] {
            Value::String(s) => s.trim().parse().ok(),
            Value::Number(n) => n.as_f64(),
            _ => None,
        };
        value.ok_or_else(|| format!("{name} = {} is not a number", fields[i]))
    };
    Ok(Candle {
        open_time: open_time(&fields[0])
            .ok_or_else(|| format!("open time {} is not an integer", fields[0]))?,
        open: number(1, "open")?,
        high: number(2, "high")?,
        low: number(3, "low")?,
        close: number(4, "close")?,
        volume: number(5, "volume")?,
        quote_volume: number(7, "quote_volume")?,
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::{DATE, HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    /// A row without a readable time stands for the hour before the next readable one, past a
    /// gap; the hour after the one before when none follows; the first hour asked for alone.
    #[test]
    fn a_timeless_row_stands_for_the_hour_before_the_next() {
        let h = HOUR_MS;
        assert_eq!(guessed_hour(&[Some(9 * h), None, Some(21 * h)], 1, 0), 20 * h);
        assert_eq!(guessed_hour(&[Some(9 * h), None], 1, 0), 10 * h);
        assert_eq!(guessed_hour(&[None, Some(3 * h)], 0, 0), 2 * h);
        assert_eq!(guessed_hour(&[None], 0, 5 * h), 5 * h);
        // Between two hours with no room: the next one's, which its readable row keeps.
        assert_eq!(guessed_hour(&[Some(9 * h), None, Some(10 * h)], 1, 0), 10 * h);
        // No overflow at the ends of time.
        assert_eq!(guessed_hour(&[Some(i64::MAX), None], 1, 0), i64::MAX);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let with = |pairs: &[(reqwest::header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
            }
            retry_after(&h)
        };
        assert_eq!(with(&[(RETRY_AFTER, "7")]), Some(Duration::from_secs(7)));
        // A date 120 s after the answer's own.
        assert_eq!(
            with(&[
                (DATE, "Wed, 21 Oct 2015 07:28:00 GMT"),
                (RETRY_AFTER, "Wed, 21 Oct 2015 07:30:00 GMT"),
            ]),
            Some(Duration::from_secs(120))
        );
        // One already past is no wait; nonsense is none.
        assert_eq!(
            with(&[
                (DATE, "Wed, 21 Oct 2015 07:28:00 GMT"),
                (RETRY_AFTER, "Wed, 21 Oct 2015 07:20:00 GMT"),
            ]),
            Some(Duration::ZERO)
        );
        assert_eq!(with(&[(RETRY_AFTER, "soon")]), None);
        assert_eq!(with(&[]), None);
    }
}
