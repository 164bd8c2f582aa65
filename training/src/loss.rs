//! Training losses, each masked to the points where its target exists and averaged over
//! `points`, the summed mask of such points in the whole batch: a batch split into parts (one per
//! core) gives parts whose losses, and so gradients, add up to the whole batch's. A mask is each
//! point's weight: 1 (or its row's recency weight) where the target exists, 0 where it does not.

use burn::prelude::*;
use burn::tensor::activation::softplus;

/// Mean QLIKE of log-variance forecasts `f` for log targets `y`: `exp(y - f) - (y - f) - 1`.
/// Shapes `[batch, horizons]`; `mask` is 1 where the target exists.
#[must_use]
pub fn qlike(f: Tensor<2>, y: Tensor<2>, mask: Tensor<2>, points: f32) -> Tensor<1> {
    let d = (y - f).clamp(-30.0, 30.0); // [batch, h]
    let loss = d.clone().exp() - d - 1.0;
    masked_mean(loss, mask, points)
}

/// Mean squared error of log-variance forecasts `f` for log targets `y`: `(y - f)^2`, the
/// conditional mean of log RV where QLIKE's is that of RV. Shapes `[batch, horizons]`.
#[must_use]
pub fn log_mse(f: Tensor<2>, y: Tensor<2>, mask: Tensor<2>, points: f32) -> Tensor<1> {
    let d = y - f;
    masked_mean(d.clone() * d, mask, points)
}

/// Mean pinball loss of log quantiles `q` (`[batch, h, k]`) for log targets `y` (`[batch, h]`)
/// at `levels`, over `points` targets (each scored at every level).
#[must_use]
pub fn pinball(q: Tensor<3>, y: Tensor<2>, mask: Tensor<2>, levels: &[f64], points: f32) -> Tensor<1> {
    let [batch, horizons, k] = q.dims();
    let device = q.device();
    let tau: Vec<f32> = levels.iter().map(|&l| l as f32).collect();
    let tau = Tensor::<1>::from_data(TensorData::new(tau, [k]), &device).reshape([1, 1, k]); // [1, 1, k]
    let e = y.unsqueeze_dim::<3>(2) - q; // [batch, h, k]
    let loss = (e.clone() * tau.clone()).max_pair(e * (tau - 1.0)); // [batch, h, k]
    let mask = mask.unsqueeze_dim::<3>(2).expand([batch, horizons, k]);
    (loss * mask).sum() / (points * k as f32).max(f32::MIN_POSITIVE)
}

/// Mean binary cross-entropy of logits `z` for labels `y` in {0, 1} (`[batch, h]`).
#[must_use]
pub fn bce(z: Tensor<2>, y: Tensor<2>, mask: Tensor<2>, points: f32) -> Tensor<1> {
    let loss = softplus(z.clone(), 1.0) - y * z;
    masked_mean(loss, mask, points)
}

/// The mask-weighted sum of `loss` over `points` (a sum of zeros stays 0 without points).
fn masked_mean(loss: Tensor<2>, mask: Tensor<2>, points: f32) -> Tensor<1> {
    (loss * mask).sum() / points.max(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2(v: Vec<f32>, shape: [usize; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().try_to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn losses_by_hand() {
        // QLIKE of f = ln 2 for y = 0 (rv = 1, F = 2): 0.5 + ln 2 - 1; masked point ignored.
        let q = qlike(
            t2(vec![2f32.ln(), 5.0], [1, 2]),
            t2(vec![0.0, 0.0], [1, 2]),
            t2(vec![1.0, 0.0], [1, 2]),
            1.0,
        );
        assert!((scalar(q) - (0.5 + 2f32.ln() - 1.0)).abs() < 1e-6);
        // Pinball at 0.9 of quantile 0 for y = 1: 0.9; at 0.1: 0.1; mean 0.5.
        let q3 = Tensor::<3>::zeros([1, 1, 2], &Device::flex());
        let p = pinball(q3, t2(vec![1.0], [1, 1]), t2(vec![1.0], [1, 1]), &[0.1, 0.9], 1.0);
        assert!((scalar(p) - 0.5).abs() < 1e-6);
        // BCE of logit 0: ln 2.
        let b = bce(
            t2(vec![0.0], [1, 1]),
            t2(vec![1.0], [1, 1]),
            t2(vec![1.0], [1, 1]),
            1.0,
        );
        assert!((scalar(b) - 2f32.ln()).abs() < 1e-6);
        // Squared log error of f = ln 2 for y = 0 and of f = 1 for y = 3, weighted 1 and 0.5,
        // over 1.5 points; a masked point ignored.
        let m = log_mse(
            t2(vec![2f32.ln(), 1.0, 7.0], [1, 3]),
            t2(vec![0.0, 3.0, 0.0], [1, 3]),
            t2(vec![1.0, 0.5, 0.0], [1, 3]),
            1.5,
        );
        let want = (2f32.ln().powi(2) + 0.5 * 4.0) / 1.5;
        let got = scalar(m);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}
