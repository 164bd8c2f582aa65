//! The neural volatility and liquidity model (burn): a sequence encoder (causal dilated
//! temporal convolutions, or an LSTM) over the last hours, joined with the static features, and
//! per-horizon heads for log variance, RV quantiles and shortage probability.
//!
//! The log-variance head has a linear skip from the static features that training initialises
//! to a least-squares fit of log RV (a HAR regression on a richer set of regressors), so the
//! network starts where the econometric model ends and learns the remainder.

use burn::nn::activation::Activation;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig, PaddingConfig1d};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softplus};

mod ensemble;
pub use ensemble::Ensemble;

/// Which sequence encoder.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// Causal dilated 1-D convolutions with residual connections.
    Tcn,
    /// A single-layer LSTM; its last hidden state summarises the window.
    Lstm,
}

/// Architecture of [`VolModel`].
#[derive(Config, Debug)]
pub struct VolModelConfig {
    /// Static features.
    pub n_static: usize,
    /// Sequence channels per hour.
    pub n_channels: usize,
    /// Horizons predicted.
    pub n_horizons: usize,
    /// RV quantile levels, increasing.
    pub quantile_levels: Vec<f64>,
    /// Sequence encoder.
    #[config(default = "EncoderKind::Tcn")]
    pub encoder: EncoderKind,
    /// Channels of the convolution stack (or LSTM hidden size).
    #[config(default = 16)]
    pub channels: usize,
    /// Convolution kernel size.
    #[config(default = 2)]
    pub kernel: usize,
    /// Convolution layers; layer i has dilation 2^i.
    #[config(default = 7)]
    pub layers: usize,
    /// Width of the trunk joining sequence summary and static features.
    #[config(default = 64)]
    pub hidden: usize,
    /// Static features hidden from the trunk (levels such as ln RV or illiquidity, which let a
    /// network recognise assets and regimes instead of patterns); the linear skip still sees them.
    #[config(default = "Vec::new()")]
    pub trunk_excluded: Vec<usize>,
    /// Serve the log variance as the lognormal mean, `mu + sigma^2 / 2`: `mu` the log-variance
    /// head's output (trained on the squared log error, the conditional mean of log RV), `sigma`
    /// the network's own spread of log RV from its quantile heads ([`LognormalSpread`]). `None`
    /// (and a config written before this field) or `Some(false)`: the head's output is the log
    /// variance.
    pub lognormal_mean: Option<bool>,
}

/// How the lognormal mean reads the spread of log RV from the quantile heads: `sigma = (q_hi -
/// q_lo) / (z_hi - z_lo)`, the two levels symmetric about the median (0.05 and 0.95 by default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LognormalSpread {
    /// Index of the lower level.
    pub lo: usize,
    /// Index of the upper level.
    pub hi: usize,
    /// `1 / (z_hi - z_lo)`.
    pub inv_width: f32,
}

impl LognormalSpread {
    /// `sigma^2 / 2` per row and horizon from `log_quantiles` (`[batch, h, k]`): `[batch, h]`.
    #[must_use]
    pub fn half_variance(&self, log_quantiles: &Tensor<3>) -> Tensor<2> {
        let [batch, h, _] = log_quantiles.dims();
        let width = log_quantiles.clone().narrow(2, self.hi, 1) - log_quantiles.clone().narrow(2, self.lo, 1);
        let sigma = width.reshape([batch, h]) * self.inv_width;
        sigma.clone() * sigma * 0.5
    }
}

/// Causal dilated convolutions with residuals: `[batch, channels_in, time] -> [batch, channels]`
/// (the last time step).
#[derive(Module, Debug)]
pub struct Tcn {
    input: Conv1d,
    layers: Vec<Conv1d>,
}

/// LSTM summariser: `[batch, time, channels_in] -> [batch, hidden]` (the last time step).
#[derive(Module, Debug)]
pub struct LstmEncoder {
    lstm: Lstm,
}

/// The model.
#[derive(Module, Debug)]
pub struct VolModel {
    #[module(skip)]
    trunk_mask: Vec<f32>,
    /// With [`VolModelConfig::lognormal_mean`], where the spread of log RV is read.
    #[module(skip)]
    lognormal: Option<LognormalSpread>,
    tcn: Option<Tcn>,
    lstm: Option<LstmEncoder>,
    trunk_in: Linear,
    trunk_out: Linear,
    /// Linear skip from static features to log variance, initialised by least squares.
    pub variance_skip: Linear,
    variance_head: Linear,
    quantile_head: Linear,
    /// Linear skip from static features to the shortage logit: a random start, or the
    /// baseline's logistic map, frozen (`TrainingConfig::shortage_skip_from_baseline`).
    pub shortage_skip: Linear,
    shortage_head: Linear,
}

/// What the model says for a batch.
#[derive(Debug, Clone)]
pub struct VolOutput {
    /// Log forecast variance per horizon: `[batch, horizons]`.
    pub log_variance: Tensor<2>,
    /// Log RV quantiles, increasing in the level: `[batch, horizons, levels]`.
    pub log_quantiles: Tensor<3>,
    /// Shortage logit per horizon: `[batch, horizons]`.
    pub shortage_logit: Tensor<2>,
}

impl VolModelConfig {
    /// Whether the log variance is served as the lognormal mean ([`Self::lognormal_mean`]).
    #[must_use]
    pub fn has_lognormal_mean(&self) -> bool {
        self.lognormal_mean == Some(true)
    }

    /// With [`Self::lognormal_mean`], the levels its spread is read from: the lowest level below
    /// the median and the level at one minus it.
    ///
    /// # Errors
    /// With `lognormal_mean`, when the quantile levels hold no such pair.
    pub fn lognormal_spread(&self) -> Result<Option<LognormalSpread>, String> {
        if !self.has_lognormal_mean() {
            return Ok(None);
        }
        let levels = &self.quantile_levels;
        let pair = levels.iter().position(|&l| l > 0.0 && l < 0.5).and_then(|lo| {
            let hi = levels
                .iter()
                .position(|&u| (u - (1.0 - levels[lo])).abs() < 1e-9)?;
            Some((lo, hi))
        });
        let Some((lo, hi)) = pair else {
            return Err(format!(
                "model.lognormal_mean needs two quantile levels symmetric about 0.5 (such as 0.05 and 0.95); the levels are {levels:?}"
            ));
        };
        let width = volcast_core::backtest::normal_quantile(levels[hi])
            - volcast_core::backtest::normal_quantile(levels[lo]);
        Ok(Some(LognormalSpread {
            lo,
            hi,
            inv_width: (1.0 / width) as f32,
        }))
    }

    /// Builds the model with fresh weights on `device`.
    #[must_use]
    pub fn init(&self, device: &Device) -> VolModel {
        let summary = self.channels;
        let (tcn, lstm) = match self.encoder {
            EncoderKind::Tcn => {
                let input = Conv1dConfig::new(self.n_channels, self.channels, 1).init(device);
                let layers = (0..self.layers)
                    .map(|i| {
                        let dilation = 1 << i;
                        Conv1dConfig::new(self.channels, self.channels, self.kernel)
                            .with_dilation(dilation)
                            .with_padding(PaddingConfig1d::Explicit((self.kernel - 1) * dilation, 0))
                            .init(device)
                    })
                    .collect();
                (Some(Tcn { input, layers }), None)
            }
            EncoderKind::Lstm => (
                None,
                Some(LstmEncoder {
                    lstm: LstmConfig::new(self.n_channels, self.channels, true).init(device),
                }),
            ),
        };
        let h = self.n_horizons;
        let k = self.quantile_levels.len();
        let trunk_mask = (0..self.n_static)
            .map(|i| {
                if self.trunk_excluded.contains(&i) {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        VolModel {
            trunk_mask,
            lognormal: self.lognormal_spread().ok().flatten(),
            tcn,
            lstm,
            trunk_in: LinearConfig::new(summary + self.n_static, self.hidden).init(device),
            trunk_out: LinearConfig::new(self.hidden, self.hidden).init(device),
            variance_skip: LinearConfig::new(self.n_static, h).init(device),
            variance_head: zero_linear(self.hidden, h, device),
            quantile_head: zero_linear(self.hidden, h * k, device),
            shortage_skip: LinearConfig::new(self.n_static, h).init(device),
            shortage_head: zero_linear(self.hidden, h, device),
        }
    }
}

/// A linear layer whose output starts at zero, so a fresh head adds nothing to the skip.
fn zero_linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_initializer(nn::Initializer::Zeros)
        .init(device)
}

impl Tcn {
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let span = 1usize << self.layers.len();
        let [_, time, _] = x.dims();
        if time >= span && self.layers.iter().all(|c| c.kernel_size == 2) {
            self.forward_last(x, span)
        } else {
            self.forward_all(x)
        }
    }

    /// The last time step only, computing just the steps it depends on: with kernel 2 and
    /// dilation `2^i`, layer `i` needs its input at `2^(L-i)` steps spaced `2^i` apart, so the
    /// stack reads the last `2^L` hours and halves them at each layer (127 output steps in all
    /// instead of `L` times the window). Each layer is then one matrix product on adjacent
    /// pairs `[h(p - d), h(p)]`, with the same weights as the convolution: the same function
    /// as [`Self::forward_all`] (to rounding), several times cheaper to train.
    fn forward_last(&self, x: Tensor<3>, span: usize) -> Tensor<2> {
        use burn::tensor::module::linear;
        let [batch, time, c_in] = x.dims();
        let x = x.narrow(1, time - span, span); // [batch, span, channels_in]
        let w = self.input.weight.val(); // [channels, channels_in, 1]
        let c = w.dims()[0];
        let w = w.reshape([c, c_in]).transpose(); // [channels_in, channels]
        let mut h = linear(x, w, self.input.bias.as_ref().map(burn::module::Param::val)); // [batch, span, channels]
        let mut n = span;
        for conv in &self.layers {
            n /= 2;
            // Adjacent steps (p - d, p) side by side: [batch, n, 2 channels].
            let pairs = h.reshape([batch, n, 2 * c]);
            // [channels_out, channels_in, 2] -> [2 channels_in, channels_out], tap 0 (p - d) first.
            let w = conv.weight.val().permute([2, 1, 0]).reshape([2 * c, c]);
            let out = linear(pairs.clone(), w, conv.bias.as_ref().map(burn::module::Param::val));
            h = pairs.narrow(2, c, c) + gelu(out); // [batch, n, channels]
        }
        h.reshape([batch, c])
    }

    /// Every time step through the convolutions, then the last one.
    fn forward_all(&self, x: Tensor<3>) -> Tensor<2> {
        // x: [batch, time, channels_in] -> [batch, channels_in, time]
        let x = x.swap_dims(1, 2);
        let mut h = self.input.forward(x); // [batch, channels, time]
        for conv in &self.layers {
            h = h.clone() + gelu(conv.forward(h)); // causal: left padding only, same length
        }
        let [batch, channels, time] = h.dims();
        h.narrow(2, time - 1, 1).reshape([batch, channels]) // [batch, channels]
    }
}

impl LstmEncoder {
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        self.forward_last(x, true)
    }

    /// The forget gate, when the LSTM is the plain one that [`crate::lstm_fused`] computes (batch first, forward in time, no clipping, burn's default
    /// activations).
    fn plain_forget_gate(&self) -> Option<&nn::GateController> {
        let l = &self.lstm;
        let plain = l.batch_first
            && !l.reverse
            && l.clip.is_none()
            && matches!(l.gate_activation, Activation::Sigmoid(_))
            && matches!(l.cell_activation, Activation::Tanh(_))
            && matches!(l.hidden_activation, Activation::Tanh(_));
        l.forget_gate.as_ref().filter(|_| plain)
    }

    /// burn's LSTM weights with the four gates' input and hidden transforms stacked into one
    /// `[channels_in + hidden, 4 hidden]` matrix (input rows first, gates in the order input,
    /// forget, output, cell) and their biases summed into one `[1, 4 hidden]` row.
    fn stacked(&self, forget: &nn::GateController, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let l = &self.lstm;
        let gates = [&l.input_gate, forget, &l.output_gate, &l.cell_gate];
        let hidden = l.d_hidden;
        let input_w = Tensor::cat(gates.iter().map(|g| g.input_transform.weight.val()).collect(), 1);
        let hidden_w = Tensor::cat(gates.iter().map(|g| g.hidden_transform.weight.val()).collect(), 1);
        let w = Tensor::cat(vec![input_w, hidden_w], 0);
        let biases: Vec<Tensor<1>> = gates
            .iter()
            .map(|g| {
                let bias = |lin: &Linear| {
                    lin.bias
                        .as_ref()
                        .map_or_else(|| Tensor::zeros([hidden], device), burn::module::Param::val)
                };
                bias(&g.input_transform) + bias(&g.hidden_transform)
            })
            .collect();
        (w, Tensor::cat(biases, 0).reshape([1, 4 * hidden]))
    }

    /// The last hidden state of the plain LSTM from the stacked weights: with `fused`,
    /// [`crate::lstm_fused::last_state`] (the CPU's fused operation where it applies), else
    /// composed from tensor operations (wgpu's path; on the CPU the path before the fused
    /// operation). Any other LSTM runs burn's over the window.
    fn forward_last(&self, x: Tensor<3>, fused: bool) -> Tensor<2> {
        let Some(forget) = self.plain_forget_gate() else {
            return self.forward_all(x);
        };
        let (w, b) = self.stacked(forget, &x.device());
        if fused {
            crate::lstm_fused::last_state(x, &w, &b)
        } else {
            crate::lstm_fused::composed_last_state(x, &w, &b)
        }
    }

    /// burn's LSTM over the window, then the last hour.
    fn forward_all(&self, x: Tensor<3>) -> Tensor<2> {
        let (out, _) = self.lstm.forward(x, None); // [batch, time, hidden]
        let [batch, time, hidden] = out.dims();
        out.narrow(1, time - 1, 1).reshape([batch, hidden]) // [batch, hidden]
    }
}

/// How [`VolModel::forward_through`] runs the sequence encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderPath {
    /// As trained: the last-step paths, and the CPU's fused LSTM ([`VolModel::forward`]).
    AsTrained,
    /// The LSTM's last state composed from tensor operations, as on wgpu (the CPU's path before
    /// the fused operation); the TCN's is as trained.
    Composed,
    /// Every hour of the window through the convolutions or burn's LSTM: the step before the
    /// last-step paths.
    EveryHour,
}

impl EncoderPath {
    /// Each path, as `train --bench` profiles them.
    pub const ALL: [Self; 3] = [Self::AsTrained, Self::Composed, Self::EveryHour];
}

impl VolModel {
    /// Forward pass.
    ///
    /// `sequence`: `[batch, window, channels]` scaled hourly inputs; `statics`: `[batch,
    /// n_static]` standardised static features.
    #[must_use]
    pub fn forward(&self, sequence: Tensor<3>, statics: Tensor<2>) -> VolOutput {
        self.forward_through(sequence, statics, EncoderPath::AsTrained)
    }

    /// [`Self::forward`] with the sequence encoder run along `path`: the same function each way
    /// (to rounding), the others slower. Kept for the tests and `train --bench`'s comparison.
    #[must_use]
    pub fn forward_through(&self, sequence: Tensor<3>, statics: Tensor<2>, path: EncoderPath) -> VolOutput {
        let summary = match (&self.tcn, &self.lstm, path) {
            (Some(tcn), _, EncoderPath::EveryHour) => tcn.forward_all(sequence),
            (Some(tcn), _, _) => tcn.forward(sequence),
            (None, Some(lstm), EncoderPath::AsTrained) => lstm.forward(sequence),
            (None, Some(lstm), EncoderPath::Composed) => lstm.forward_last(sequence, false),
            (None, Some(lstm), EncoderPath::EveryHour) => lstm.forward_all(sequence),
            (None, None, _) => unreachable!("a VolModel always has one encoder"),
        }; // [batch, channels]
        self.heads(summary, statics)
    }

    /// The trunk and heads on the sequence `summary` (`[batch, channels]`) and the statics.
    fn heads(&self, summary: Tensor<2>, statics: Tensor<2>) -> VolOutput {
        let n_static = self.trunk_mask.len();
        let mask = Tensor::<1>::from_data(
            TensorData::new(self.trunk_mask.clone(), [n_static]),
            &statics.device(),
        )
        .reshape([1, n_static]); // [1, n_static]
        let joined = Tensor::cat(vec![summary, statics.clone() * mask], 1); // [batch, channels + n_static]
        let z = gelu(self.trunk_out.forward(gelu(self.trunk_in.forward(joined)))); // [batch, hidden]

        // The head's output: the log variance, or with the lognormal mean the mean of log RV.
        let head = self.variance_skip.forward(statics.clone()) + self.variance_head.forward(z.clone()); // [batch, h]
        let [batch, horizons] = head.dims();
        let offsets = self.quantile_head.forward(z.clone()); // [batch, h * k]
        let levels = offsets.dims()[1] / horizons;
        let offsets = offsets.reshape([batch, horizons, levels]); // [batch, h, k]
        // Increasing quantiles: first offset free, then positive steps.
        let first = offsets.clone().narrow(2, 0, 1); // [batch, h, 1]
        let steps = softplus(offsets.narrow(2, 1, levels - 1), 1.0); // [batch, h, k-1]
        let cumulative = Tensor::cat(vec![first, steps], 2).cumsum(2); // [batch, h, k]
        let log_quantiles = head.clone().unsqueeze_dim::<3>(2) + cumulative; // [batch, h, k]
        let log_variance = match &self.lognormal {
            Some(spread) => head + spread.half_variance(&log_quantiles),
            None => head,
        };
        let shortage_logit = self.shortage_skip.forward(statics) + self.shortage_head.forward(z); // [batch, h]
        VolOutput {
            log_variance,
            log_quantiles,
            shortage_logit,
        }
    }

    /// Replaces the weights of the linear skip to log variance (`weight`: `[n_static, h]`
    /// row-major, `bias`: `[h]`).
    #[must_use]
    pub fn with_variance_skip(mut self, weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        self.variance_skip = linear_from(weight, bias, device);
        self
    }

    /// Replaces the weights of the linear skip to the shortage logit (`weight`: `[n_static, h]`
    /// row-major, `bias`: `[h]`).
    #[must_use]
    pub fn with_shortage_skip(mut self, weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Self {
        self.shortage_skip = linear_from(weight, bias, device);
        self
    }

    /// Stops gradients to the linear skip to the shortage logit when `frozen`.
    #[must_use]
    pub fn with_frozen_shortage_skip(mut self, frozen: bool) -> Self {
        if frozen {
            self.shortage_skip = self.shortage_skip.no_grad();
        }
        self
    }

    /// Stops gradients to the linear skip when `frozen`.
    #[must_use]
    pub fn with_frozen_skip(mut self, frozen: bool) -> Self {
        if frozen {
            self.variance_skip = self.variance_skip.no_grad();
        }
        self
    }

    /// Sets the starting quantile offsets (`[h * k]`, per horizon the first offset then the
    /// softplus-inverse steps) as the quantile head's bias.
    #[must_use]
    pub fn with_quantile_bias(mut self, bias: Vec<f32>, device: &Device) -> Self {
        let n = bias.len();
        self.quantile_head.bias = Some(burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [n]),
            device,
        )));
        self
    }
}

fn linear_from(weight: Vec<f32>, bias: Vec<f32>, device: &Device) -> Linear {
    let (d_out, d_in) = (bias.len(), weight.len() / bias.len().max(1));
    Linear {
        weight: burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [d_in, d_out]),
            device,
        )),
        bias: Some(burn::module::Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d_out]),
            device,
        ))),
    }
}

#[cfg(test)]
mod tests;
