//! Asset-hour features: return, range, volume, wick, volume for the range and out and back, each
//! against the asset's own recent behaviour, and the whole market each hour.

use std::collections::HashMap;

use super::{Ewma, FeatureConfig, LOG_SD_FLOOR, Row, Standardized};
use crate::candles::Candle;
use crate::time::HOUR_MS;

/// The candle features without a market reference, in row order. Each is scale-free: a ratio
/// to, or a multiple of, the market's own recent behaviour.
pub const CANDLE_FEATURES: [&str; 6] = [
    "return",
    "range",
    "volume",
    "wick",
    "volume_per_range",
    "out_and_back",
];
/// The same against the whole market (see [`MarketContext`]): the return apart from the
/// market's, and range, volume and wick surprises beyond the market's median surprise that hour.
pub const MARKET_FEATURES: [&str; 6] = [
    "return_vs_market",
    "range_vs_market",
    "volume_vs_market",
    "wick_vs_market",
    "volume_per_range_vs_market",
    "out_and_back_vs_market",
];
/// The patterns a risk team watches for on candles, as directions over the candle features
/// (the same positions in [`CANDLE_FEATURES`] and [`MARKET_FEATURES`]), each feature it moves
/// weighted 1, in the words of the patterns: a pump and dump, a fast rise on outsized volume
/// then its reversal (return, range, volume, out and back); wash trading, volume many times
/// normal with no price change (volume, volume for the range); a spoofed wick, the low far
/// below and the close recovered (range, wick). See [`crate::anomaly::Direction`].
pub const CANDLE_DIRECTIONS: [(&str, [f64; CANDLE_FEATURES.len()]); 3] = [
    (PUMP_AND_DUMP, [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]),
    ("wash_trading", [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]),
    ("spoofed_wick", [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]),
];
/// The pump and dump's direction, the one that may be judged over several hours
/// ([`crate::anomaly::DetectorConfig::pump_hours`]).
pub const PUMP_AND_DUMP: &str = "pump_and_dump";
/// Position of `volume` (and `volume_vs_market`) in the rows.
pub const CANDLE_VOLUME: usize = 2;
/// Position of `wick` (and `wick_vs_market`) in the rows.
pub const CANDLE_WICK: usize = 3;
/// Hours of `out_and_back`: how far the price went and came back over the last five hours.
const TRIP_HOURS: usize = 5;
/// Hours averaged by `volume_per_range`: each hour's volume against its prediction (level and
/// hour of day) less its range against its prediction, over three hours.
const FLOW_HOURS: usize = 3;

/// A log activity level (range, volume) against what its own recent behaviour predicts for the
/// hour: its recent level, plus that hour of the day's usual offset, plus the persistence of the
/// last hour's deviation; the miss in recent standard deviations of the misses. All from earlier
/// hours only. So "8x its usual volume" is judged against the hour of day, the hour before, and
/// how much that asset's volume usually varies.
#[derive(Debug, Clone)]
struct Predicted {
    level: Ewma,
    by_hour: [Ewma; 24],
    /// `E[d_t d_(t-1)]` and `E[d_(t-1)²]` of the deviations from level and hour.
    lag_cross: Ewma,
    lag_sq: Ewma,
    miss_sq: Ewma,
    /// The last hour's deviation and its time.
    last: Option<(i64, f64)>,
    floor: f64,
}

/// Half-life, in days, of each hour of the day's offset.
const HOUR_OF_DAY_HALF_LIFE_DAYS: f64 = 14.0;

impl Predicted {
    fn new(half_life: f64, floor: f64) -> Self {
        Self {
            level: Ewma::new(half_life),
            by_hour: [Ewma::new(HOUR_OF_DAY_HALF_LIFE_DAYS); 24],
            lag_cross: Ewma::new(half_life),
            lag_sq: Ewma::new(half_life),
            miss_sq: Ewma::new(half_life),
            last: None,
            floor,
        }
    }

    fn hour_of_day(time_ms: i64) -> usize {
        // Never negative, even before 1970: an index of 0..24.
        time_ms.div_euclid(HOUR_MS).rem_euclid(24) as usize
    }

    /// The deviation of `x` at `time_ms` from the level and the hour's offset.
    fn deviation(&self, time_ms: i64, x: f64) -> Option<f64> {
        let offset = self.by_hour[Self::hour_of_day(time_ms)].mean().unwrap_or(0.0);
        Some(x - self.level.mean()? - offset)
    }

    /// The part of the last hour's deviation expected to persist into `time_ms`.
    fn persisting(&self, time_ms: i64) -> f64 {
        match (self.last, self.lag_cross.mean(), self.lag_sq.mean()) {
            (Some((t, d)), Some(c), Some(v)) if time_ms - t == HOUR_MS && v > 1e-12 => {
                (c / v).clamp(0.0, 0.95) * d
            }
            _ => 0.0,
        }
    }

    /// `(miss in standard deviations, actual over predicted)`.
    fn feature(&self, time_ms: i64, x: f64) -> Option<(f64, f64)> {
        let miss = self.deviation(time_ms, x)? - self.persisting(time_ms);
        let sd = self.miss_sq.mean()?.sqrt().max(self.floor);
        Some((miss / sd, miss.exp()))
    }

    fn update(&mut self, time_ms: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        if let Some(d) = self.deviation(time_ms, x) {
            self.miss_sq.update((d - self.persisting(time_ms)).powi(2));
            if let Some((_, prev)) = self.last.filter(|(t, _)| time_ms - t == HOUR_MS) {
                self.lag_cross.update(d * prev);
                self.lag_sq.update(prev * prev);
            }
            // The hour's offset learns `x - level`, i.e. the deviation plus the offset it had.
            let hour = &mut self.by_hour[Self::hour_of_day(time_ms)];
            let offset = hour.mean().unwrap_or(0.0);
            hour.update(d + offset);
            self.last = Some((time_ms, d));
        }
        self.level.update(x);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The whole market each hour, from many assets' candle rows: the median return and the median
/// range, volume and wick surprise, where at least `min_assets` assets were scored that hour.
#[derive(Debug, Clone, Default)]
pub struct MarketContext {
    /// Per hour: the medians of the features (the return's as a plain return), then the medians
    /// of the plain values (for the reasons).
    by_hour: HashMap<i64, (Vec<f64>, Vec<f64>)>,
}

impl MarketContext {
    /// From each asset's rows ([`candle_rows`]).
    #[must_use]
    pub fn new<R: AsRef<[Option<Row>]>>(assets: &[R], min_assets: usize) -> Self {
        let n = CANDLE_FEATURES.len();
        let mut cols: HashMap<i64, Vec<Vec<f64>>> = HashMap::new();
        for rows in assets {
            for r in rows.as_ref().iter().flatten() {
                let e = cols.entry(r.time_ms).or_insert_with(|| vec![Vec::new(); 2 * n]);
                e[0].push(r.ret.0);
                for j in 1..n {
                    e[j].push(r.values[j]);
                    e[n + j].push(r.shown[j]);
                }
            }
        }
        let by_hour = cols
            .into_iter()
            .filter(|(_, c)| c[0].len() >= min_assets.max(1))
            .map(|(t, mut c)| {
                let m: Vec<f64> = c
                    .iter_mut()
                    .map(|v| if v.is_empty() { f64::NAN } else { median(v) })
                    .collect();
                (t, (m[..n].to_vec(), m[n..].to_vec()))
            })
            .collect();
        Self { by_hour }
    }

    /// Hours covered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_hour.len()
    }

    /// Whether no hour is covered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_hour.is_empty()
    }

    /// `row` against the market ([`MARKET_FEATURES`]), or `None` for an hour not covered.
    #[must_use]
    pub fn adjust(&self, row: &Row) -> Option<Row> {
        let (m, plain) = self.by_hour.get(&row.time_ms)?;
        let (r, sigma) = row.ret;
        let mut values = row.values.clone();
        values[0] = ((r - m[0]).abs() / sigma).asinh();
        for j in 1..values.len() {
            values[j] -= m[j];
        }
        // The market's plain values: its return, and its median ratios (not the wick's).
        let market = (0..values.len())
            .map(|j| match j {
                0 => m[0],
                3 | 5 => f64::NAN,
                _ => plain[j],
            })
            .collect();
        Some(Row {
            time_ms: row.time_ms,
            values,
            shown: row.shown.clone(),
            market,
            ret: row.ret,
        })
    }
}

/// How far a path of log returns went out and came back: the largest, over the hours `j`, of
/// the smaller of the leg out (the cumulative return from the start to `j`) and the leg back
/// (from `j` to the end, the other way), either way up. A rise and its reversal score the size of
/// the smaller leg; a path that only drifts scores 0, and a choppy one about the size of its
/// largest swing that was undone, not its whole length.
fn out_and_back(returns: impl Iterator<Item = f64> + Clone) -> f64 {
    let end = returns.clone().fold(0.0, |c, r| c + r);
    // The cumulative return at each hour, the start included (no allocation: every scored row
    // calls this).
    std::iter::once(0.0)
        .chain(returns.scan(0.0, |c, r| {
            *c += r;
            Some(*c)
        }))
        .map(|out| {
            let back = out - end;
            // Up then down: both positive; down then up: both negative.
            out.min(back).max((-out).min(-back)).max(0.0)
        })
        .fold(0.0, f64::max)
}

/// The quote volume of a candle, or `volume * close` when the quote volume is not given.
fn quote_volume(c: &Candle) -> f64 {
    if c.quote_volume > 0.0 {
        c.quote_volume
    } else {
        c.volume * c.close
    }
}

/// The larger wick, as a fraction of the price (how far the low went below the body, or the
/// high above it) and as a log distance.
fn wick(c: &Candle) -> (f64, f64) {
    let below = (c.open.min(c.close) / c.low).ln().max(0.0);
    let above = (c.high / c.open.max(c.close)).ln().max(0.0);
    if below >= above {
        (1.0 - (-below).exp(), below)
    } else {
        (above.exp() - 1.0, above)
    }
}

/// Candle rows for one asset's candles (oldest first), without a market reference (see
/// [`MarketContext::adjust`]). `None` for the hours still warming up.
#[must_use]
pub fn candle_rows(config: &FeatureConfig, candles: &[Candle]) -> Vec<Option<Row>> {
    candle_rows_from(config, candles, i64::MIN)
}

/// [`candle_rows`] with the rows of the hours opening before `from_ms` left out (`None`): their
/// candles still build the baselines, at a fraction of the cost (a risk answer scores only its
/// last hours).
#[must_use]
pub fn candle_rows_from(config: &FeatureConfig, candles: &[Candle], from_ms: i64) -> Vec<Option<Row>> {
    let hl = config.candle_half_life_hours;
    let (mut r2, mut range, mut vol) = (Ewma::new(hl), Ewma::new(hl), Ewma::new(hl));
    // Log range, log volume and log volume per unit of range over the last three hours, each
    // against its own recent level and dispersion.
    let mut log_range = Predicted::new(hl, LOG_SD_FLOOR);
    let mut log_vol = Predicted::new(hl, LOG_SD_FLOOR);
    let mut flow = Standardized::new(hl, LOG_SD_FLOOR);
    let mut flow_hours: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    // The last hours' log returns, for `out_and_back`.
    let mut trip: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let mut out = Vec::with_capacity(candles.len());
    let Some(first) = candles.first() else {
        return out;
    };
    out.push(None);
    for w in candles.windows(2) {
        let (prev, c) = (&w[0], &w[1]);
        let gap_hours = ((c.open_time - prev.open_time) / HOUR_MS).max(1) as f64;
        let r = (c.close / prev.close).ln();
        let g = (c.high / c.low).ln().max(0.0);
        let v = quote_volume(c);
        // Volume on a log scale against its recent typical (geometric) level, floored at 5% of
        // the recent mean so that empty hours stay finite.
        let lv = vol.mean().map(|m| (v + 0.05 * m + 1e-12).ln());
        // Range likewise, floored at 5% of its recent mean.
        let lg = range.mean().map(|m| (g + 0.05 * m + 1e-12).ln());
        let history = ((c.open_time - first.open_time) / HOUR_MS) as usize;
        // Volume for the range it moved: the hour's volume against its level and hour of day,
        // less the range's against theirs (they move together in ordinary hours), averaged over
        // the last three hours.
        let dvg = lv.zip(lg).and_then(|(lv, lg)| {
            Some(log_vol.deviation(c.open_time, lv)? - log_range.deviation(c.open_time, lg)?)
        });
        if gap_hours > 1.0 {
            flow_hours.clear();
        }
        if let Some(x) = dvg {
            flow_hours.push_back(x);
            if flow_hours.len() > FLOW_HOURS {
                flow_hours.pop_front();
            }
        }
        let fl = (dvg.is_some() && flow_hours.len() == FLOW_HOURS)
            .then(|| flow_hours.iter().sum::<f64>() / FLOW_HOURS as f64);
        if gap_hours > 1.0 && config.trip_restarts_at_gaps {
            trip.clear();
        } else if r.is_finite() {
            trip.push_back(r);
            if trip.len() > TRIP_HOURS {
                trip.pop_front();
            }
        }
        let back = out_and_back(trip.iter().copied());
        let predicted = |p: &Predicted, x: Option<f64>| p.feature(c.open_time, x?);
        let (zg, zv, zf) = (
            predicted(&log_range, lg),
            predicted(&log_vol, lv),
            fl.and_then(|x| flow.feature(x)),
        );
        let row = match (r2.mean(), zg, zv, zf) {
            (Some(var), Some((zg, g_ratio)), Some((zv, v_ratio)), Some((zf, f_ratio)))
                if history >= config.candle_warmup_hours && c.open_time >= from_ms =>
            {
                let sigma = (var * gap_hours).sqrt().max(1e-5);
                let (wick_frac, wick_log) = wick(c);
                let values = vec![
                    (r.abs() / sigma).asinh(),
                    zg,
                    zv,
                    (wick_log / sigma).asinh(),
                    zf,
                    (back / (sigma * (TRIP_HOURS as f64).sqrt())).asinh(),
                ];
                let shown = vec![r, g_ratio, v_ratio, wick_frac, f_ratio, back];
                values.iter().all(|x| x.is_finite()).then_some(Row {
                    time_ms: c.open_time,
                    values,
                    shown,
                    market: vec![f64::NAN; CANDLE_FEATURES.len()],
                    ret: (r, sigma),
                })
            }
            _ => None,
        };
        out.push(row);
        if r.is_finite() {
            r2.update(r * r / gap_hours);
        }
        if let Some(lg) = lg {
            log_range.update(c.open_time, lg);
        }
        if let Some(lv) = lv {
            log_vol.update(c.open_time, lv);
        }
        if let Some(fl) = fl {
            flow.update(fl);
        }
        range.update(g);
        vol.update(v);
    }
    out
}

#[cfg(test)]
mod tests;
