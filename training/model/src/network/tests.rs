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
