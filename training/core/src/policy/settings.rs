//! The risk settings a caller may ask for: SPEC's defaults, the ranges every caller checks them
//! against, and their names in JSON and on the command line.

/// SPEC's default quantile level of the drawdown.
pub const DEFAULT_ALPHA: f64 = 0.99;
/// SPEC's default liquidation window, hours.
pub const DEFAULT_TAU: usize = 4;
/// SPEC's default user reaction window, hours.
pub const DEFAULT_TAU_USER: usize = 24;
/// SPEC's default liquidation bonus (the floor of the derived bonus).
pub const DEFAULT_BONUS: f64 = 0.05;
/// Default margin over the expected slippage in the bonus.
pub const DEFAULT_BONUS_MARGIN: f64 = 0.01;
/// Default size liquidated for the slippage, USD.
pub const DEFAULT_SALE_SIZE_USD: f64 = 1e6;
/// Default largest relative step from a previous value.
pub const DEFAULT_MAX_STEP: f64 = 0.1;

/// An allowed range of a setting: its bounds and how it reads in an error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// Lower bound.
    pub min: f64,
    /// Whether the lower bound itself is allowed.
    pub min_inclusive: bool,
    /// Upper bound.
    pub max: f64,
    /// Whether the upper bound itself is allowed.
    pub max_inclusive: bool,
    /// The range in words, e.g. `(0.5, 0.9999]`.
    pub text: &'static str,
}

impl Range {
    /// Whether `v` is finite and inside.
    #[must_use]
    pub fn contains(&self, v: f64) -> bool {
        let above = if self.min_inclusive {
            v >= self.min
        } else {
            v > self.min
        };
        let below = if self.max_inclusive {
            v <= self.max
        } else {
            v < self.max
        };
        v.is_finite() && above && below
    }

    /// `v` when inside, else the error naming `field`.
    ///
    /// # Errors
    /// [`SettingsError`] when `v` is outside the range or not finite.
    pub fn check(&self, field: &str, v: f64) -> Result<f64, SettingsError> {
        if self.contains(v) {
            Ok(v)
        } else {
            Err(SettingsError {
                field: field.to_owned(),
                value: v,
                range: self.text,
            })
        }
    }
}

const fn range(min: f64, min_inclusive: bool, max: f64, max_inclusive: bool, text: &'static str) -> Range {
    Range {
        min,
        min_inclusive,
        max,
        max_inclusive,
        text,
    }
}

/// Quantile levels: the drawdown is calibrated for `alpha` in (0.5, 0.9999].
pub const ALPHA_RANGE: Range = range(0.5, false, 0.9999, true, "(0.5, 0.9999]");
/// Liquidation and user windows, hours: the drawdown calibration covers 1 to 168 h (a shortage
/// can lengthen the liquidation window up to twice the asked one).
pub const TAU_RANGE: Range = range(1.0, true, 168.0, true, "[1, 168]");
/// Bonus floor and bonus margin.
pub const BONUS_RANGE: Range = range(0.0, true, 1.0, false, "[0, 1)");
/// Sale size, USD.
pub const SALE_SIZE_RANGE: Range = range(0.0, true, 1e12, true, "[0, 1e12]");
/// Relative step from a previous value; also the range of a previous LT and max LTV.
pub const UNIT_RANGE: Range = range(0.0, true, 1.0, true, "[0, 1]");

/// `value` as an error message says it: as Rust writes it, except far from 1, where the
/// exponent form keeps it short (1e308 was written with 309 digits, 1e-320 with 320).
#[must_use]
pub fn said(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 || !magnitude.is_finite() || (1e-6..1e15).contains(&magnitude) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

/// A setting outside its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {} is outside {range}", said(*value))]
pub struct SettingsError {
    /// The setting's name as the caller gave it (JSON path or flag).
    pub field: String,
    /// The value given.
    pub value: f64,
    /// The allowed range, in words.
    pub range: &'static str,
}

/// Settings as asked: any may be left out for the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AskedSettings {
    /// Quantile level of the drawdown.
    pub alpha: Option<f64>,
    /// Liquidation window, hours.
    pub tau: Option<f64>,
    /// User reaction window, hours.
    pub tau_user: Option<f64>,
    /// Floor of the liquidation bonus.
    pub bonus: Option<f64>,
    /// Margin over the expected slippage.
    pub bonus_margin: Option<f64>,
    /// Size liquidated, USD.
    pub sale_size_usd: Option<f64>,
    /// Largest relative step from a previous value.
    pub max_step: Option<f64>,
}

/// Validated settings of the risk policy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RiskSettings {
    /// Quantile level of the drawdown, in [`ALPHA_RANGE`].
    pub alpha: f64,
    /// Liquidation window asked for, hours (before a shortage lengthens it), in [`TAU_RANGE`].
    pub tau: f64,
    /// User reaction window, hours, in [`TAU_RANGE`].
    pub tau_user: f64,
    /// Floor of the liquidation bonus, in [`BONUS_RANGE`].
    pub bonus: f64,
    /// Margin over the expected slippage, in [`BONUS_RANGE`].
    pub bonus_margin: f64,
    /// Size liquidated for the slippage, USD, in [`SALE_SIZE_RANGE`].
    pub sale_size_usd: f64,
    /// Largest relative step from a previous value, in [`UNIT_RANGE`].
    pub max_step: f64,
}

impl Default for RiskSettings {
    /// SPEC's defaults.
    fn default() -> Self {
        Self {
            alpha: DEFAULT_ALPHA,
            tau: DEFAULT_TAU as f64,
            tau_user: DEFAULT_TAU_USER as f64,
            bonus: DEFAULT_BONUS,
            bonus_margin: DEFAULT_BONUS_MARGIN,
            sale_size_usd: DEFAULT_SALE_SIZE_USD,
            max_step: DEFAULT_MAX_STEP,
        }
    }
}

impl RiskSettings {
    /// The settings `asked`, each left out taken from `defaults`; every value (asked or
    /// default) is checked against its range, and named in an error as `names` says.
    ///
    /// # Errors
    /// The first setting outside its range.
    pub fn resolve(
        asked: &AskedSettings,
        defaults: &Self,
        names: &SettingNames,
    ) -> Result<Self, SettingsError> {
        let pick = |asked: Option<f64>, default: f64| asked.unwrap_or(default);
        Ok(Self {
            alpha: ALPHA_RANGE.check(names.alpha, pick(asked.alpha, defaults.alpha))?,
            tau: TAU_RANGE.check(names.tau, pick(asked.tau, defaults.tau))?,
            tau_user: TAU_RANGE.check(names.tau_user, pick(asked.tau_user, defaults.tau_user))?,
            bonus: BONUS_RANGE.check(names.bonus, pick(asked.bonus, defaults.bonus))?,
            bonus_margin: BONUS_RANGE.check(
                names.bonus_margin,
                pick(asked.bonus_margin, defaults.bonus_margin),
            )?,
            sale_size_usd: SALE_SIZE_RANGE.check(
                names.sale_size_usd,
                pick(asked.sale_size_usd, defaults.sale_size_usd),
            )?,
            max_step: UNIT_RANGE.check(names.max_step, pick(asked.max_step, defaults.max_step))?,
        })
    }
}

/// How each setting is named to the caller in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingNames {
    /// Name of `alpha`.
    pub alpha: &'static str,
    /// Name of `tau`.
    pub tau: &'static str,
    /// Name of `tau_user`.
    pub tau_user: &'static str,
    /// Name of `bonus`.
    pub bonus: &'static str,
    /// Name of `bonus_margin`.
    pub bonus_margin: &'static str,
    /// Name of `sale_size_usd`.
    pub sale_size_usd: &'static str,
    /// Name of `max_step`.
    pub max_step: &'static str,
}

/// The names in the JSON bodies of the risk routes.
pub const JSON_NAMES: SettingNames = SettingNames {
    alpha: "alpha",
    tau: "tau_hours",
    tau_user: "tau_user_hours",
    bonus: "bonus",
    bonus_margin: "bonus_margin",
    sale_size_usd: "sale_size_usd",
    max_step: "max_step",
};

/// The names of the command-line flags.
pub const FLAG_NAMES: SettingNames = SettingNames {
    alpha: "--alpha",
    tau: "--tau",
    tau_user: "--tau-user",
    bonus: "--bonus",
    bonus_margin: "--bonus-margin",
    sale_size_usd: "--sale-size",
    max_step: "--max-step",
};
