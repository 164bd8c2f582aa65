//! The fused operation against the recurrence composed from burn's tensor operations: the same
//! last hidden state and the same gradients of the input, weights and bias.

use burn::prelude::*;
use burn::tensor::Distribution;

use super::{composed_last_state, fused_last_state};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

/// Largest absolute difference, over the largest magnitude of `reference` (at least 1).
fn relative_gap(got: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(got.len(), reference.len());
    let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let gap = got
        .iter()
        .zip(reference)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    gap / scale
}

/// Random `x`, `w`, `b` for `[batch, time, input]` and `hidden` units on `device`.
fn inputs(
    batch: usize,
    time: usize,
    input: usize,
    hidden: usize,
    device: &Device,
) -> (Tensor<3>, Tensor<2>, Tensor<2>) {
    let x = Tensor::<3>::random([batch, time, input], Distribution::Normal(0.0, 1.0), device);
    let w = Tensor::<2>::random(
        [input + hidden, 4 * hidden],
        Distribution::Uniform(-0.6, 0.6),
        device,
    );
    let b = Tensor::<2>::random([1, 4 * hidden], Distribution::Uniform(-0.5, 0.5), device);
    (x, w, b)
}

const SHAPES: [(usize, usize, usize, usize); 5] = [
    (4, 24, 5, 8),
    (1, 1, 5, 16),
    (1, 30, 3, 4),
    (3, 1, 2, 16),
    (7, 128, 5, 16),
];

#[test]
fn forward_and_gradients_match_the_composed_recurrence() {
    let device = Device::flex().autodiff();
    for (batch, time, input, hidden) in SHAPES {
        let (x, w, b) = inputs(batch, time, input, hidden, &device);
        let (x, w, b) = (x.require_grad(), w.require_grad(), b.require_grad());
        // A random upstream gradient, so each output's own weight is checked.
        let upstream = Tensor::<2>::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
        let fused = fused_last_state(&x, &w, &b).expect("flex tensors: the fused operation applies");
        let composed = composed_last_state(x.clone(), &w, &b);
        let fused_grads = (fused.clone() * upstream.clone()).sum().backward();
        let composed_grads = (composed.clone() * upstream).sum().backward();
        let what = format!("batch {batch}, time {time}, input {input}, hidden {hidden}");
        let gap = relative_gap(&values(fused), &values(composed));
        assert!(gap < 1e-5, "last hidden state, {what}: {gap}");
        let gx = |g: &burn::tensor::Gradients| values(x.grad(g).unwrap());
        let gw = |g: &burn::tensor::Gradients| values(w.grad(g).unwrap());
        let gb = |g: &burn::tensor::Gradients| values(b.grad(g).unwrap());
        let gaps = [
            relative_gap(&gx(&fused_grads), &gx(&composed_grads)),
            relative_gap(&gw(&fused_grads), &gw(&composed_grads)),
            relative_gap(&gb(&fused_grads), &gb(&composed_grads)),
        ];
        assert!(
            gaps.iter().all(|g| *g < 1e-4),
            "gradients of x, w, b, {what}: {gaps:?}"
        );
    }
}

/// An input outside the gradient (the batch's sequences) gets none; the weights still do.
#[test]
fn an_input_without_gradient_is_a_constant() {
    let device = Device::flex().autodiff();
    let (x, w, b) = inputs(5, 40, 5, 16, &device);
    let (w, b) = (w.require_grad(), b.require_grad());
    let fused = fused_last_state(&x, &w, &b).unwrap();
    let composed = composed_last_state(x.clone(), &w, &b);
    let fused_grads = fused.sum().backward();
    let composed_grads = composed.sum().backward();
    assert!(x.grad(&fused_grads).is_none());
    let gap = relative_gap(
        &values(w.grad(&fused_grads).unwrap()),
        &values(w.grad(&composed_grads).unwrap()),
    );
    assert!(gap < 1e-4, "weight gradients: {gap}");
}

/// Without autodiff, and with autodiff but nothing to differentiate: the forward pass alone.
#[test]
fn forward_alone_matches_the_composed_recurrence() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        let (x, w, b) = inputs(6, 50, 5, 16, &device);
        let fused = fused_last_state(&x, &w, &b).unwrap();
        let composed = composed_last_state(x, &w, &b);
        assert!(relative_gap(&values(fused), &values(composed)) < 1e-5);
    }
}

#[test]
fn inconsistent_shapes_are_left_to_the_composed_path() {
    let device = Device::flex();
    let (x, w, b) = inputs(2, 3, 5, 8, &device);
    let narrow_w = w.clone().narrow(0, 0, 12);
    let long_b = Tensor::cat(vec![b.clone(), b.clone()], 1);
    assert!(fused_last_state(&x, &narrow_w, &b).is_none());
    assert!(fused_last_state(&x, &w, &long_b).is_none());
    assert!(fused_last_state(&x, &w, &b.clone().reshape([4, 8])).is_none());
}

/// An empty window leaves the zero state.
#[test]
fn an_empty_window_is_the_zero_state() {
    let device = Device::flex().autodiff();
    let (x, w, b) = inputs(3, 0, 5, 4, &device);
    let h = fused_last_state(&x, &w.require_grad(), &b).unwrap();
    assert_eq!(values(h), vec![0.0; 12]);
}
