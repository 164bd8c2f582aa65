//! The LSTM recurrence on plain `f32` buffers: the forward pass over the window, keeping what
//! the backward pass needs, and backpropagation through time from the gradient of the last
//! hidden state.
//!
//! Layouts (row-major): `x` is `[batch, time, input]`; `w` is `[input + hidden, 4 hidden]`, the
//! input rows first, the gates in the order input, forget, output, cell; `b` is `[4 hidden]`.
//! Per hour and batch row, `z = [x(t), h(t - 1)] w + b`, `i, f, o = sigmoid`, `g = tanh`,
//! `c = f c + i g`, `h = o tanh(c)`, from `h = c = 0`.
//!
//! The products are `[1, input + hidden] x [input + hidden, 4 hidden]` per row, small enough that
//! loops over rows of `w` (which the compiler vectorises) beat a general matrix product's setup;
//! the gradients of `w` and `b` are accumulated per row while that row's gate gradients are hot.

/// Sizes of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Batch rows.
    pub batch: usize,
    /// Hours.
    pub time: usize,
    /// Input channels per hour.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
}

impl Dims {
    /// Width of the stacked gates.
    fn gates(self) -> usize {
        4 * self.hidden
    }
}

/// The forward pass's record, for the backward pass: the inputs and, per hour and row
/// (`[time, batch, ..]`), the gates' activations, the cell state's tanh and the hidden state.
#[derive(Debug)]
pub(crate) struct Trace {
    dims: Dims,
    x: Vec<f32>,
    w: Vec<f32>,
    /// `[time, batch, 4 hidden]`: i, f, o (sigmoid) and g (tanh).
    gates: Vec<f32>,
    /// `[time, batch, hidden]`: c(t).
    cells: Vec<f32>,
    /// `[time, batch, hidden]`: tanh c(t).
    tanh_cells: Vec<f32>,
    /// `[time, batch, hidden]`: h(t).
    hiddens: Vec<f32>,
}

impl Trace {
    /// The sizes of the call recorded.
    pub(crate) fn dims(&self) -> Dims {
        self.dims
    }
}

/// Gradients of the inputs of [`forward`].
#[derive(Debug)]
pub(crate) struct Grads {
    /// `[batch, time, input]`, when asked for.
    pub x: Option<Vec<f32>>,
    /// `[input + hidden, 4 hidden]`.
    pub w: Vec<f32>,
    /// `[4 hidden]`.
    pub b: Vec<f32>,
}

/// The last hidden state `[batch, hidden]`, and with `keep` the record [`backward`] needs.
/// The buffers' lengths must match `dims` (the caller checks the tensors' shapes).
pub(crate) fn forward(
    x: Vec<f32>,
    w: Vec<f32>,
    b: &[f32],
    dims: Dims,
    keep: bool,
) -> (Vec<f32>, Option<Trace>) {
    let Dims {
        batch,
        time,
        input,
        hidden,
    } = dims;
    let ng = dims.gates();
    let kept = |width: usize| {
        if keep {
            vec![0.0; time * batch * width]
        } else {
            Vec::new()
        }
    };
    let (mut gates, mut cells, mut tanh_cells, mut hiddens) =
        (kept(ng), kept(hidden), kept(hidden), kept(hidden));
    let mut h = vec![0.0; batch * hidden];
    let mut c = vec![0.0; batch * hidden];
    let mut z = vec![0.0; ng];
    let mut tc = vec![0.0; hidden];
    let (w_x, w_h) = w.split_at(input * ng);
    for t in 0..time {
        for r in 0..batch {
            let hr = &mut h[r * hidden..(r + 1) * hidden];
            let cr = &mut c[r * hidden..(r + 1) * hidden];
            z.copy_from_slice(b);
            let xr = &x[(r * time + t) * input..(r * time + t + 1) * input];
            for (&v, row) in xr.iter().zip(w_x.chunks_exact(ng)) {
                axpy(&mut z, v, row);
            }
            for (&v, row) in hr.iter().zip(w_h.chunks_exact(ng)) {
                axpy(&mut z, v, row);
            }
            let (ifo, g) = z.split_at_mut(3 * hidden);
            ifo.iter_mut().for_each(|v| *v = sigmoid(*v));
            g.iter_mut().for_each(|v| *v = tanh(*v));
            let (i, rest) = ifo.split_at(hidden);
            let (f, o) = rest.split_at(hidden);
            for j in 0..hidden {
                cr[j] = f[j] * cr[j] + i[j] * g[j];
            }
            for j in 0..hidden {
                tc[j] = tanh(cr[j]);
                hr[j] = o[j] * tc[j];
            }
            if keep {
                let at = t * batch + r;
                gates[at * ng..(at + 1) * ng].copy_from_slice(&z);
                cells[at * hidden..(at + 1) * hidden].copy_from_slice(cr);
                tanh_cells[at * hidden..(at + 1) * hidden].copy_from_slice(&tc);
                hiddens[at * hidden..(at + 1) * hidden].copy_from_slice(hr);
            }
        }
    }
    let trace = keep.then_some(Trace {
        dims,
        x,
        w,
        gates,
        cells,
        tanh_cells,
        hiddens,
    });
    (h, trace)
}

/// Backpropagation through time from `dh_last` (`[batch, hidden]`, the gradient of the last
/// hidden state); the gradient of `x` only when `with_x`.
pub(crate) fn backward(trace: &Trace, dh_last: &[f32], with_x: bool) -> Grads {
    let Dims {
        batch,
        time,
        input,
        hidden,
    } = trace.dims;
    let ng = trace.dims.gates();
    let (w_x, w_h) = trace.w.split_at(input * ng);
    let (dw_len, x_len) = ((input + hidden) * ng, batch * time * input);
    let mut dw = vec![0.0; dw_len];
    let mut db = vec![0.0; ng];
    let mut dx = if with_x { vec![0.0; x_len] } else { Vec::new() };
    let mut dh = dh_last.to_vec();
    let mut dc = vec![0.0; batch * hidden];
    let mut dz = vec![0.0; ng];
    let zeros = vec![0.0; hidden];
    for t in (0..time).rev() {
        for r in 0..batch {
            let at = t * batch + r;
            let a = &trace.gates[at * ng..(at + 1) * ng];
            let tc = &trace.tanh_cells[at * hidden..(at + 1) * hidden];
            let (c_prev, h_prev) = if t > 0 {
                let before = (at - batch) * hidden..(at - batch + 1) * hidden;
                (&trace.cells[before.clone()], &trace.hiddens[before])
            } else {
                (&zeros[..], &zeros[..])
            };
            let dhr = &mut dh[r * hidden..(r + 1) * hidden];
            let dcr = &mut dc[r * hidden..(r + 1) * hidden];
            {
                let (dz_ifo, dz_g) = dz.split_at_mut(3 * hidden);
                let (dz_i, rest) = dz_ifo.split_at_mut(hidden);
                let (dz_f, dz_o) = rest.split_at_mut(hidden);
                let (i, rest) = a.split_at(hidden);
                let (f, rest) = rest.split_at(hidden);
                let (o, g) = rest.split_at(hidden);
                for j in 0..hidden {
                    let d_o = dhr[j] * tc[j];
                    let d_c = dcr[j] + dhr[j] * o[j] * (1.0 - tc[j] * tc[j]);
                    dz_i[j] = d_c * g[j] * i[j] * (1.0 - i[j]);
                    dz_f[j] = d_c * c_prev[j] * f[j] * (1.0 - f[j]);
                    dz_o[j] = d_o * o[j] * (1.0 - o[j]);
                    dz_g[j] = d_c * i[j] * (1.0 - g[j] * g[j]);
                    dcr[j] = d_c * f[j];
                }
            }
            // This row's share of dw = [x(t), h(t - 1)]^T dz and db = dz.
            axpy(&mut db, 1.0, &dz);
            let xr = &trace.x[(r * time + t) * input..(r * time + t + 1) * input];
            let (dw_x, dw_h) = dw.split_at_mut(input * ng);
            for (&v, row) in xr.iter().zip(dw_x.chunks_exact_mut(ng)) {
                axpy(row, v, &dz);
            }
            if t > 0 {
                for (&v, row) in h_prev.iter().zip(dw_h.chunks_exact_mut(ng)) {
                    axpy(row, v, &dz);
                }
            }
            if with_x {
                let dxr = &mut dx[(r * time + t) * input..(r * time + t + 1) * input];
                for (d, row) in dxr.iter_mut().zip(w_x.chunks_exact(ng)) {
                    *d = dot(row, &dz);
                }
            }
            // dh(t - 1) = dz w_h^T.
            for (d, row) in dhr.iter_mut().zip(w_h.chunks_exact(ng)) {
                *d = dot(row, &dz);
            }
        }
    }
    Grads {
        x: with_x.then_some(dx),
        w: dw,
        b: db,
    }
}

/// `y += a x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `a . b`, in eight interleaved partial sums (so the loop vectorises).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` to a few units in the last place, in branch-free arithmetic the compiler vectorises
/// (the standard library's calls libm one value at a time): `x = n ln 2 + r`, `|r| <= ln 2 / 2`,
/// a degree-6 polynomial for `e^r`, and `2^n` written into the exponent bits. Clamped to
/// `[-87, 88]`, where `e^x` is a normal `f32`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // The integer n sits in the low bits of `shifted`; add it to the exponent of 1.0.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_sigmoid_and_tanh_match_the_standard_library() {
        let mut worst = [0.0f32; 3];
        for k in -40_000..=40_000 {
            let x = k as f32 * 0.002;
            let e = (exp(x) - x.exp()).abs() / x.exp();
            let s = (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs();
            let t = (tanh(x) - x.tanh()).abs();
            worst = [worst[0].max(e), worst[1].max(s), worst[2].max(t)];
        }
        assert!(worst[0] < 1e-6, "exp relative error {}", worst[0]);
        assert!(worst[1] < 1e-6, "sigmoid error {}", worst[1]);
        assert!(worst[2] < 1e-6, "tanh error {}", worst[2]);
        assert!(sigmoid(-1e4) >= 0.0 && sigmoid(1e4) <= 1.0 && tanh(1e4) <= 1.0 && tanh(-1e4) >= -1.0);
        assert!(sigmoid(f32::NEG_INFINITY).is_finite() && tanh(f32::INFINITY).is_finite());
    }
}
