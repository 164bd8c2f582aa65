//! The encoders' fast paths against the slow ones and burn's own modules; shapes, causality.

use super::*;

fn config(encoder: EncoderKind) -> VolModelConfig {
    VolModelConfig::new(6, 5, 3, vec![0.05, 0.5, 0.95, 0.99])
        .with_encoder(encoder)
        .with_layers(3)
}

fn close(a: Tensor<2>, b: Tensor<2>) -> f32 {
    let a: Vec<f32> = a.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = b.into_data().try_to_vec().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The last-step path is the convolution stack's function: same outputs and same weight
/// gradients, for windows of exactly and more than the receptive field.
#[test]
fn tcn_last_step_path_matches_the_full_convolutions() {
    let device = Device::flex().autodiff();
    for (layers, window) in [(7, 128), (7, 160), (3, 8), (3, 32)] {
        let cfg = VolModelConfig::new(6, 5, 3, vec![0.5]).with_layers(layers);
        let model = cfg.init(&device);
        let tcn = model.tcn.as_ref().unwrap();
        let x = Tensor::<3>::random(
            [4, window, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let fast = tcn.forward_last(x.clone(), 1 << layers);
        let full = tcn.forward_all(x);
        let grads_fast = fast.clone().sum().backward();
        let grads_full = full.clone().sum().backward();
        assert!(
            close(fast, full) < 1e-4,
            "outputs, {layers} layers, window {window}"
        );
        for conv in std::iter::once(&tcn.input).chain(&tcn.layers) {
            let g = |grads: &burn::tensor::Gradients| {
                let g = conv.weight.val().grad(grads).unwrap();
                let n = g.dims().iter().product::<usize>();
                g.reshape([1, n])
            };
            assert!(
                close(g(&grads_fast), g(&grads_full)) < 1e-3,
                "weight gradients, {layers} layers, window {window}"
            );
        }
    }
}

/// The fused recurrence (the CPU's path) and the composed one (wgpu's) are burn's LSTM:
/// same last hidden state and the same gradients of every gate's weights and biases, at a
/// long batch, one row and one hour.
#[test]
fn lstm_last_state_paths_match_burns_lstm() {
    let device = Device::flex().autodiff();
    let model = VolModelConfig::new(6, 5, 3, vec![0.5])
        .with_encoder(EncoderKind::Lstm)
        .with_channels(8)
        .init(&device);
    let enc = model.lstm.as_ref().unwrap();
    let forget = enc.lstm.forget_gate.as_ref().unwrap();
    let l = &enc.lstm;
    for [batch, time] in [[4, 24], [1, 1], [1, 9], [3, 1]] {
        let x = Tensor::<3>::random(
            [batch, time, 5],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let full = enc.forward_all(x.clone());
        let grads_full = full.clone().sum().backward();
        for (path, out) in [
            ("fused", enc.forward(x.clone())),
            ("composed", enc.forward_last(x.clone(), false)),
        ] {
            let grads = out.clone().sum().backward();
            assert!(
                close(out, full.clone()) < 1e-5,
                "{path} outputs, batch {batch}, time {time}"
            );
            for gate in [&l.input_gate, forget, &l.output_gate, &l.cell_gate] {
                for lin in [&gate.input_transform, &gate.hidden_transform] {
                    let w = |grads: &burn::tensor::Gradients| lin.weight.val().grad(grads).unwrap();
                    let b = |grads: &burn::tensor::Gradients| {
                        let b = lin.bias.as_ref().unwrap().val().grad(grads).unwrap();
                        let n = b.dims()[0];
                        b.reshape([1, n])
                    };
                    assert!(close(w(&grads), w(&grads_full)) < 1e-4, "{path} weight gradients");
                    assert!(close(b(&grads), b(&grads_full)) < 1e-4, "{path} bias gradients");
                }
            }
        }
    }
}

#[test]
fn shapes_and_finiteness_of_each_encoder() {
    let device = Device::flex();
    for encoder in [EncoderKind::Tcn, EncoderKind::Lstm] {
        let model = config(encoder).init(&device);
        let seq = Tensor::<3>::random([4, 32, 5], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let stat = Tensor::<2>::random([4, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(seq, stat);
        assert_eq!(out.log_variance.dims(), [4, 3]);
        assert_eq!(out.log_quantiles.dims(), [4, 3, 4]);
        assert_eq!(out.shortage_logit.dims(), [4, 3]);
        let q: Vec<f32> = out.log_quantiles.into_data().try_to_vec().unwrap();
        assert!(q.iter().all(|v| v.is_finite()));
        for row in q.chunks(4) {
            assert!(
                row.windows(2).all(|w| w[0] <= w[1]),
                "quantiles must increase: {row:?}"
            );
        }
    }
}

#[test]
fn tcn_is_causal() {
    let device = Device::flex();
    let model = config(EncoderKind::Tcn).init(&device);
    let stat = Tensor::<2>::zeros([1, 6], &device);
    let base = Tensor::<3>::random([1, 32, 5], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let a: Vec<f32> = model
        .forward(base.clone(), stat.clone())
        .log_variance
        .into_data()
        .try_to_vec()
        .unwrap();
    // Changing inputs before the receptive field's start (1 + 7 = 8 steps) changes nothing;
    // the last step always matters through the residual path.
    let early = base
        .clone()
        .slice_assign([0..1, 0..8, 0..5], Tensor::zeros([1, 8, 5], &device));
    let b: Vec<f32> = model
        .forward(early, stat)
        .log_variance
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(a, b);
}

/// Each horizon served by its own networks: horizon h's outputs are the weighted mean of the
/// networks' outputs at h only; weights that do not fit are refused.
#[test]
fn horizon_weights_serve_each_horizon_from_its_own_networks() {
    let device = Device::flex();
    let c = config(EncoderKind::Tcn);
    let (a, b, d) = (c.init(&device), c.init(&device), c.init(&device));
    let seq = Tensor::<3>::random([4, 32, 5], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let stat = Tensor::<2>::random([4, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let out = |m: &VolModel| m.forward(seq.clone(), stat.clone());
    let (oa, ob, od) = (out(&a), out(&b), out(&d));
    // Horizons 0 and 1 from a, horizon 2 the mean of b and d.
    let weights = vec![vec![1.0, 1.0, 0.0], vec![0.0, 0.0, 0.5], vec![0.0, 0.0, 0.5]];
    Ensemble::check_horizon_weights(&weights, 3, 3).unwrap();
    let ensemble = Ensemble::from_members(vec![a, b, d])
        .unwrap()
        .with_horizon_weights(Some(weights));
    let got = ensemble.forward(seq.clone(), stat.clone());
    let column = |t: Tensor<2>, h: usize| t.slice([0..4, h..h + 1]);
    for h in 0..2 {
        assert!(
            close(
                column(got.log_variance.clone(), h),
                column(oa.log_variance.clone(), h)
            ) < 1e-6
        );
        assert!(
            close(
                column(got.shortage_logit.clone(), h),
                column(oa.shortage_logit.clone(), h)
            ) < 1e-6
        );
    }
    let mean = (column(ob.log_variance.clone(), 2) + column(od.log_variance.clone(), 2)).mul_scalar(0.5);
    assert!(close(column(got.log_variance.clone(), 2), mean) < 1e-6);
    let q = |o: &VolOutput| o.log_quantiles.clone().slice([0..4, 2..3, 0..4]).reshape([4, 4]);
    let qmean = (q(&ob) + q(&od)).mul_scalar(0.5);
    assert!(close(q(&got), qmean) < 1e-6);

    assert!(Ensemble::check_horizon_weights(&[vec![1.0, 1.0, 1.0]], 2, 3).is_err());
    assert!(Ensemble::check_horizon_weights(&[vec![1.0, 1.0]], 1, 3).is_err());
    assert!(Ensemble::check_horizon_weights(&[vec![0.5, 1.0, 1.0]], 1, 3).is_err());
    assert!(Ensemble::check_horizon_weights(&[vec![-1.0, 1.0, 1.0], vec![2.0, 0.0, 0.0]], 2, 3).is_err());
}

/// With the lognormal mean, the log variance served is the head's output (what the network
/// without it serves, the median of its quantiles' centre unchanged) plus half the square of the
/// spread read from the quantiles at 0.05 and 0.95; the quantiles themselves do not move.
#[test]
fn the_lognormal_mean_adds_half_the_quantiles_variance_of_log_rv() {
    let device = Device::flex();
    let cfg = config(EncoderKind::Tcn);
    let plain = cfg.init(&device);
    let spread = cfg
        .clone()
        .with_lognormal_mean(Some(true))
        .lognormal_spread()
        .unwrap()
        .unwrap();
    assert_eq!((spread.lo, spread.hi), (0, 2));
    assert!((f64::from(spread.inv_width) - 1.0 / (2.0 * 1.644_853_626_951_472)).abs() < 1e-6);
    let mut lognormal = plain.clone();
    lognormal.lognormal = Some(spread);
    let x = Tensor::<3>::random([4, 32, 5], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let s = Tensor::<2>::random([4, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let a = plain.forward(x.clone(), s.clone());
    let b = lognormal.forward(x, s);
    let qa: Vec<f32> = a.log_quantiles.clone().into_data().try_to_vec().unwrap();
    let qb: Vec<f32> = b.log_quantiles.clone().into_data().try_to_vec().unwrap();
    assert_eq!(qa, qb);
    let va: Vec<f32> = a.log_variance.into_data().try_to_vec().unwrap();
    let vb: Vec<f32> = b.log_variance.into_data().try_to_vec().unwrap();
    for (row, (x, y)) in va.iter().zip(&vb).enumerate() {
        let (r, h) = (row / 3, row % 3);
        let q = |l: usize| qa[(r * 3 + h) * 4 + l];
        let sigma = (q(2) - q(0)) / (2.0 * 1.644_853_6);
        assert!(sigma > 0.0);
        assert!(
            (y - (x + 0.5 * sigma * sigma)).abs() < 1e-5,
            "row {r} horizon {h}: {y} vs {x}"
        );
    }
    // Levels without a symmetric pair are refused; without the flag nothing is read.
    let odd = VolModelConfig::new(6, 5, 3, vec![0.1, 0.5, 0.99]).with_lognormal_mean(Some(true));
    assert!(odd.lognormal_spread().unwrap_err().contains("symmetric"));
    assert_eq!(cfg.lognormal_spread(), Ok(None));
}
