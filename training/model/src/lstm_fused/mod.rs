//! The LSTM's recurrence over a window as one operation on the CPU (burn's flex backend): the
//! forward pass runs every hour on plain buffers (`kernel`) and, under autodiff, records one
//! graph node whose handwritten backward pass (backpropagation through time, also on plain
//! buffers) returns the gradients of the input, the stacked weights and the bias. Composed from
//! burn's tensor operations, the same recurrence is some fifteen operations an hour, forward and
//! backward, whose dispatch and graph bookkeeping cost far more than their arithmetic.
//!
//! The node is a `Backward` of burn's autodiff backend (`burn-autodiff`'s extension API),
//! reached through [`Tensor::try_into_primitive`] on `Autodiff<Flex, C>` (`recorded.rs`, with
//! the crate's `autodiff` feature, which the trainer turns on); on any other backend
//! (wgpu) [`last_state`] composes the recurrence from tensor operations instead
//! ([`composed_last_state`], also the reference the tests hold the fused operation to).

mod kernel;
#[cfg(any(test, feature = "autodiff"))]
mod recorded;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::DType;

use kernel::Dims;

/// The last hidden state `[batch, hidden]` of a single-layer LSTM over `x` (`[batch, time,
/// input]`), with the gates stacked in `w` (`[input + hidden, 4 hidden]`, input rows first,
/// gates in the order input, forget, output, cell) and `b` (`[1, 4 hidden]`), sigmoid gates and
/// tanh activations, from zero states: [`fused_last_state`] where it applies, else
/// [`composed_last_state`].
#[must_use]
pub fn last_state(x: Tensor<3>, w: &Tensor<2>, b: &Tensor<2>) -> Tensor<2> {
    let fused = FUSED.load(Ordering::Relaxed).then(|| fused_last_state(&x, w, b));
    fused.flatten().unwrap_or_else(|| composed_last_state(x, w, b))
}

/// Whether [`last_state`] may take the fused operation (the default).
static FUSED: AtomicBool = AtomicBool::new(true);

/// With `false`, [`last_state`] composes the recurrence from tensor operations everywhere, as
/// before the fused operation: for `train --lstm-path composed`, which trains both ways to
/// compare their results. Process-wide.
pub fn use_fused(on: bool) {
    FUSED.store(on, Ordering::Relaxed);
}

/// [`last_state`] composed from tensor operations: per hour one product of `[x(t), h(t - 1)]`
/// with `w`, and no output sequence kept (burn's LSTM keeps every hour's, whose gradient costs
/// the square of the window).
#[must_use]
pub fn composed_last_state(x: Tensor<3>, w: &Tensor<2>, b: &Tensor<2>) -> Tensor<2> {
    use burn::tensor::activation::{sigmoid, tanh};
    let [batch, time, _] = x.dims();
    let hidden = w.dims()[1] / 4;
    let device = x.device();
    let mut h = Tensor::<2>::zeros([batch, hidden], &device);
    let mut c = Tensor::<2>::zeros([batch, hidden], &device);
    for x_t in x.iter_dim(1).take(time) {
        let [b_, _, c_in] = x_t.dims();
        let xh = Tensor::cat(vec![x_t.reshape([b_, c_in]), h], 1); // [batch, input + hidden]
        let z = xh.matmul(w.clone()) + b.clone(); // [batch, 4 hidden]
        let ifo = sigmoid(z.clone().narrow(1, 0, 3 * hidden));
        let g = tanh(z.narrow(1, 3 * hidden, hidden));
        let (i, f, o) = (
            ifo.clone().narrow(1, 0, hidden),
            ifo.clone().narrow(1, hidden, hidden),
            ifo.narrow(1, 2 * hidden, hidden),
        );
        c = f * c + i * g;
        h = o * tanh(c.clone());
    }
    h
}

/// [`last_state`] as one operation on the flex backend, with or without autodiff (then one
/// graph node with a handwritten backward pass). `None` when the tensors are elsewhere (wgpu),
/// not `f32`, of inconsistent shapes, wider than `kernel::MAX_HIDDEN` hidden units, or not
/// all in the same autodiff context.
#[must_use]
pub fn fused_last_state(x: &Tensor<3>, w: &Tensor<2>, b: &Tensor<2>) -> Option<Tensor<2>> {
    let dims = dims_of(x, w, b)?;
    if [x.dtype(), w.dtype(), b.dtype()] != [DType::F32; 3] {
        return None;
    }
    #[cfg(any(test, feature = "autodiff"))]
    if x.gradient_checkpointing_strategy().is_some() {
        return recorded::recorded(x, w, b, dims);
    }
    plain(x, w, b, dims)
}

/// The sizes, when the shapes agree.
fn dims_of(x: &Tensor<3>, w: &Tensor<2>, b: &Tensor<2>) -> Option<Dims> {
    let [batch, time, input] = x.dims();
    let [rows, gates] = w.dims();
    let hidden = gates / 4;
    let consistent = gates % 4 == 0 && rows == input + hidden && b.dims() == [1, gates];
    let consistent = consistent && hidden <= kernel::MAX_HIDDEN;
    consistent.then_some(Dims {
        batch,
        time,
        input,
        hidden,
    })
}

/// The values of a flex tensor, row-major.
fn values(tensor: &FlexTensor) -> Option<Vec<f32>> {
    tensor
        .as_slice::<f32>()
        .map(<[f32]>::to_vec)
        .or_else(|| tensor.to_contiguous().as_slice::<f32>().map(<[f32]>::to_vec))
}

/// A flex tensor of `values` with `shape`.
fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Without autodiff: the forward pass only.
fn plain(x: &Tensor<3>, w: &Tensor<2>, b: &Tensor<2>, dims: Dims) -> Option<Tensor<2>> {
    let x = values(&x.clone().try_into_primitive::<Flex>().ok()?)?;
    let w = values(&w.clone().try_into_primitive::<Flex>().ok()?)?;
    let b = values(&b.clone().try_into_primitive::<Flex>().ok()?)?;
    let (h, _) = kernel::forward(x, w, &b, dims, false);
    let h = flex_tensor(h, vec![dims.batch, dims.hidden]);
    Some(Tensor::from_primitive::<Flex>(h))
}
