//! [`Network`]: what the trainer and the generic native sweep need from a model, so that one
//! SGD loop and one line sweep serve the MLP, the conv maxout net, the MP-DBM and the LSTM.
//!
//! A model lists its parameters (the PyTorch twin's order), checks its labelled data, gives a
//! training objective on a minibatch (with its training-time noise: dropout, multi-prediction
//! masks) and a *deterministic* evaluation of a block of rows, from which J(θ) and the error
//! rate of a whole split follow ([`evaluate`]). [`sweep_line`] evaluates J along
//! θ(α) = θ0 + α·(θ1 − θ0) by writing each point into the model's own parameters (restored
//! afterwards), without autograd.

use crate::error::{Error, Result};
use crate::flat;
use tch::{Device, Tensor};

/// Sums over a block of rows: J of the block is `loss_sum / count`, its error `wrong / count`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measure {
    /// Sum of the per-prediction losses.
    pub loss_sum: f64,
    /// Number of wrong predictions.
    pub wrong: i64,
    /// Number of predictions (examples, or words for a language model).
    pub count: i64,
}

impl Measure {
    /// Adds another block's sums.
    pub fn add(&mut self, other: Measure) {
        self.loss_sum += other.loss_sum;
        self.wrong += other.wrong;
        self.count += other.count;
    }

    /// `(mean loss, error rate)`. Where the loss is not finite the model's outputs were NaN or
    /// infinite and their argmax means nothing: the error rate is then NaN, never a plausible number.
    pub fn rates(&self) -> (f64, f64) {
        let n = self.count.max(1) as f64;
        let loss = self.loss_sum / n;
        (loss, if loss.is_finite() { self.wrong as f64 / n } else { f64::NAN })
    }
}

/// A model the generic trainer and sweep can run.
pub trait Network: Send {
    /// `(name, tensor)` of every parameter in the PyTorch twin's order; the tensors share
    /// storage with the model's variables.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// The weights the max-norm constraint limits: each slice along dimension 0 (a unit's
    /// incoming weights, a maxout piece, a convolution filter) is kept to norm ≤ c.
    fn constrained_weights(&self) -> Vec<Tensor>;

    /// The device of the parameters.
    fn device(&self) -> Device;

    /// Checks labelled data (shapes, dtypes, value ranges, at least one row); `what` names it
    /// in the error message.
    fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()>;

    /// The model's output for inputs `x` (logits); training-time noise when `train`.
    fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// The scalar training objective of a minibatch, with training-time noise (dropout,
    /// random masks), differentiable in the parameters.
    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor>;

    /// Deterministic evaluation of a block of rows (no noise, no autograd needed).
    /// `first_row` is the index of the block's first row in its split, for models whose
    /// evaluation draws fixed per-row randomness (the MP-DBM's masks).
    fn evaluate_rows(&self, x: &Tensor, y: &Tensor, first_row: i64) -> Result<Measure>;

    /// Rows per block in [`evaluate`] (bounded by the memory one block needs).
    fn eval_rows(&self) -> i64 {
        2048
    }
}

/// Checks labelled data for `net` ([`Network::check_labelled`]) and that it is on the network's
/// device; `what` names the data in the error message.
pub fn check_data(net: &dyn Network, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
    net.check_labelled(x, y, what)?;
    let device = net.device();
    if x.device() != device || y.device() != device {
        return Err(Error::InvalidArgument(format!(
            "{what}: the data must be on the model's device ({device:?})"
        )));
    }
    Ok(())
}

/// `(mean loss, error rate)` of `net` on a whole split, block by block, without autograd.
pub fn evaluate(net: &dyn Network, x: &Tensor, y: &Tensor) -> Result<(f64, f64)> {
    let _guard = tch::no_grad_guard();
    let n = x.size().first().copied().unwrap_or(0);
    let rows = net.eval_rows().max(1);
    let mut total = Measure::default();
    for start in (0..n).step_by(rows as usize) {
        let len = rows.min(n - start);
        total.add(net.evaluate_rows(&x.f_narrow(0, start, len)?, &y.f_narrow(0, start, len)?, start)?);
    }
    Ok(total.rates())
}

/// J and the error rate of `net` on `(x, y)` at θ0 + α·(θ1 − θ0) for each α, in order.
///
/// Each point is written into the model's parameters from θ0 and the direction (never by
/// accumulating steps); the original parameters are put back afterwards, also on error.
/// `on_alpha(done, total)` is called after each α; returning false stops the sweep early
/// (the values so far are returned).
pub fn sweep_line(
    net: &dyn Network,
    theta0: &Tensor,
    theta1: &Tensor,
    x: &Tensor,
    y: &Tensor,
    alphas: &[f64],
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let _guard = tch::no_grad_guard();
    let mut params: Vec<Tensor> = net.named_parameters().into_iter().map(|(_, t)| t).collect();
    let numel: usize = params.iter().map(|p| p.numel()).sum();
    flat::check_vector(theta0, numel, "start")?;
    flat::check_vector(theta1, numel, "end")?;
    check_data(net, x, y, "data")?;
    // Strided inputs or targets (e.g. `Y[::2]`) are copied once.
    let (x, y) = (&x.f_contiguous()?, &y.f_contiguous()?);
    let kind = params.first().map(|p| p.kind()).unwrap_or(tch::Kind::Float);
    let saved = flat::flatten(&params, kind)?;
    let result = sweep_points(net, &mut params, theta0, theta1, x, y, alphas, on_alpha);
    flat::assign(&mut params, &saved)?;
    result
}

/// [`sweep_line`] for several α grids over the same data, one after the other; `on_alpha` counts
/// the α of all grids together (`done` of `total`). One `(losses, errors)` per grid.
pub fn sweep_grids(
    net: &dyn Network,
    theta0: &Tensor,
    theta1: &Tensor,
    x: &Tensor,
    y: &Tensor,
    grids: &[Vec<f64>],
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    let total: usize = grids.iter().map(Vec::len).sum();
    let mut done_before = 0;
    let mut results = Vec::with_capacity(grids.len());
    for grid in grids {
        let mut on_grid_alpha = |done: usize, _: usize| on_alpha(done_before + done, total);
        results.push(sweep_line(net, theta0, theta1, x, y, grid, &mut on_grid_alpha)?);
        done_before += grid.len();
    }
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn sweep_points(
    net: &dyn Network,
    params: &mut [Tensor],
    theta0: &Tensor,
    theta1: &Tensor,
    x: &Tensor,
    y: &Tensor,
    alphas: &[f64],
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let device = net.device();
    // An owned copy: θ0 may share memory with the parameters that each point is written into.
    let start = flat::owned_copy(theta0, tch::Kind::Double)?.f_to_device(device)?;
    let direction = theta1.f_to_kind(tch::Kind::Double)?.f_to_device(device)?.f_sub(&start)?;
    flat::check_finite(&start, "start")?;
    flat::check_finite(&direction, "end - start (NaN or infinite end, or a direction that overflows)")?;
    let (mut losses, mut errors) = (Vec::new(), Vec::new());
    for (i, &alpha) in alphas.iter().enumerate() {
        let point = start.f_add(&direction.f_mul_scalar(alpha)?)?;
        flat::assign(params, &point)?;
        let (loss, error) = evaluate(net, x, y)?;
        losses.push(loss);
        errors.push(error);
        if !on_alpha(i + 1, alphas.len()) {
            break;
        }
    }
    Ok((losses, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_loss_gives_a_nan_error_rate() {
        let finite = Measure { loss_sum: 6.0, wrong: 1, count: 4 };
        assert_eq!(finite.rates(), (1.5, 0.25));
        for loss_sum in [f64::NAN, f64::INFINITY] {
            let (loss, error) = Measure { loss_sum, wrong: 1, count: 4 }.rates();
            assert!(!loss.is_finite() && error.is_nan());
        }
    }
}
