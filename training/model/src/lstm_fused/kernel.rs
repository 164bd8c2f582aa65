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

/// The largest hidden size the fused operation takes (its scratch lives on the stack).
pub(crate) const MAX_HIDDEN: usize = 64;

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

/// What the backward pass reads of the forward pass: its inputs and [`Record`].
#[derive(Debug)]
pub(crate) struct Trace {
    dims: Dims,
    x: Vec<f32>,
    w: Vec<f32>,
    record: Record,
}

/// Per hour and row (`[time, batch, ..]`), the gates' activations, the cell state, its tanh
/// and the hidden state.
#[derive(Debug)]
pub(crate) struct Record {
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
    let (h, record) = pulp::Arch::new().dispatch(Forward {
        x: &x,
        w: &w,
        b,
        dims: &dims,
        keep,
    });
    let trace = record.map(|record| Trace { dims, x, w, record });
    (h, trace)
}

/// [`forward`]'s arguments, for [`pulp`]'s dispatch to the widest instruction set the CPU has
/// (references only: pulp passes up to eight words in registers to the vectorised copy, and a
/// larger argument loses it).
struct Forward<'a> {
    x: &'a [f32],
    w: &'a [f32],
    b: &'a [f32],
    dims: &'a Dims,
    keep: bool,
}

impl pulp::WithSimd for Forward<'_> {
    type Output = (Vec<f32>, Option<Record>);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        // The model's size gets a copy with every length known at compile time, which keeps
        // the gates' accumulators in registers.
        if self.dims.hidden == 16 {
            forward_loops::<16>(self.x, self.w, self.b, *self.dims, self.keep)
        } else {
            forward_loops::<0>(self.x, self.w, self.b, *self.dims, self.keep)
        }
    }
}

/// [`forward`]'s body, inlined into each instruction set's copy; `H` is the hidden size when
/// known at compile time, else 0.
#[inline(always)]
fn forward_loops<const H: usize>(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dims: Dims,
    keep: bool,
) -> (Vec<f32>, Option<Record>) {
    let Dims {
        batch, time, input, ..
    } = dims;
    let hidden = if H == 0 { dims.hidden } else { H };
    let ng = 4 * hidden;
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
    let (mut z, mut tc) = ([0.0; 4 * MAX_HIDDEN], [0.0; MAX_HIDDEN]);
    let (z, tc) = (&mut z[..ng], &mut tc[..hidden]);
    let (w_x, w_h) = w.split_at(input * ng);
    for t in 0..time {
        for r in 0..batch {
            let hr = &mut h[r * hidden..(r + 1) * hidden];
            let cr = &mut c[r * hidden..(r + 1) * hidden];
            let xr = &x[(r * time + t) * input..(r * time + t + 1) * input];
            affine(z, b, [(xr, w_x), (hr, w_h)]);
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
                gates[at * ng..(at + 1) * ng].copy_from_slice(z);
                cells[at * hidden..(at + 1) * hidden].copy_from_slice(cr);
                tanh_cells[at * hidden..(at + 1) * hidden].copy_from_slice(tc);
                hiddens[at * hidden..(at + 1) * hidden].copy_from_slice(hr);
            }
        }
    }
    let record = keep.then_some(Record {
        gates,
        cells,
        tanh_cells,
        hiddens,
    });
    (h, record)
}

/// Backpropagation through time from `dh_last` (`[batch, hidden]`, the gradient of the last
/// hidden state); the gradient of `x` only when `with_x`.
pub(crate) fn backward(trace: &Trace, dh_last: &[f32], with_x: bool) -> Grads {
    pulp::Arch::new().dispatch(Backward {
        trace,
        dh_last,
        with_x,
    })
}

/// [`backward`]'s arguments, for [`pulp`]'s dispatch.
struct Backward<'a> {
    trace: &'a Trace,
    dh_last: &'a [f32],
    with_x: bool,
}

impl pulp::WithSimd for Backward<'_> {
    type Output = Grads;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        if self.trace.dims.hidden == 16 {
            backward_loops::<16>(self.trace, self.dh_last, self.with_x)
        } else {
            backward_loops::<0>(self.trace, self.dh_last, self.with_x)
        }
    }
}

/// [`backward`]'s body, inlined into each instruction set's copy.
#[inline(always)]
fn backward_loops<const H: usize>(trace: &Trace, dh_last: &[f32], with_x: bool) -> Grads {
    let Dims {
        batch, time, input, ..
    } = trace.dims;
    let hidden = if H == 0 { trace.dims.hidden } else { H };
    let ng = 4 * hidden;
    let w_x = &trace.w[..input * ng];
    // w_h transposed, [4 hidden, hidden]: dh(t - 1) = dz w_h^T is then a sum of its rows.
    let mut w_h_t = vec![0.0; ng * hidden];
    for (j, row) in trace.w[input * ng..].chunks_exact(ng).enumerate() {
        for (g, &v) in row.iter().enumerate() {
            w_h_t[g * hidden + j] = v;
        }
    }
    let mut dw = vec![0.0; (input + hidden) * ng];
    let mut db = vec![0.0; ng];
    let mut dx = if with_x {
        vec![0.0; batch * time * input]
    } else {
        Vec::new()
    };
    let mut dh = dh_last.to_vec();
    let mut dc = vec![0.0; batch * hidden];
    // Scratch on the stack: known not to alias the buffers, and kept in registers when `H` is
    // known.
    let (mut dz, mut dc_prev, mut dh_prev) = ([0.0; 4 * MAX_HIDDEN], [0.0; MAX_HIDDEN], [0.0; MAX_HIDDEN]);
    let (dz, dc_prev, dh_prev) = (&mut dz[..ng], &mut dc_prev[..hidden], &mut dh_prev[..hidden]);
    let zeros = [0.0; MAX_HIDDEN];
    for t in (0..time).rev() {
        for r in 0..batch {
            let at = t * batch + r;
            let a = &trace.record.gates[at * ng..(at + 1) * ng];
            let tc = &trace.record.tanh_cells[at * hidden..(at + 1) * hidden];
            let (c_prev, h_prev) = if t > 0 {
                let before = (at - batch) * hidden..(at - batch + 1) * hidden;
                (&trace.record.cells[before.clone()], &trace.record.hiddens[before])
            } else {
                (&zeros[..hidden], &zeros[..hidden])
            };
            let dhr = &mut dh[r * hidden..(r + 1) * hidden];
            let dcr = &mut dc[r * hidden..(r + 1) * hidden];
            {
                let (i, f, o, g) = (
                    &a[..hidden],
                    &a[hidden..2 * hidden],
                    &a[2 * hidden..3 * hidden],
                    &a[3 * hidden..],
                );
                for j in 0..hidden {
                    let d_o = dhr[j] * tc[j];
                    let d_c = dcr[j] + dhr[j] * o[j] * (1.0 - tc[j] * tc[j]);
                    dz[j] = d_c * g[j] * i[j] * (1.0 - i[j]);
                    dz[hidden + j] = d_c * c_prev[j] * f[j] * (1.0 - f[j]);
                    dz[2 * hidden + j] = d_o * o[j] * (1.0 - o[j]);
                    dz[3 * hidden + j] = d_c * i[j] * (1.0 - g[j] * g[j]);
                    dc_prev[j] = d_c * f[j];
                }
            }
            dcr.copy_from_slice(dc_prev);
            // This row's share of dw = [x(t), h(t - 1)]^T dz and db = dz.
            axpy(&mut db, 1.0, dz);
            let xr = &trace.x[(r * time + t) * input..(r * time + t + 1) * input];
            let (dw_x, dw_h) = dw.split_at_mut(input * ng);
            for (&v, row) in xr.iter().zip(dw_x.chunks_exact_mut(ng)) {
                axpy(row, v, dz);
            }
            if t > 0 {
                for (&v, row) in h_prev.iter().zip(dw_h.chunks_exact_mut(ng)) {
                    axpy(row, v, dz);
                }
            }
            if with_x {
                let dxr = &mut dx[(r * time + t) * input..(r * time + t + 1) * input];
                for (d, row) in dxr.iter_mut().zip(w_x.chunks_exact(ng)) {
                    *d = dot(row, dz);
                }
            }
            // dh(t - 1) = dz w_h^T.
            dh_prev.fill(0.0);
            for (&v, row) in dz.iter().zip(w_h_t.chunks_exact(hidden)) {
                axpy(dh_prev, v, row);
            }
            dhr.copy_from_slice(dh_prev);
        }
    }
    Grads {
        x: with_x.then_some(dx),
        w: dw,
        b: db,
    }
}

/// `z = b + sum over parts (v, w) of v w`, each `w` holding `v.len()` rows of `z.len()`: eight
/// columns at a time, their sums held in one vector register through all the rows.
#[inline(always)]
fn affine(z: &mut [f32], b: &[f32], parts: [(&[f32], &[f32]); 2]) {
    const LANES: usize = 8;
    let n = z.len();
    let (chunks, rest) = z.as_chunks_mut::<LANES>();
    let split = n - rest.len();
    for (c, out) in chunks.iter_mut().enumerate() {
        let at = c * LANES;
        let mut acc = [0.0f32; LANES];
        acc.copy_from_slice(&b[at..at + LANES]);
        for (v, w) in parts {
            for (&v, row) in v.iter().zip(w.chunks_exact(n)) {
                let row = &row[at..at + LANES];
                for l in 0..LANES {
                    acc[l] += v * row[l];
                }
            }
        }
        *out = acc;
    }
    rest.copy_from_slice(&b[split..]);
    for (v, w) in parts {
        for (&v, row) in v.iter().zip(w.chunks_exact(n)) {
            axpy(rest, v, &row[split..]);
        }
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

#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore = "timing"]
    fn time_kernel() {
        let dims = Dims {
            batch: 128,
            time: 128,
            input: 5,
            hidden: 16,
        };
        let x: Vec<f32> = (0..dims.batch * dims.time * dims.input)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..21 * 64)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b = vec![0.1f32; 64];
        let dh = vec![1.0f32; dims.batch * dims.hidden];
        let n = 50;
        let (mut tf, mut tb) = (0.0, 0.0);
        for _ in 0..n {
            let t0 = std::time::Instant::now();
            let (h, trace) = forward(x.clone(), w.clone(), &b, dims, true);
            let t1 = std::time::Instant::now();
            let g = backward(trace.as_ref().unwrap(), &dh, false);
            let t2 = std::time::Instant::now();
            std::hint::black_box((h, g));
            tf = f64::min(if tf == 0.0 { f64::MAX } else { tf }, (t1 - t0).as_secs_f64());
            tb = f64::min(if tb == 0.0 { f64::MAX } else { tb }, (t2 - t1).as_secs_f64());
        }
        eprintln!(
            "TIMING batch 128: forward {:.3} ms, backward {:.3} ms",
            tf * 1e3,
            tb * 1e3
        );
    }
}
