//! Native minibatch SGD for any [`Network`] (the MLP, the conv maxout net, the MP-DBM, the LSTM):
//! momentum, weight decay, the max-norm constraint, gradient-norm clipping, learning-rate decay,
//! the model's own training noise (dropout, masks), early stopping, and checkpoints for the
//! trajectory store.
//!
//! The update is PyTorch's SGD: `v ← μ·v + g + λ·θ` (the first `v` being the gradient term
//! itself), then `θ ← θ − η·v`, with cross-entropy loss on each minibatch and the model's own
//! dropout active. With a max norm `c`, every row of every weight matrix (the incoming weights of
//! one unit, or of one maxout piece) is rescaled to norm ≤ `c` after each step; biases are left
//! alone. [`TrainConfig::max_norms`] sets a `c` per weight instead, and [`TrainConfig::lr_scale`] a
//! factor on η per parameter (pylearn2's `W_lr_scale`/`b_lr_scale`).
//!
//! Two epoch schedules reproduce pylearn2's train extensions, with their epoch indexing: the
//! extensions' counter is 1 during the first epoch (pylearn2 calls `on_monitor` once before
//! training), so epoch `e` (1-based) trains with the values [`Schedule::momentum`] and
//! [`Schedule::lr`] give for `e`. The rates of each epoch are kept in [`History::lr`] and
//! [`History::momentum`].
//!
//! A run is reproducible: minibatches come from a splitmix64-driven Fisher–Yates shuffle of the
//! training set seeded with [`TrainConfig::seed`], and dropout masks from libtorch's global CPU
//! generator, which the *caller* seeds (the Python `linpath.train` seeds it with the same seed and
//! restores its state afterwards). Everything runs on the calling thread: the forward and
//! backward passes with grad mode on, the parameter update and evaluation under `no_grad`.
//! libtorch errors come back as [`Error::Torch`] (failed allocations as [`Error::OutOfMemory`]);
//! nothing here panics, and step counts are computed with checked arithmetic.

use crate::error::{Error, Result};
use crate::flat;
use crate::models::network::{self, Network};
use crate::trajectory::Checkpoint;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// How often, in steps, the [`Observer`] hears about progress (and may stop the run).
pub const PROGRESS_EVERY: i64 = 20;

/// Hyper-parameters of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set (at least 1).
    pub epochs: i64,
    /// Examples per minibatch (at least 1); the last minibatch of an epoch may be smaller.
    pub batch_size: i64,
    /// Learning rate η (positive).
    pub lr: f64,
    /// Momentum μ in [0, 1).
    pub momentum: f64,
    /// L2 weight decay λ (non-negative), added to the gradient as in PyTorch's SGD.
    pub weight_decay: f64,
    /// Largest L2 norm of each weight-matrix row after each step, or None.
    pub max_norm: Option<f64>,
    /// Largest row norms per weight, by parameter name (each one of
    /// [`Network::constrained_weights`]); weights not named are unconstrained. Empty for none;
    /// exclusive with `max_norm`.
    pub max_norms: BTreeMap<String, f64>,
    /// Factors on the learning rate of single parameters, by name (others: 1).
    pub lr_scale: BTreeMap<String, f64>,
    /// Momentum rising linearly from `momentum` (pylearn2's `MomentumAdjustor`), or None.
    pub momentum_schedule: Option<Schedule>,
    /// Learning rate falling linearly from `lr` to `lr·target` (pylearn2's
    /// `LinearDecayOverEpoch`), or None; exclusive with `lr_decay`.
    pub lr_schedule: Option<Schedule>,
    /// Largest L2 norm of the whole gradient: a longer one is scaled down to it before the
    /// update (as `torch.nn.utils.clip_grad_norm_`), or None.
    pub clip_norm: Option<f64>,
    /// Factor applied to the learning rate after each epoch, or None for a constant rate.
    pub lr_decay: Option<f64>,
    /// Patience in epochs: stop when the validation error has not improved for this long.
    pub early_stopping: Option<i64>,
    /// Seed of the minibatch order.
    pub seed: u64,
    /// Record a checkpoint every this many steps; None records once per epoch.
    pub record_every: Option<i64>,
    /// Evaluate the whole training set after each epoch (for the history); false skips it.
    pub eval_train: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 1,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.0,
            weight_decay: 0.0,
            max_norm: None,
            max_norms: BTreeMap::new(),
            lr_scale: BTreeMap::new(),
            momentum_schedule: None,
            lr_schedule: None,
            clip_norm: None,
            lr_decay: None,
            early_stopping: None,
            seed: 0,
            record_every: None,
            eval_train: true,
        }
    }
}

impl TrainConfig {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("epochs", Some(self.epochs)),
            ("batch_size", Some(self.batch_size)),
            ("early_stopping", self.early_stopping),
            ("record_every", self.record_every),
        ];
        if let Some((name, v)) = counts.iter().find_map(|&(n, v)| v.filter(|&v| v < 1).map(|v| (n, v))) {
            return Err(Error::InvalidArgument(format!("{name} must be at least 1, got {v}")));
        }
        check_real("lr", self.lr, "positive", |v| v > 0.0)?;
        check_real("momentum", self.momentum, "in [0, 1)", |v| (0.0..1.0).contains(&v))?;
        check_real("weight_decay", self.weight_decay, "non-negative", |v| v >= 0.0)?;
        if let Some(c) = self.clip_norm {
            check_real("clip_norm", c, "positive", |v| v > 0.0)?;
        }
        if let Some(c) = self.max_norm {
            check_real("max_norm", c, "positive", |v| v > 0.0)?;
        }
        if let Some(d) = self.lr_decay {
            check_real("lr_decay", d, "positive", |v| v > 0.0)?;
        }
        self.validate_per_parameter()?;
        self.validate_schedules()
    }

    fn validate_per_parameter(&self) -> Result<()> {
        if self.max_norm.is_some() && !self.max_norms.is_empty() {
            return Err(Error::InvalidArgument(
                "max_norm is one value for every weight or a value per weight, not both".into(),
            ));
        }
        for (what, map) in [("max_norm", &self.max_norms), ("lr_scale", &self.lr_scale)] {
            for (name, &value) in map {
                check_real(&format!("{what}[{name:?}]"), value, "positive", |v| v > 0.0)?;
            }
        }
        Ok(())
    }

    fn validate_schedules(&self) -> Result<()> {
        if let Some(s) = &self.momentum_schedule {
            check_real("the final momentum", s.target, "in [0, 1)", |v| (0.0..1.0).contains(&v))?;
            s.check("momentum_schedule", false)?;
        }
        if let Some(s) = &self.lr_schedule {
            if self.lr_decay.is_some() {
                return Err(Error::InvalidArgument(
                    "lr_decay and lr_schedule both change the learning rate; pick one".into(),
                ));
            }
            check_real("the lr_schedule decay factor", s.target, "positive", |v| v > 0.0)?;
            s.check("lr_schedule", true)?;
        }
        Ok(())
    }
}

/// A linear schedule over epochs, as pylearn2's `MomentumAdjustor(final_momentum, start,
/// saturate)` and `LinearDecayOverEpoch(start, saturate, decay_factor)` define it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The final momentum, or the learning rate's final factor (`decay_factor`).
    pub target: f64,
    /// The epoch where the change starts (≥ 0).
    pub start: i64,
    /// The epoch where the final value is reached (≥ `start`; > `start` for the learning rate).
    pub saturate: i64,
}

impl Schedule {
    /// Checks `0 ≤ start ≤ saturate` (`start < saturate` when `strict`, as pylearn2 asserts).
    fn check(&self, name: &str, strict: bool) -> Result<()> {
        let (start, saturate) = (self.start, self.saturate);
        let ordered = if strict { start < saturate } else { start <= saturate };
        if start < 0 || !ordered {
            let want = if strict { "0 <= start < saturate" } else { "0 <= start <= saturate" };
            return Err(Error::InvalidArgument(format!(
                "{name} needs {want}, got start {start} and saturate {saturate}"
            )));
        }
        Ok(())
    }

    /// The momentum of epoch `epoch` (1-based) from `initial` (pylearn2's `current_momentum`
    /// with its counter at `epoch`): `initial` up to `start`, linear to `target` at `saturate`,
    /// `target` after; with `start == saturate` a jump to `target` at `start`.
    pub fn momentum(&self, initial: f64, epoch: i64) -> f64 {
        let width = self.saturate.saturating_sub(self.start);
        if width == 0 {
            return if epoch >= self.start { self.target } else { initial };
        }
        let alpha = (epoch.saturating_sub(self.start) as f64 / width as f64).clamp(0.0, 1.0);
        initial * (1.0 - alpha) + alpha * self.target
    }

    /// The learning rate of epoch `epoch` (1-based) from `initial` (pylearn2's `current_lr`
    /// with its counter at `epoch`): `initial` before `start`, then
    /// `initial − s·(epoch − start + 1)` with `s = initial·(1 − target) / (saturate − start + 1)`,
    /// and `initial·target` from `saturate` on.
    pub fn lr(&self, initial: f64, epoch: i64) -> f64 {
        if epoch < self.start {
            initial
        } else if epoch < self.saturate {
            let span = self.saturate.saturating_sub(self.start) as f64 + 1.0;
            let step = (initial - initial * self.target) / span;
            initial - step * (epoch.saturating_sub(self.start) as f64 + 1.0)
        } else {
            initial * self.target
        }
    }
}

fn check_real(name: &str, value: f64, want: &str, ok: impl Fn(f64) -> bool) -> Result<()> {
    if value.is_finite() && ok(value) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("{name} must be a finite number, {want}; got {value}")))
    }
}

/// Labelled examples: float inputs `[n, sizes[0]]` and int64 class indices `[n]`.
#[derive(Debug)]
pub struct Split {
    pub x: Tensor,
    pub y: Tensor,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> i64 {
        self.x.size().first().copied().unwrap_or(0)
    }

    /// True when the split holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks shapes, dtypes, device and label range against `net`; `what` names the split.
    pub fn check(&self, net: &dyn Network, what: &str) -> Result<()> {
        network::check_data(net, &self.x, &self.y, what)
    }
}

/// The training split and an optional validation split.
#[derive(Debug)]
pub struct Data {
    pub train: Split,
    pub valid: Option<Split>,
}

/// Checks `config`, and `data` against `net` and `config` (everything [`train`] checks up front).
pub fn check(net: &dyn Network, data: &Data, config: &TrainConfig) -> Result<()> {
    config.validate()?;
    check_names(net, config)?;
    data.train.check(net, "train")?;
    match &data.valid {
        Some(valid) => valid.check(net, "valid")?,
        None if config.early_stopping.is_some() => {
            return Err(Error::InvalidArgument(
                "early_stopping needs validation data (pass valid=(X, Y))".into(),
            ));
        }
        None => {}
    }
    total_steps(data.train.len(), config).map(drop)
}

/// The parameter names of `net`'s [`Network::constrained_weights`], in that order (each weight
/// is matched to the parameter holding the same storage).
pub fn constrained_names(net: &dyn Network) -> Result<Vec<String>> {
    let params = net.named_parameters();
    let mut names = Vec::new();
    for weight in net.constrained_weights() {
        let mut found = None;
        for (name, param) in &params {
            if found.is_none() && param.f_is_set_to(&weight)? {
                found = Some(name.clone());
            }
        }
        names.push(found.ok_or_else(|| {
            Error::InvalidArgument("a constrained weight of this model is none of its parameters".into())
        })?);
    }
    Ok(names)
}

/// Checks that `config`'s per-parameter names are parameters of `net` (for `max_norms`,
/// constrained weights).
fn check_names(net: &dyn Network, config: &TrainConfig) -> Result<()> {
    if !config.lr_scale.is_empty() {
        let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
        known("lr_scale", config.lr_scale.keys(), &names, "a parameter of this model")?;
    }
    if !config.max_norms.is_empty() {
        let names = constrained_names(net)?;
        let kind = "a weight the max-norm constraint applies to (biases never are)";
        known("max_norm", config.max_norms.keys(), &names, kind)?;
    }
    Ok(())
}

/// An error naming the first of `names` not in `allowed`, and listing those.
fn known<'a>(
    what: &str,
    mut names: impl Iterator<Item = &'a String>,
    allowed: &[String],
    kind: &str,
) -> Result<()> {
    match names.find(|n| !allowed.contains(n)) {
        Some(bad) if allowed.is_empty() => Err(Error::InvalidArgument(format!(
            "{what} names {bad:?}, which is not {kind}; this model has none"
        ))),
        Some(bad) => Err(Error::InvalidArgument(format!(
            "{what} names {bad:?}, which is not {kind}; use one of: {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Minibatches per epoch over `n` examples: ⌈n / batch_size⌉, computed without overflow
/// (`batch_size` ≥ 1; any i64 is fine).
pub fn steps_per_epoch(n: i64, batch_size: i64) -> i64 {
    if n <= 0 {
        0
    } else {
        (n - 1) / batch_size.max(1) + 1
    }
}

/// Steps of a whole run over `n` examples: epochs × steps per epoch, or an error when that
/// exceeds 2**63 − 1.
pub fn total_steps(n: i64, config: &TrainConfig) -> Result<i64> {
    let per_epoch = steps_per_epoch(n, config.batch_size);
    config.epochs.checked_mul(per_epoch).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "epochs x steps per epoch = {} x {per_epoch} exceeds 2**63 - 1 steps; train for fewer \
             epochs or with larger batches",
            config.epochs
        ))
    })
}

/// Most checkpoints a run records: step 0, every `record_every` steps (once per epoch without
/// it) and the last step.
pub fn planned_checkpoints(n: i64, config: &TrainConfig) -> Result<i64> {
    let total = total_steps(n, config)?;
    let every = config.record_every.unwrap_or(steps_per_epoch(n, config.batch_size)).max(1);
    Ok(total / every + 2)
}

/// Checks, before training, that the checkpoints of a run kept in memory (float32 vectors of
/// `numel` values) fit in this machine's memory.
pub fn check_in_memory_trajectory(numel: usize, n: i64, config: &TrainConfig) -> Result<()> {
    let count = planned_checkpoints(n, config)?;
    let numel = i64::try_from(numel).map_err(|_| crate::size::too_large("the parameter count"))?;
    let values = crate::size::product(&[count, numel], "the number of values of the in-memory trajectory")?;
    crate::size::check_fits(
        values,
        4,
        &format!("an in-memory trajectory of up to {count} checkpoints of {numel} parameters"),
        "record less often (record_every) or write the trajectory to a file (trajectory=...)",
    )
}

/// Per-epoch evaluations (epoch 0 is before training) and per-step minibatch losses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub epoch: Vec<i64>,
    pub train_loss: Vec<f64>,
    pub train_error: Vec<f64>,
    /// Empty without validation data.
    pub valid_loss: Vec<f64>,
    /// Empty without validation data.
    pub valid_error: Vec<f64>,
    /// The training loss of every minibatch (dropout active), in step order.
    pub step_loss: Vec<f64>,
    /// The learning rate η of every epoch trained (epoch 1 first; the 0-d factors the update
    /// uses are these rounded to float32).
    pub lr: Vec<f64>,
    /// The momentum μ of every epoch trained (epoch 1 first).
    pub momentum: Vec<f64>,
}

/// The parameters at the epoch of lowest validation error (the earliest such epoch).
#[derive(Debug)]
pub struct Best {
    pub epoch: i64,
    pub valid_error: f64,
    /// Flattened float32 parameters.
    pub params: Tensor,
}

/// The result of [`train`]. Parameter vectors are flattened float32 copies, in
/// [`Network::named_parameters`] order.
#[derive(Debug)]
pub struct Outcome {
    pub history: History,
    pub initial: Tensor,
    /// The parameters after the last step trained.
    pub final_params: Tensor,
    /// Tracked whenever there is validation data.
    pub best: Option<Best>,
    /// True when the observer stopped the run.
    pub interrupted: bool,
    /// Epochs trained and evaluated in full.
    pub epochs_run: i64,
    /// Steps taken.
    pub steps: i64,
}

/// What [`Observer::progress`] is told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub step: i64,
    pub total_steps: i64,
    /// The epoch under way (1-based).
    pub epoch: i64,
    /// The latest minibatch loss.
    pub loss: f64,
}

/// Receives the checkpoints and progress reports of a run.
pub trait Observer {
    /// Stores the parameters after `step` steps.
    fn checkpoint(&mut self, step: i64, values: Checkpoint) -> Result<()>;
    /// Called every [`PROGRESS_EVERY`] steps and after each epoch; `false` stops the run there.
    fn progress(&mut self, report: &Progress) -> bool;
}

/// Mean loss and error rate of `net` on a whole split, in eval mode without autograd.
pub fn evaluate(net: &dyn Network, split: &Split) -> Result<(f64, f64)> {
    network::evaluate(net, &split.x, &split.y)
}

/// Trains `net` in place (see the module documentation); with early stopping the model ends
/// up holding the best parameters. Records a checkpoint at step 0, every `record_every` steps
/// (every epoch if None) and at the last step.
pub fn train(
    net: &dyn Network,
    data: &Data,
    config: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    check(net, data, config)?;
    let mut run = Run::new(net, data, config, observer)?;
    let initial = run.snapshot()?;
    run.end_epoch(0)?;
    run.record()?;
    for epoch in 1..=config.epochs {
        if !run.epoch(epoch)? {
            break;
        }
    }
    run.finish(initial)
}

/// splitmix64 (Steele, Lea & Flood 2014): small, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is below n / 2⁶⁴).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A uniformly shuffled `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: i64) -> Vec<i64> {
        let mut order: Vec<i64> = (0..n).collect();
        for i in (1..order.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// The parameter update: momentum buffers, weight decay, max-norm. Each of them is one fused
/// `addcmul_` pass (with a 0-d factor tensor), so a step with momentum reads and writes each
/// parameter-sized array fewer times than PyTorch's `mul_`/`add_` sequence, and allocates nothing.
struct Sgd {
    params: Vec<Tensor>,
    /// The constrained weights with their largest row norms.
    weights: Vec<(Tensor, f64)>,
    velocity: Vec<Option<Tensor>>,
    /// μ as a 0-d tensor, or None without momentum (always kept with a momentum schedule, so
    /// that the velocity of a step with μ = 0 carries over to later steps).
    momentum: Option<Tensor>,
    /// λ as a 0-d tensor, or None without weight decay.
    weight_decay: Option<Tensor>,
    /// −η·scale of each parameter as a 0-d tensor.
    neg_lr: Vec<Tensor>,
    /// Each parameter's learning-rate scale.
    scale: Vec<f64>,
    lr: f64,
    /// The current μ.
    mu: f64,
    clip_norm: Option<f64>,
}

/// `value` as a 0-d float32 tensor.
fn scalar(value: f64) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(&[value as f32])?.f_squeeze()?)
}

/// `value` as a 0-d float32 tensor, or None when it is zero.
fn factor(value: f64) -> Result<Option<Tensor>> {
    (value != 0.0).then(|| scalar(value)).transpose()
}

/// The constrained weights of `net` that `config` limits, each with its largest row norm.
fn max_norms(net: &dyn Network, config: &TrainConfig) -> Result<Vec<(Tensor, f64)>> {
    let weights = net.constrained_weights();
    if let Some(c) = config.max_norm {
        return Ok(weights.into_iter().map(|w| (w, c)).collect());
    }
    if config.max_norms.is_empty() {
        return Ok(Vec::new());
    }
    let names = constrained_names(net)?;
    let limit = |name: &String| config.max_norms.get(name).copied();
    Ok(weights.into_iter().zip(&names).filter_map(|(w, name)| limit(name).map(|c| (w, c))).collect())
}

impl Sgd {
    fn new(net: &dyn Network, config: &TrainConfig) -> Result<Self> {
        let (names, params): (Vec<String>, Vec<Tensor>) = net.named_parameters().into_iter().unzip();
        let scale: Vec<f64> = names.iter().map(|n| config.lr_scale.get(n).copied().unwrap_or(1.0)).collect();
        let momentum = match config.momentum_schedule {
            Some(_) => Some(scalar(config.momentum)?),
            None => factor(config.momentum)?,
        };
        Ok(Sgd {
            weights: max_norms(net, config)?,
            velocity: params.iter().map(|_| None).collect(),
            params,
            momentum,
            weight_decay: factor(config.weight_decay)?,
            neg_lr: scale.iter().map(|s| scalar(-(config.lr * s))).collect::<Result<_>>()?,
            scale,
            lr: config.lr,
            mu: config.momentum,
            clip_norm: config.clip_norm,
        })
    }

    /// Sets the learning rate to `lr` (each parameter's to `lr` times its scale).
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.lr = lr;
        let _guard = tch::no_grad_guard();
        for (neg_lr, scale) in self.neg_lr.iter_mut().zip(&self.scale) {
            let _ = neg_lr.f_fill_(-(lr * scale))?;
        }
        Ok(())
    }

    /// Multiplies the learning rate by `factor`.
    fn decay(&mut self, factor: f64) -> Result<()> {
        self.set_lr(self.lr * factor)
    }

    /// Sets the momentum to `mu` (only kept with a schedule, see [`Sgd::momentum`]).
    fn set_momentum(&mut self, mu: f64) -> Result<()> {
        if let Some(tensor) = &mut self.momentum {
            let _guard = tch::no_grad_guard();
            let _ = tensor.f_fill_(mu)?;
            self.mu = mu;
        }
        Ok(())
    }

    /// One step with the gradients `grads` (one per parameter, in order; consumed: each
    /// becomes the parameter's new velocity).
    fn update(&mut self, mut grads: Vec<Tensor>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        if let Some(c) = self.clip_norm {
            clip(&mut grads, c)?;
        }
        let slots = self.params.iter_mut().zip(&mut self.velocity).zip(&self.neg_lr);
        for (((param, velocity), neg_lr), mut g) in slots.zip(grads) {
            if let Some(wd) = &self.weight_decay {
                let _ = g.f_addcmul_(param, wd)?; // g + λ·θ
            }
            if let (Some(mu), Some(v)) = (&self.momentum, velocity.as_ref()) {
                let _ = g.f_addcmul_(v, mu)?; // v ← μ·v + g (the first v is g itself, as in PyTorch)
            }
            let _ = param.f_addcmul_(&g, neg_lr)?; // θ ← θ − η·scale·v
            if self.momentum.is_some() {
                *velocity = Some(g);
            }
        }
        for (w, c) in &mut self.weights {
            let _ = w.f_renorm_(2.0, 0, *c)?;
        }
        Ok(())
    }
}

/// Scales `grads` down so that their joint L2 norm is at most `max` (PyTorch's
/// `clip_grad_norm_`: factor max / (norm + 1e-6), applied only when below 1).
fn clip(grads: &mut [Tensor], max: f64) -> Result<()> {
    let squares =
        grads.iter().map(|g| g.f_square()?.f_sum(Kind::Float)).collect::<std::result::Result<Vec<_>, _>>()?;
    let norm = Tensor::f_stack(&squares, 0)?.f_sum(Kind::Float)?.f_sqrt()?.f_double_value(&[])?;
    let factor = max / (norm + 1e-6);
    if factor < 1.0 {
        for g in grads.iter_mut() {
            let _ = g.f_mul_scalar_(factor)?;
        }
    }
    Ok(())
}

/// The state of one run of [`train`].
struct Run<'a> {
    net: &'a dyn Network,
    data: &'a Data,
    config: &'a TrainConfig,
    observer: &'a mut dyn Observer,
    sgd: Sgd,
    rng: SplitMix64,
    step: i64,
    last_recorded: i64,
    record_every: i64,
    steps_per_epoch: i64,
    total_steps: i64,
    history: History,
    best: Option<Best>,
    epochs_without_progress: i64,
    epochs_run: i64,
    interrupted: bool,
}

impl<'a> Run<'a> {
    fn new(
        net: &'a dyn Network,
        data: &'a Data,
        config: &'a TrainConfig,
        observer: &'a mut dyn Observer,
    ) -> Result<Self> {
        let steps_per_epoch = steps_per_epoch(data.train.len(), config.batch_size);
        let total_steps = total_steps(data.train.len(), config)?;
        Ok(Run {
            net,
            data,
            config,
            observer,
            sgd: Sgd::new(net, config)?,
            rng: SplitMix64::new(config.seed),
            step: 0,
            last_recorded: -1,
            record_every: config.record_every.unwrap_or(steps_per_epoch).max(1),
            steps_per_epoch,
            total_steps,
            history: History::default(),
            best: None,
            epochs_without_progress: 0,
            epochs_run: 0,
            interrupted: false,
        })
    }

    /// A flat float32 copy of the current parameters.
    fn snapshot(&self) -> Result<Tensor> {
        flat::flatten(&self.sgd.params, Kind::Float)
    }

    /// Hands the current parameters to the observer as checkpoint `self.step`.
    fn record(&mut self) -> Result<()> {
        let values = Vec::<f32>::try_from(&self.snapshot()?)?;
        self.observer.checkpoint(self.step, Checkpoint::F32(values))?;
        self.last_recorded = self.step;
        Ok(())
    }

    /// Trains one epoch; false when the run should stop.
    fn epoch(&mut self, epoch: i64) -> Result<bool> {
        let (n, batch_size) = (self.data.train.len(), self.config.batch_size);
        self.start_epoch(epoch)?;
        let order = Tensor::f_from_slice(&self.rng.permutation(n))?;
        let mut losses = Vec::with_capacity(usize::try_from(self.steps_per_epoch).unwrap_or(0));
        for start in (0..n).step_by(usize::try_from(batch_size).unwrap_or(usize::MAX).max(1)) {
            losses.push(self.sgd_step(&order.f_narrow(0, start, batch_size.min(n - start))?)?);
            if !self.after_step(epoch, &losses)? {
                break;
            }
        }
        self.keep_losses(&losses)?;
        if self.interrupted {
            return Ok(false);
        }
        let patient = self.end_epoch(epoch)?;
        if let Some(factor) = self.config.lr_decay {
            self.sgd.decay(factor)?;
        }
        let go_on = self.report(epoch, losses.last())?;
        Ok(patient && go_on)
    }

    /// Sets the scheduled rates of `epoch` and records the rates it trains with.
    fn start_epoch(&mut self, epoch: i64) -> Result<()> {
        if let Some(schedule) = &self.config.lr_schedule {
            self.sgd.set_lr(schedule.lr(self.config.lr, epoch))?;
        }
        if let Some(schedule) = &self.config.momentum_schedule {
            self.sgd.set_momentum(schedule.momentum(self.config.momentum, epoch))?;
        }
        self.history.lr.push(self.sgd.lr);
        self.history.momentum.push(self.sgd.mu);
        Ok(())
    }

    /// Forward, backward and update on the examples `batch`; returns the (detached) loss.
    fn sgd_step(&mut self, batch: &Tensor) -> Result<Tensor> {
        let train = &self.data.train;
        let (x, y) = (train.x.f_index_select(0, batch)?, train.y.f_index_select(0, batch)?);
        let loss = tch::with_grad(|| self.net.objective(&x, &y))?;
        let grads = Tensor::f_run_backward(&[&loss], &self.sgd.params, false, false)?;
        self.sgd.update(grads)?;
        Ok(loss.f_detach()?)
    }

    /// Counts the step, records and reports as due; false when the observer stopped the run.
    fn after_step(&mut self, epoch: i64, losses: &[Tensor]) -> Result<bool> {
        self.step += 1;
        if self.step % self.record_every == 0 {
            self.record()?;
        }
        if self.step % PROGRESS_EVERY == 0 {
            return self.report(epoch, losses.last());
        }
        Ok(true)
    }

    /// Tells the observer where the run is; false (and `interrupted`) when it says stop.
    fn report(&mut self, epoch: i64, loss: Option<&Tensor>) -> Result<bool> {
        let loss = loss.map(|l| l.f_double_value(&[])).transpose()?.unwrap_or(f64::NAN);
        let go_on =
            self.observer.progress(&Progress { step: self.step, total_steps: self.total_steps, epoch, loss });
        self.interrupted |= !go_on;
        Ok(go_on)
    }

    /// Appends an epoch's minibatch losses to the history (one host read per epoch).
    fn keep_losses(&mut self, losses: &[Tensor]) -> Result<()> {
        if !losses.is_empty() {
            let all = Tensor::f_stack(losses, 0)?.f_to_kind(Kind::Double)?;
            self.history.step_loss.extend(Vec::<f64>::try_from(&all)?);
        }
        Ok(())
    }

    /// Evaluates after `epoch` and tracks the best parameters; false when patience ran out.
    fn end_epoch(&mut self, epoch: i64) -> Result<bool> {
        self.history.epoch.push(epoch);
        if self.config.eval_train {
            let (loss, error) = evaluate(self.net, &self.data.train)?;
            self.history.train_loss.push(loss);
            self.history.train_error.push(error);
        }
        self.epochs_run = epoch;
        let Some(valid) = &self.data.valid else { return Ok(true) };
        let (loss, error) = evaluate(self.net, valid)?;
        self.history.valid_loss.push(loss);
        self.history.valid_error.push(error);
        if self.best.as_ref().is_none_or(|b| error < b.valid_error) {
            self.best = Some(Best { epoch, valid_error: error, params: self.snapshot()? });
            self.epochs_without_progress = 0;
        } else {
            self.epochs_without_progress += 1;
        }
        Ok(self.config.early_stopping.is_none_or(|patience| self.epochs_without_progress < patience))
    }

    /// Records the last step, and with early stopping puts the best parameters back.
    fn finish(mut self, initial: Tensor) -> Result<Outcome> {
        if self.last_recorded != self.step {
            self.record()?;
        }
        let final_params = self.snapshot()?;
        if let (Some(_), Some(best)) = (self.config.early_stopping, &self.best) {
            flat::assign(&mut self.sgd.params, &best.params)?;
        }
        Ok(Outcome {
            history: self.history,
            initial,
            final_params,
            best: self.best,
            interrupted: self.interrupted,
            epochs_run: self.epochs_run,
            steps: self.step,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::Layout;
    use crate::models::{Activation, Mlp, MlpConfig};
    use crate::trajectory::{Dtype, TrajectoryStore};
    use tch::{nn, Device};

    /// Keeps the checkpoints in a store; says stop once `stop_at` steps are done.
    struct Recorder {
        store: TrajectoryStore,
        stop_at: Option<i64>,
        reports: Vec<Progress>,
    }

    impl Observer for Recorder {
        fn checkpoint(&mut self, step: i64, values: Checkpoint) -> Result<()> {
            self.store.append(step, values)
        }

        fn progress(&mut self, report: &Progress) -> bool {
            self.reports.push(*report);
            self.stop_at.is_none_or(|s| report.step < s)
        }
    }

    /// Uniform values in [-bound, bound) from a private generator (the global torch RNG is
    /// shared with concurrently running tests, so these tests never draw from it).
    fn uniform(rng: &mut SplitMix64, n: usize, bound: f64) -> Vec<f32> {
        (0..n)
            .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound)
            .map(|v| v as f32)
            .collect()
    }

    /// A 6-16-3 ReLU MLP with fixed parameters.
    fn model() -> (nn::VarStore, Mlp) {
        let vs = nn::VarStore::new(Device::Cpu);
        let config =
            MlpConfig { sizes: vec![6, 16, 3], activation: Activation::Relu, ..MlpConfig::default() };
        let mlp = tch::no_grad(|| Mlp::new(&vs.root(), config)).unwrap();
        let mut params: Vec<Tensor> = mlp.named_parameters().into_iter().map(|(_, t)| t).collect();
        let numel = params.iter().map(|p| p.numel()).sum();
        let values = uniform(&mut SplitMix64::new(7), numel, 0.4);
        flat::assign(&mut params, &Tensor::from_slice(&values)).unwrap();
        (vs, mlp)
    }

    /// `n` examples whose class is the argmax of three fixed linear scores of the inputs.
    fn split(n: i64, seed: u64) -> Split {
        let x = Tensor::from_slice(&uniform(&mut SplitMix64::new(seed), (n * 6) as usize, 1.0)).view([n, 6]);
        let w = Tensor::from_slice(&uniform(&mut SplitMix64::new(99), 18, 1.0)).view([6, 3]);
        let y = x.matmul(&w).argmax(-1, false);
        Split { x, y }
    }

    fn data(valid: bool) -> Data {
        Data { train: split(50, 1), valid: valid.then(|| split(40, 2)) }
    }

    fn recorder(mlp: &Mlp, stop_at: Option<i64>) -> Recorder {
        let (names, tensors): (Vec<_>, Vec<_>) = mlp.named_parameters().into_iter().unzip();
        let layout = Layout::of_tensors(names, &tensors).unwrap();
        Recorder { store: TrajectoryStore::in_memory(layout, Dtype::F32).unwrap(), stop_at, reports: vec![] }
    }

    fn config() -> TrainConfig {
        TrainConfig { epochs: 2, batch_size: 8, lr: 0.1, momentum: 0.9, ..TrainConfig::default() }
    }

    fn run(config: &TrainConfig, data: &Data, stop_at: Option<i64>) -> (Mlp, Outcome, Recorder) {
        let (_vs, mlp) = model();
        let mut rec = recorder(&mlp, stop_at);
        let outcome = train(&mlp, data, config, &mut rec).unwrap();
        (mlp, outcome, rec)
    }

    fn params_of(mlp: &Mlp) -> Tensor {
        flat::flatten(&mlp.named_parameters().into_iter().map(|(_, t)| t).collect::<Vec<_>>(), Kind::Float)
            .unwrap()
    }

    #[test]
    fn same_seed_same_run_and_another_seed_differs() {
        let data = data(true);
        let (_, a, _) = run(&config(), &data, None);
        let (_, b, _) = run(&config(), &data, None);
        assert!(a.final_params.equal(&b.final_params));
        assert_eq!(a.history, b.history);
        let (_, c, _) = run(&TrainConfig { seed: 1, ..config() }, &data, None);
        assert!(!a.final_params.equal(&c.final_params));
    }

    #[test]
    fn training_lowers_the_loss_and_history_has_the_right_lengths() {
        let cfg = TrainConfig { epochs: 30, ..config() };
        let (mlp, out, _) = run(&cfg, &data(true), None);
        let h = &out.history;
        assert_eq!(h.epoch, (0..=30).collect::<Vec<_>>());
        assert_eq!((h.train_loss.len(), h.valid_error.len(), h.step_loss.len()), (31, 31, 30 * 7));
        assert!(h.train_loss[30] < 0.5 * h.train_loss[0], "{:?}", h.train_loss);
        assert!(h.train_error[30] < 0.2, "{:?}", h.train_error);
        assert_eq!((out.epochs_run, out.steps, out.interrupted), (30, 210, false));
        assert!(out.final_params.equal(&params_of(&mlp)));
        assert!(out.initial.equal(&params_of(&model().1)));
    }

    #[test]
    fn checkpoints_at_step_zero_every_k_steps_and_the_last() {
        let cfg = TrainConfig { record_every: Some(3), ..config() };
        let (_, out, rec) = run(&cfg, &data(false), None);
        assert_eq!(rec.store.steps().unwrap(), &[0, 3, 6, 9, 12, 14]);
        assert_eq!(rec.store.checkpoint(0).unwrap(), Checkpoint::F32(Vec::try_from(&out.initial).unwrap()));
        let last = Checkpoint::F32(Vec::try_from(&out.final_params).unwrap());
        assert_eq!(rec.store.checkpoint(5).unwrap(), last);
        let (_, _, per_epoch) = run(&config(), &data(false), None);
        assert_eq!(per_epoch.store.steps().unwrap(), &[0, 7, 14]);
    }

    #[test]
    fn max_norm_holds_after_every_step() {
        let cfg = TrainConfig { max_norm: Some(0.3), record_every: Some(1), lr: 0.5, ..config() };
        let (mlp, _, rec) = run(&cfg, &data(false), None);
        let layout = rec.store.layout().clone();
        for i in 1..rec.store.len() {
            let Checkpoint::F32(values) = rec.store.checkpoint(i).unwrap() else { panic!("dtype") };
            for (t, name) in layout.names().iter().enumerate().filter(|(_, n)| n.ends_with("weight")) {
                let (start, len) = layout.span(t);
                let w = Tensor::from_slice(&values[start..start + len]).view(layout.shapes()[t].as_slice());
                let worst = w.norm_scalaropt_dim(2, [1i64].as_slice(), false).max().double_value(&[]);
                assert!(worst <= 0.3 + 1e-6, "{name} at checkpoint {i}: row norm {worst}");
            }
        }
        let bias_norm = mlp.layers()[0].bias.norm().double_value(&[]);
        assert!(bias_norm > 0.0);
    }

    #[test]
    fn early_stopping_restores_the_best_epoch() {
        let cfg = TrainConfig { epochs: 20, lr: 5.0, early_stopping: Some(2), ..config() };
        let (mlp, out, _) = run(&cfg, &data(true), None);
        let best = out.best.as_ref().unwrap();
        let errors = &out.history.valid_error;
        let lowest = errors.iter().cloned().fold(f64::INFINITY, f64::min);
        assert_eq!(best.valid_error, lowest);
        assert_eq!(errors.iter().position(|&e| e == lowest), Some(best.epoch as usize));
        assert_eq!(out.epochs_run, best.epoch + 2, "{errors:?}");
        assert!(params_of(&mlp).equal(&best.params));
        assert!(!out.final_params.equal(&best.params));
    }

    #[test]
    fn a_stop_from_the_observer_ends_the_run_cleanly() {
        let cfg = TrainConfig { epochs: 10, ..config() };
        let (mlp, out, rec) = run(&cfg, &data(true), Some(20));
        assert!(out.interrupted);
        assert_eq!((out.steps, out.epochs_run), (20, 2));
        assert_eq!(out.history.epoch, [0, 1, 2]);
        assert_eq!(out.history.step_loss.len(), 20);
        assert_eq!(rec.store.steps().unwrap(), &[0, 7, 14, 20]);
        assert!(out.final_params.equal(&params_of(&mlp)));
        assert_eq!(rec.reports.last().map(|r| (r.step, r.epoch, r.total_steps)), Some((20, 3, 70)));
    }

    #[test]
    fn bad_configs_and_data_are_errors() {
        let (_vs, mlp) = model();
        let good = data(true);
        for bad in [
            TrainConfig { lr: 0.0, ..config() },
            TrainConfig { lr: -1.0, ..config() },
            TrainConfig { lr: f64::NAN, ..config() },
            TrainConfig { epochs: 0, ..config() },
            TrainConfig { batch_size: 0, ..config() },
            TrainConfig { momentum: 1.0, ..config() },
            TrainConfig { weight_decay: -0.1, ..config() },
            TrainConfig { max_norm: Some(0.0), ..config() },
            TrainConfig { record_every: Some(0), ..config() },
            TrainConfig { max_norms: named(&[("layers.0.weight", 0.0)]), ..config() },
            TrainConfig { max_norms: named(&[("layers.0.weight", f64::NAN)]), ..config() },
            TrainConfig { max_norm: Some(1.0), max_norms: named(&[("layers.0.weight", 1.0)]), ..config() },
            TrainConfig { lr_scale: named(&[("layers.0.bias", -1.0)]), ..config() },
            TrainConfig { lr_scale: named(&[("layers.0.bias", f64::INFINITY)]), ..config() },
            TrainConfig { momentum_schedule: Some(schedule(1.0, 1, 2)), ..config() },
            TrainConfig { momentum_schedule: Some(schedule(0.5, 3, 2)), ..config() },
            TrainConfig { momentum_schedule: Some(schedule(0.5, -1, 2)), ..config() },
            TrainConfig { lr_schedule: Some(schedule(0.5, 2, 2)), ..config() },
            TrainConfig { lr_schedule: Some(schedule(0.0, 1, 2)), ..config() },
            TrainConfig { lr_schedule: Some(schedule(f64::NAN, 1, 2)), ..config() },
            TrainConfig { lr_schedule: Some(schedule(0.5, 1, 2)), lr_decay: Some(0.9), ..config() },
        ] {
            assert!(matches!(check(&mlp, &good, &bad), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        let no_valid = TrainConfig { early_stopping: Some(3), ..config() };
        assert!(check(&mlp, &data(false), &no_valid).is_err());
        let wide = Data {
            train: Split { x: Tensor::zeros([4, 7], (Kind::Float, Device::Cpu)), ..split(4, 1) },
            valid: None,
        };
        assert!(matches!(check(&mlp, &wide, &config()), Err(Error::InvalidArgument(_))));
        let short = Data { train: Split { y: split(4, 1).y, ..split(5, 1) }, valid: None };
        assert!(matches!(check(&mlp, &short, &config()), Err(Error::InvalidArgument(_))));
        let labels =
            Data { train: Split { y: Tensor::from_slice(&[0i64, 3, 1, 2]), ..split(4, 1) }, valid: None };
        assert!(matches!(check(&mlp, &labels, &config()), Err(Error::InvalidArgument(_))));
        let float_y = Data {
            train: Split { y: Tensor::zeros([4], (Kind::Float, Device::Cpu)), ..split(4, 1) },
            valid: None,
        };
        assert!(matches!(check(&mlp, &float_y, &config()), Err(Error::Dtype(_))));
    }

    #[test]
    fn permutations_are_permutations_and_depend_on_the_seed() {
        let mut a = SplitMix64::new(3).permutation(1000);
        assert_ne!(a, SplitMix64::new(4).permutation(1000));
        assert_eq!(a, SplitMix64::new(3).permutation(1000));
        a.sort_unstable();
        assert_eq!(a, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_larger_than_the_data_is_one_step_per_epoch() {
        assert_eq!(steps_per_epoch(50, i64::MAX), 1);
        assert_eq!(steps_per_epoch(50, 8), 7);
        assert_eq!(steps_per_epoch(i64::MAX, 1), i64::MAX);
        assert_eq!(steps_per_epoch(0, 8), 0);
        // ⌈n / batch_size⌉ used to overflow to 0 for batch_size = 2**63 − 1, then `step % 0` panicked.
        let data = data(false);
        let (_, whole, _) = run(&TrainConfig { batch_size: 50, ..config() }, &data, None);
        let (_, huge, rec) = run(&TrainConfig { batch_size: i64::MAX, ..config() }, &data, None);
        assert_eq!((huge.steps, rec.store.steps().unwrap()), (2, &[0i64, 1, 2][..]));
        assert!(huge.final_params.equal(&whole.final_params));
    }

    #[test]
    fn runs_whose_step_count_or_trajectory_cannot_fit_are_refused() {
        let (_vs, mlp) = model();
        let endless = TrainConfig { epochs: 1 << 62, batch_size: 1, ..config() };
        let msg = check(&mlp, &data(false), &endless).unwrap_err().to_string();
        assert!(msg.contains("4611686018427387904 x 50 exceeds 2**63 - 1 steps"), "{msg}");
        assert_eq!(planned_checkpoints(50, &config()).unwrap(), 4); // 14 steps, one per epoch, + 2
        let every_step = TrainConfig { epochs: 1 << 40, batch_size: 1, record_every: Some(1), ..config() };
        assert_eq!(planned_checkpoints(50, &every_step).unwrap(), (50 << 40) + 2);
        let msg = check_in_memory_trajectory(1000, 50, &every_step).unwrap_err().to_string();
        assert!(msg.contains("in-memory trajectory") && msg.contains("this machine has"), "{msg}");
        assert!(check_in_memory_trajectory(1000, 50, &config()).is_ok());
    }

    fn named(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(n, v)| (n.to_string(), v)).collect()
    }

    fn schedule(target: f64, start: i64, saturate: i64) -> Schedule {
        Schedule { target, start, saturate }
    }

    #[test]
    fn schedules_follow_pylearn2s_formulas() {
        let rising = schedule(0.65, 1, 4);
        let momenta: Vec<f64> = (1..=6).map(|e| rising.momentum(0.5, e)).collect();
        for (got, want) in momenta.iter().zip([0.5, 0.55, 0.6, 0.65, 0.65, 0.65]) {
            assert!((got - want).abs() < 1e-12, "{momenta:?}");
        }
        let jump = schedule(0.9, 3, 3);
        assert_eq!((jump.momentum(0.2, 2), jump.momentum(0.2, 3), jump.momentum(0.2, 9)), (0.2, 0.9, 0.9));
        // step = (1 − 0.1) / (5 − 2 + 1) = 0.225, and epoch `start` already takes one step.
        let decay = schedule(0.1, 2, 5);
        let rates: Vec<f64> = (1..=7).map(|e| decay.lr(1.0, e)).collect();
        for (got, want) in rates.iter().zip([1.0, 0.775, 0.55, 0.325, 0.1, 0.1, 0.1]) {
            assert!((got - want).abs() < 1e-12, "{rates:?}");
        }
        let far = schedule(0.5, 0, i64::MAX);
        assert!(far.lr(1.0, i64::MAX) == 0.5 && far.momentum(0.0, i64::MAX) == 0.5);
        assert!((far.lr(1.0, 1) - 1.0).abs() < 1e-15 && far.momentum(0.0, 1) >= 0.0);
    }

    #[test]
    fn the_history_keeps_each_epochs_rates_and_a_schedule_may_start_from_zero_momentum() {
        let cfg = TrainConfig {
            epochs: 3,
            momentum: 0.0,
            momentum_schedule: Some(schedule(0.9, 1, 2)),
            lr_schedule: Some(schedule(0.5, 1, 2)),
            ..config()
        };
        let (_, out, _) = run(&cfg, &data(false), None);
        assert_eq!(out.history.momentum, [0.0, 0.9, 0.9]);
        let expected = [0.075, 0.05, 0.05]; // step 0.1 · 0.5 / 2
        assert!(
            out.history.lr.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-15),
            "{:?}",
            out.history.lr
        );
        let (_, plain, _) = run(&TrainConfig { lr_decay: Some(0.5), ..config() }, &data(false), None);
        assert_eq!((plain.history.lr, plain.history.momentum), (vec![0.1, 0.05], vec![0.9, 0.9]));
    }

    #[test]
    fn max_norms_by_name_limit_only_the_named_weights() {
        let (_vs, mlp) = model();
        assert_eq!(constrained_names(&mlp).unwrap(), ["layers.0.weight", "layers.1.weight"]);
        let cfg = TrainConfig {
            max_norms: named(&[("layers.0.weight", 0.3)]),
            record_every: Some(1),
            lr: 0.5,
            ..config()
        };
        let (_, _, rec) = run(&cfg, &data(false), None);
        let layout = rec.store.layout().clone();
        let mut widest = 0.0f64;
        for i in 1..rec.store.len() {
            let Checkpoint::F32(values) = rec.store.checkpoint(i).unwrap() else { panic!("dtype") };
            let row_norm = |t: usize| {
                let (start, len) = layout.span(t);
                let w = Tensor::from_slice(&values[start..start + len]).view(layout.shapes()[t].as_slice());
                w.norm_scalaropt_dim(2, [1i64].as_slice(), false).max().double_value(&[])
            };
            assert!(row_norm(0) <= 0.3 + 1e-6, "checkpoint {i}: {}", row_norm(0));
            widest = widest.max(row_norm(2));
        }
        assert!(widest > 0.3, "layers.1.weight is not constrained: {widest}");
        let all = named(&[("layers.0.weight", 0.3), ("layers.1.weight", 0.3)]);
        let (_, by_name, _) = run(&TrainConfig { max_norms: all, ..config() }, &data(false), None);
        let (_, one, _) = run(&TrainConfig { max_norm: Some(0.3), ..config() }, &data(false), None);
        assert!(by_name.final_params.equal(&one.final_params));
    }

    #[test]
    fn names_that_are_not_parameters_or_not_constrained_are_refused() {
        let (_vs, mlp) = model();
        let bias = TrainConfig { max_norms: named(&[("layers.0.bias", 1.0)]), ..config() };
        let msg = check(&mlp, &data(false), &bias).unwrap_err().to_string();
        assert!(msg.contains("\"layers.0.bias\", which is not a weight"), "{msg}");
        assert!(msg.ends_with("use one of: layers.0.weight, layers.1.weight"), "{msg}");
        let unknown = TrainConfig { lr_scale: named(&[("fc.weight", 1.0)]), ..config() };
        let msg = check(&mlp, &data(false), &unknown).unwrap_err().to_string();
        assert!(msg.contains("\"fc.weight\", which is not a parameter of this model"), "{msg}");
        assert!(msg.ends_with("layers.0.weight, layers.0.bias, layers.1.weight, layers.1.bias"), "{msg}");
        let scaled = TrainConfig { lr_scale: named(&[("layers.1.bias", 2.0)]), ..config() };
        assert!(check(&mlp, &data(false), &scaled).is_ok());
    }
}
