//! The fused recurrence under autodiff: one graph node of burn's autodiff backend whose backward
//! pass is [`kernel::backward`]. Only with the crate's `autodiff` feature (the trainer's), so the
//! server's inference build does not link burn's autodiff.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, DispatchKindConversion, DispatchTensor, Flex, GradientCheckpointingStrategy};
use burn::prelude::*;

use super::kernel::{self, Dims, Trace};
use super::{flex_tensor, values};

/// [`super::fused_last_state`] on autodiff tensors, with the tensors' checkpointing strategy.
pub(super) fn recorded(x: &Tensor<3>, w: &Tensor<2>, b: &Tensor<2>, dims: Dims) -> Option<Tensor<2>> {
    match x.gradient_checkpointing_strategy()? {
        GradientCheckpointingStrategy::Disabled => with_strategy::<NoCheckpointing>(x, w, b, dims),
        GradientCheckpointingStrategy::Balanced => with_strategy::<BalancedCheckpointing>(x, w, b, dims),
    }
}

/// Under autodiff (checkpointing strategy `C`): the forward pass, recorded as one node whose
/// backward is [`LstmBackward`].
fn with_strategy<C: CheckpointStrategy>(
    x: &Tensor<3>,
    w: &Tensor<2>,
    b: &Tensor<2>,
    dims: Dims,
) -> Option<Tensor<2>>
where
    DispatchTensor: DispatchKindConversion<Autodiff<Flex, C>>,
{
    let (x, x_node) = x
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?
        .into_parts();
    let (w, w_node) = w
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?
        .into_parts();
    let (b, b_node) = b
        .clone()
        .try_into_primitive::<Autodiff<Flex, C>>()
        .ok()?
        .into_parts();
    let (x, w, b) = (values(&x)?, values(&w)?, values(&b)?);
    let shape = vec![dims.batch, dims.hidden];
    let prep = LstmBackward
        .prepare::<C>([x_node, w_node, b_node])
        .compute_bound()
        .stateful();
    let out = match prep {
        OpsKind::Tracked(prep) => {
            let (h, trace) = kernel::forward(x, w, &b, dims, true);
            let trace = Arc::new(trace?);
            prep.finish(trace, flex_tensor(h, shape))
        }
        OpsKind::UnTracked(prep) => {
            let (h, _) = kernel::forward(x, w, &b, dims, false);
            prep.finish(flex_tensor(h, shape))
        }
    };
    Some(Tensor::from_primitive::<Autodiff<Flex, C>>(out))
}

/// Backpropagation through time for [`with_strategy`]'s node, whose parents are `x`, `w` and `b`.
#[derive(Debug)]
struct LstmBackward;

impl Backward<Flex, 3> for LstmBackward {
    type State = Arc<Trace>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, w_node, b_node] = ops.parents;
        let dh = grads.consume::<Flex>(&ops.node);
        // The upstream gradient is this node's own output's: f32 and [batch, hidden].
        let Some(dh) = values(&dh) else {
            return;
        };
        let trace = ops.state;
        let dims = trace.dims();
        let out = kernel::backward(&trace, &dh, x_node.is_some());
        if let (Some(node), Some(dx)) = (x_node, out.x) {
            let shape = vec![dims.batch, dims.time, dims.input];
            grads.register::<Flex>(node.id, flex_tensor(dx, shape));
        }
        if let Some(node) = w_node {
            let shape = vec![dims.input + dims.hidden, 4 * dims.hidden];
            grads.register::<Flex>(node.id, flex_tensor(out.w, shape));
        }
        if let Some(node) = b_node {
            grads.register::<Flex>(node.id, flex_tensor(out.b, vec![1, 4 * dims.hidden]));
        }
    }
}
