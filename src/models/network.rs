//! [`Network`]: what the trainer and the generic native sweep need from a model, so that one
//! SGD loop and one line sweep serve the MLP, the conv maxout net, the MP-DBM and the LSTM.
//!
//! A model lists its parameters (the PyTorch twin's order), checks its labelled data, gives a
//! training objective on a minibatch (with its training-time noise: dropout, multi-prediction
//! masks) and a *deterministic* evaluation of a block of rows, from which J(θ) and the error
//! rate of a whole split follow ([`evaluate`]). [`Network::sweep`] evaluates J at points of a
//! [`Subspace`] (a line or a plane); by default ([`sweep_by_writing`]) each point is written into
//! the model's own parameters (restored afterwards), without autograd. Results cross into Python
//! by metric name ([`Measure::metrics`]).

use crate::error::{Error, Result};
use crate::flat;
use crate::subspace::Subspace;
use tch::{Device, Tensor};

/// The names of the metrics every native sweep reports (see [`Measure::metrics`]).
pub const METRICS: [&str; 2] = ["loss", "error"];

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

    /// The metrics by name ([`METRICS`] order): the one place where a new metric is added.
    pub fn metrics(&self) -> [(&'static str, f64); 2] {
        let (loss, error) = self.rates();
        [("loss", loss), ("error", error)]
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

    /// The measures of every point of `passes` (points of `sub`) on the labelled split `(x, y)`:
    /// one [`Measure`] per point, per pass. `batch_size` may bound a model's per-point memory;
    /// `on_point(done, total)` runs after each point (or block of work) and stops the sweep when
    /// it returns false. The model's parameters are as before afterwards. By default each point
    /// is written into the parameters ([`sweep_by_writing`]); a model may override this with a
    /// faster way (the MLP computes its first layer once per batch for all points).
    fn sweep(
        &self,
        sub: &Subspace,
        data: (&Tensor, &Tensor),
        passes: &[Pass],
        batch_size: i64,
        on_point: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Vec<Measure>>> {
        let _ = batch_size;
        sweep_by_writing(self, sub, data, passes, on_point)
    }
}

/// Checks labelled data for `net` ([`Network::check_labelled`]) and that it is on the network's
/// device; `what` names the data in the error message.
pub fn check_data<N: Network + ?Sized>(net: &N, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
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
pub fn evaluate<N: Network + ?Sized>(net: &N, x: &Tensor, y: &Tensor) -> Result<(f64, f64)> {
    Ok(measure(net, x, y)?.rates())
}

/// The summed [`Measure`] of `net` on a whole split, block by block, without autograd.
pub fn measure<N: Network + ?Sized>(net: &N, x: &Tensor, y: &Tensor) -> Result<Measure> {
    let _guard = tch::no_grad_guard();
    let n = x.size().first().copied().unwrap_or(0);
    let rows = net.eval_rows().max(1);
    let mut total = Measure::default();
    for start in (0..n).step_by(rows as usize) {
        let len = rows.min(n - start);
        total.add(net.evaluate_rows(&x.f_narrow(0, start, len)?, &y.f_narrow(0, start, len)?, start)?);
    }
    Ok(total)
}

/// Arithmetic of a sweep's per-point work: float32, or bfloat16 where a model supports it
/// (the MLP's hidden layers; see [`Network::sweep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    /// Parses "float32" or "bf16".
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            other => {
                Err(Error::InvalidArgument(format!("precision must be 'float32' or 'bf16', got {other:?}")))
            }
        }
    }

    /// The tensor kind of the per-point layers.
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::F32 => tch::Kind::Float,
            Precision::Bf16 => tch::Kind::BFloat16,
        }
    }
}

/// Points of a subspace (each one coordinate per direction) evaluated in one precision. Several
/// passes over the same data may share work (the MLP's first-layer products).
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub points: &'a [Vec<f64>],
    pub precision: Precision,
}

/// Checks every point of `passes` against `sub` (one finite coordinate per direction, at least one point).
pub fn check_passes(sub: &Subspace, passes: &[Pass]) -> Result<()> {
    for pass in passes {
        if pass.points.is_empty() {
            return Err(Error::InvalidArgument("the grid is empty; pass at least one point".into()));
        }
        pass.points.iter().try_for_each(|c| sub.check_point(c))?;
    }
    Ok(())
}

/// The generic [`Network::sweep`]: each point is written into the model's own parameters (from θ0
/// and the directions, see [`Subspace::write_point`]) and the split evaluated there; the original
/// parameters are put back afterwards, also on error. float32 only. `on_point(done, total)` is
/// called after each point; returning false stops the sweep early (the measures so far are returned).
pub fn sweep_by_writing<N: Network + ?Sized>(
    net: &N,
    sub: &Subspace,
    (x, y): (&Tensor, &Tensor),
    passes: &[Pass],
    on_point: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<Measure>>> {
    if passes.iter().any(|p| p.precision != Precision::F32) {
        return Err(Error::InvalidArgument(
            "precision='bf16' is available for linpath.models.MLP only; use 'float32'".into(),
        ));
    }
    check_passes(sub, passes)?;
    let _guard = tch::no_grad_guard();
    let mut params: Vec<Tensor> = net.named_parameters().into_iter().map(|(_, t)| t).collect();
    let numel: usize = params.iter().map(|p| p.numel()).sum();
    flat::check_vector(sub.origin(), numel, "the origin (start)")?;
    check_data(net, x, y, "data")?;
    if sub.device() != net.device() {
        return Err(Error::InvalidArgument(format!(
            "the subspace must be on the model's device ({:?})",
            net.device()
        )));
    }
    // Strided inputs or targets (e.g. `Y[::2]`) are copied once.
    let (x, y) = (&x.f_contiguous()?, &y.f_contiguous()?);
    let kind = params.first().map(|p| p.kind()).unwrap_or(tch::Kind::Float);
    let saved = flat::flatten(&params, kind)?;
    let result = evaluate_points(net, &mut params, sub, (x, y), passes, on_point);
    flat::assign(&mut params, &saved)?;
    result
}

fn evaluate_points<N: Network + ?Sized>(
    net: &N,
    params: &mut [Tensor],
    sub: &Subspace,
    (x, y): (&Tensor, &Tensor),
    passes: &[Pass],
    on_point: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<Measure>>> {
    let total: usize = passes.iter().map(|p| p.points.len()).sum();
    let (mut done, mut results) = (0, Vec::with_capacity(passes.len()));
    for pass in passes {
        let mut measures = Vec::with_capacity(pass.points.len());
        for coords in pass.points {
            sub.write_point(params, coords)?;
            measures.push(measure(net, x, y)?);
            done += 1;
            if !on_point(done, total) {
                results.push(measures);
                return Ok(results);
            }
        }
        results.push(measures);
    }
    Ok(results)
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
