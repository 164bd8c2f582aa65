//! From a request's candles to model inputs and baseline numbers: validation with SPEC's rules
//! (naming the request field), the hourly grid, and the same feature code as the trainer.
//!
//! Pure and synchronous; the handlers run it before anything reaches the model, so bad input
//! never does.

use volcast_core::candles::{Candle, VOLUME_RATIO_RANGE, median_quote_volume, validate_candles};
use volcast_core::features::AssetFeatures;
use volcast_core::grid::{Asset, EVIDENCE_HOURS, HourlyGrid};
use volcast_core::panel::PreparedAsset;
use volcast_core::time::{HOUR_MS, format_ms, hour_to_ms};
use volcast_model::inference::ModelInput;

use crate::dto::CandleDto;
use crate::error::ApiError;
use crate::model_info::ModelInfo;

/// Longest asset id accepted.
pub const MAX_ASSET_LEN: usize = 64;

/// One asset ready for the model, with the baseline numbers computed on the same candles.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Asset id.
    pub asset: String,
    /// Close hour of the last candle (hours since the epoch).
    pub origin_hour: i64,
    /// The model's scaled inputs.
    pub input: ModelInput,
    /// HAR variance per served horizon (NaN when a regressor is missing).
    pub har: Vec<f64>,
    /// M_H(t) per served horizon (NaN when not computable).
    pub illiquidity: Vec<f64>,
    /// Baseline shortage probability per served horizon (NaN when not computable).
    pub baseline_shortage: Vec<f64>,
    /// SPEC's baseline shortage score `M_H(t) / median` per served horizon (NaN when not
    /// computable), which the daily job's stack may combine with the network's probability.
    pub shortage_score: Vec<f64>,
}

impl Prepared {
    /// Whether HAR's variance exists (finite and positive) at every horizon.
    #[must_use]
    pub fn har_usable(&self) -> bool {
        self.har.iter().all(|v| v.is_finite() && *v > 0.0)
    }

    /// The origin as RFC 3339 (`2024-01-01T00:00:00Z`).
    #[must_use]
    pub fn origin(&self) -> String {
        format_ms(hour_to_ms(self.origin_hour))
    }
}

/// Refuses an asset id no asset can have: empty, longer than [`MAX_ASSET_LEN`], or with a
/// control character (`field` names it in the error).
///
/// # Errors
/// [`ApiError::InvalidValue`].
pub fn check_asset_id(field: &str, asset: &str) -> Result<(), ApiError> {
    if asset.is_empty() || asset.chars().count() > MAX_ASSET_LEN || asset.chars().any(char::is_control) {
        return Err(ApiError::InvalidValue {
            field: field.to_owned(),
            message: format!("an asset id has 1 to {MAX_ASSET_LEN} printable characters"),
        });
    }
    Ok(())
}

/// Earliest candle open time accepted, Unix ms (2009-01-01T00:00:00Z).
pub const MIN_OPEN_TIME_MS: i64 = 1_230_768_000_000;
/// Open times must be before this, Unix ms (2100-01-01T00:00:00Z).
pub const END_OPEN_TIME_MS: i64 = 4_102_444_800_000;
/// [`MIN_OPEN_TIME_MS`] .. [`END_OPEN_TIME_MS`], in words.
pub const OPEN_TIME_RANGE: &str =
    "[1230768000000, 4102444800000) (Unix ms, 2009-01-01T00:00:00Z to 2100-01-01T00:00:00Z)";

/// Smallest positive quote volume accepted: below it an hour's illiquidity `|r| / qv` overflows
/// (near 1e-302) and a window of such hours, all alike so that their median check passes, read
/// as perfectly liquid (a non-finite illiquidity is dropped as unknown, and the bonus fell to its
/// floor). No market trades 1e-12 of its quote asset in an hour; the shared data's least is 0.16.
pub const MIN_QUOTE_VOLUME: f64 = 1e-12;
/// [`MIN_QUOTE_VOLUME`], in words.
const QUOTE_VOLUME_RANGE: &str = "0 (an hour without trades) or at least 1e-12";

/// Every positive quote volume of `candles` (the ones the features use; `offset` is the index of
/// the first in the request) at least [`MIN_QUOTE_VOLUME`] and within [`VOLUME_RATIO_RANGE`] of
/// their median.
fn check_volumes(candles: &[Candle], field_prefix: &str, offset: usize) -> Result<(), ApiError> {
    if let Some((i, c)) = candles
        .iter()
        .enumerate()
        .find(|(_, c)| c.quote_volume > 0.0 && c.quote_volume < MIN_QUOTE_VOLUME)
    {
        return Err(ApiError::OutOfRange {
            field: format!("{field_prefix}{}].quote_volume", offset + i),
            value: c.quote_volume,
            range: QUOTE_VOLUME_RANGE,
        });
    }
    let Some(median) = median_quote_volume(candles) else {
        return Ok(());
    };
    let (min, max) = VOLUME_RATIO_RANGE;
    for (i, c) in candles.iter().enumerate() {
        let ratio = c.quote_volume / median;
        if c.quote_volume > 0.0 && !(min..=max).contains(&ratio) {
            return Err(ApiError::ImplausibleVolume {
                field: format!("{field_prefix}{}].quote_volume", offset + i),
                ratio,
                min,
                max,
            });
        }
    }
    Ok(())
}

/// Limits applied to each asset.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most candles per asset.
    pub max_candles: usize,
}

/// How far after the server's clock a last candle may close and still count as closed: clocks a
/// little apart (a client that drops the forming candle by the exchange's clock).
pub const FORMING_GRACE_MS: i64 = 10_000;

/// Validates one asset's candles and builds its inputs. `prefix` is the JSON path of the item
/// (`""` or `"items[3]."`), used in error fields.
///
/// # Errors
/// The first problem found, as an [`ApiError`] naming the field.
pub fn prepare(
    info: &ModelInfo,
    limits: Limits,
    prefix: &str,
    asset: String,
    candles: &[CandleDto],
) -> Result<Prepared, ApiError> {
    check_asset_id(&format!("{prefix}asset"), &asset)?;
    let need = info.history_hours();
    let field = format!("{prefix}candles");
    let candles = checked_candles(candles, limits, &field, need)?;
    // Only the last `need` hours matter to the features at the origin: drop older candles so
    // the work per request is bounded.
    let start = window_start(&candles, need, |c| c.open_time);
    check_volumes(&candles[start..], &format!("{field}["), start)?;
    let asset = Asset {
        id: asset,
        grid: HourlyGrid::from_candles(&candles[start..]),
    };
    check_trading(&asset.grid, &candles, &field)?;
    inputs_at_last_hour(info, asset, field)
}

/// The degenerate-market rule ([`HourlyGrid::hours_without_trading`]): every hour of the last
/// day must show trading.
fn check_trading(grid: &HourlyGrid, candles: &[Candle], field: &str) -> Result<(), ApiError> {
    let quiet = grid.hours_without_trading(grid.len().saturating_sub(1));
    let Some(&latest) = quiet.last() else {
        return Ok(());
    };
    let open_time = (grid.hour(latest) - 1).saturating_mul(HOUR_MS);
    let index = candles.partition_point(|c| c.open_time < open_time);
    Err(ApiError::DegenerateMarket {
        field: format!("{field}[{index}]"),
        count: quiet.len(),
        window: EVIDENCE_HOURS,
    })
}

/// The first of `candles` (by open time, oldest first) inside the last `need` hours before
/// the last one's: the window the model reads (a missing hour inside it leaves it a candle
/// short, it does not reach further back).
#[must_use]
pub fn window_start<T>(candles: &[T], need: usize, open_time: impl Fn(&T) -> i64) -> usize {
    let last_open = candles.last().map_or(0, &open_time);
    let span = i64::try_from(need).unwrap_or(i64::MAX).saturating_sub(1);
    let from = last_open.saturating_sub(span.saturating_mul(HOUR_MS));
    candles.partition_point(|c| open_time(c) < from)
}

/// The candles of a request, checked: count, `open_time` range and SPEC's bad-input rules,
/// then spanning at least `need` hours.
///
/// # Errors
/// The first problem, naming the field.
pub fn checked_candles(
    candles: &[CandleDto],
    limits: Limits,
    field: &str,
    need: usize,
) -> Result<Vec<Candle>, ApiError> {
    if candles.len() > limits.max_candles {
        return Err(ApiError::TooManyCandles {
            field: field.to_owned(),
            got: candles.len(),
            max: limits.max_candles,
        });
    }
    if let Some((i, c)) = candles
        .iter()
        .enumerate()
        .find(|(_, c)| !(MIN_OPEN_TIME_MS..END_OPEN_TIME_MS).contains(&c.open_time))
    {
        return Err(ApiError::OutOfRange {
            field: format!("{field}[{i}].open_time"),
            value: c.open_time as f64,
            range: OPEN_TIME_RANGE,
        });
    }
    let candles: Vec<Candle> = candles.iter().map(|&c| c.into()).collect();
    validate_candles(&candles).map_err(|e| ApiError::BadCandle {
        field: format!("{field}[{}].{}", e.row, e.field),
        value: e.value,
        problem: e.problem,
    })?;
    // A candle that closes after now is still forming: a partial hour (part of its volume, part
    // of its range) that no training row, evaluation or stored series holds. In time order, so
    // only the last can be one.
    let now = crate::follower::wall_clock_ms();
    if let Some(last) = candles.last()
        && last.open_time.saturating_add(HOUR_MS) > now.saturating_add(FORMING_GRACE_MS)
    {
        return Err(ApiError::InvalidValue {
            field: format!("{field}[{}].open_time", candles.len() - 1),
            message: format!(
                "this candle closes at {}, after the server's clock ({}): it is still forming; send \
                 closed hours only",
                format_ms(last.open_time.saturating_add(HOUR_MS)),
                format_ms(now)
            ),
        });
    }
    // The hours they span, not their count: a window with an hour missing inside is judged by
    // SPEC's 90% rule (as the same window padded with an older, unused candle always was).
    let spanned = match (candles.first(), candles.last()) {
        (Some(first), Some(last)) => {
            usize::try_from((last.open_time - first.open_time) / HOUR_MS + 1).unwrap_or(usize::MAX)
        }
        _ => 0,
    };
    if spanned < need {
        return Err(ApiError::TooFewCandles {
            field: field.to_owned(),
            got: spanned,
            need,
        });
    }
    Ok(candles)
}

/// The model's inputs and the baselines' numbers at the asset's last hour.
fn inputs_at_last_hour(info: &ModelInfo, asset: Asset, field: String) -> Result<Prepared, ApiError> {
    let slot = asset.grid.len().saturating_sub(1);
    let prepared = PreparedAsset::new(&asset, info.horizons());
    let features = AssetFeatures::new(&asset, &prepared);
    let mut scratch = Vec::new();
    let input =
        info.input_at(&features, slot, &mut scratch)
            .ok_or_else(|| ApiError::InsufficientHistory {
                field,
                message: features
                    .why_invalid(slot, "the last candle")
                    .unwrap_or_else(|| "no features at the last candle".to_owned()),
            })?;
    let regressors = prepared.har_regressors(slot);
    let har = info
        .horizons()
        .iter()
        .map(|&h| info.har(h).map_or(f64::NAN, |m| m.forecast(regressors)))
        .collect();
    let illiquidity = prepared.illiquidity_at(slot, info.horizons());
    let shortage_score = info.metadata.shortage_scores_at(&prepared, slot);
    let baseline_shortage = info
        .horizons()
        .iter()
        .zip(&shortage_score)
        .map(|(&h, &score)| match info.shortage_logistic(h) {
            Some(l) if !score.is_nan() => l.probability(score),
            _ => f64::NAN,
        })
        .collect();
    Ok(Prepared {
        origin_hour: asset.grid.last_hour(),
        asset: asset.id,
        input,
        har,
        illiquidity,
        baseline_shortage,
        shortage_score,
    })
}

/// Items of a single-or-batch body, with each item's JSON path prefix.
///
/// # Errors
/// [`ApiError::InvalidShape`] unless exactly one shape is given, [`ApiError::EmptyBatch`],
/// [`ApiError::BatchTooLarge`], or [`ApiError::MissingField`] for half a single shape.
pub fn shape<T>(
    single: (Option<String>, Option<Vec<CandleDto>>),
    items: Option<Vec<T>>,
    max_items: usize,
    make: impl Fn(String, Vec<CandleDto>) -> T,
) -> Result<Vec<(String, T)>, ApiError> {
    match (single, items) {
        ((None, None), None) => Err(ApiError::InvalidShape(
            "give `asset` and `candles` for one asset, or `items` for a batch".into(),
        )),
        ((Some(_), _) | (_, Some(_)), Some(_)) => Err(ApiError::InvalidShape(
            "give either `asset` and `candles` (one asset) or `items` (a batch), not both".into(),
        )),
        ((Some(asset), Some(candles)), None) => Ok(vec![(String::new(), make(asset, candles))]),
        ((None, Some(_)), None) => Err(ApiError::MissingField {
            field: "asset".into(),
        }),
        ((Some(_), None), None) => Err(ApiError::MissingField {
            field: "candles".into(),
        }),
        (_, Some(items)) => {
            if items.is_empty() {
                return Err(ApiError::EmptyBatch);
            }
            if items.len() > max_items {
                return Err(ApiError::BatchTooLarge {
                    got: items.len(),
                    max: max_items,
                });
            }
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, item)| (format!("items[{i}]."), item))
                .collect())
        }
    }
}

/// The served horizons asked for, as indices into the model's output order.
///
/// # Errors
/// [`ApiError::UnknownHorizon`] for a horizon the model does not serve;
/// [`ApiError::InvalidValue`] for an empty list or a horizon asked twice.
pub fn horizon_indices(info: &ModelInfo, asked: Option<&[u64]>) -> Result<Vec<usize>, ApiError> {
    let served = info.horizons();
    let Some(asked) = asked else {
        return Ok((0..served.len()).collect());
    };
    if asked.is_empty() {
        return Err(ApiError::InvalidValue {
            field: "horizons".into(),
            message: "horizons must not be empty (leave it out for all)".into(),
        });
    }
    let mut out = Vec::with_capacity(asked.len());
    for (i, &h) in asked.iter().enumerate() {
        let j = served
            .iter()
            .position(|&s| u64::try_from(s).ok() == Some(h))
            .ok_or_else(|| ApiError::UnknownHorizon {
                field: format!("horizons[{i}]"),
                horizon: h,
                served: served.to_vec(),
            })?;
        if out.contains(&j) {
            // Merging would shift every later answer off the position a caller asked it at.
            return Err(ApiError::InvalidValue {
                field: format!("horizons[{i}]"),
                message: format!("horizon {h} is asked for twice"),
            });
        }
        out.push(j);
    }
    Ok(out)
}
