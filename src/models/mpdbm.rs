//! The multi-prediction deep Boltzmann machine (MP-DBM) of Goodfellow, Mirza, Courville & Bengio
//! (2013), "Multi-prediction deep Boltzmann machines": the MNIST model, binary visible units `v`,
//! two binary hidden layers `h1`, `h2` and a one-hot label `y` attached to `h2`.
//!
//! # Parameters
//!
//! In this order (each name its own prefix), with the weights stored `[upper, lower]` like an
//! `nn.Linear` so that row `j` holds the connections of unit `j` of the layer above:
//!
//! | name           | shape                      |
//! |----------------|----------------------------|
//! | `visible_bias` | `[n_visible]`              |
//! | `w1`           | `[n_hidden1, n_visible]`   |
//! | `hidden1_bias` | `[n_hidden1]`              |
//! | `w2`           | `[n_hidden2, n_hidden1]`   |
//! | `hidden2_bias` | `[n_hidden2]`              |
//! | `w3`           | `[n_classes, n_hidden2]`   |
//! | `label_bias`   | `[n_classes]`              |
//!
//! The energy is `E = −v W1ᵀ h1 − h1 W2ᵀ h2 − h2 W3ᵀ y − bv·v − b1·h1 − b2·h2 − by·y`
//! (row vectors). [`Network::constrained_weights`] lists `w1`, `w2`, `w3`: the trainer's
//! `max_norm` then bounds each unit's weights to the layer below, as pylearn2's `max_col_norm`.
//!
//! # Mean-field inference
//!
//! Some variables are observed (clamped to the data) and the others predicted; `mask` is 1 where
//! a variable is predicted. The predicted pixels start at `σ(bv)`, a predicted label at
//! `softmax(by)`; then one bottom-up pass with doubled weights from below (the DBM's usual
//! initialisation, pylearn2's `SuperWeightDoubling`):
//! `h1 = σ(2·v W1ᵀ + b1)`, `h2 = σ(h1 W2ᵀ + y W3 + b2)`. Then `mf_steps` updates, in order:
//! `h1 = σ(v W1ᵀ + h2 W2 + b1)`; `h2 = σ(h1 W2ᵀ + y W3 + b2)`; predicted `v = σ(h1 W1 + bv)`;
//! predicted `y = softmax(h2 W3ᵀ + by)`. Clamped variables keep their data values throughout.
//! The predictions are those of the last update.
//!
//! # Objective
//!
//! For each example a random subset S of the `n_visible + 1` variables (each pixel and the label
//! independently with probability `mask_prob`) is predicted from the rest. The example's loss is
//! the sum over S of the cross-entropy of the prediction (binary cross-entropy against the pixel
//! intensity for pixels, `−log Q(y = label)` for the label) divided by `n_visible + 1`; an example
//! whose draw predicts nothing contributes 0. The objective is the mean over the batch, so J is
//! in nats per variable. Training masks come from libtorch's global generator; evaluation masks
//! are a fixed function of (`eval_seed`, the row's index in its split), so every point of a line
//! sweep sees the same masks. The classifier (error rate, [`Network::try_forward`]) observes all
//! of `v` and predicts `y`.

use super::network::{Measure, Network};
use crate::error::{Error, Result};
use crate::train::SplitMix64;
use tch::{nn, Device, Kind, Tensor};

/// Configuration of an [`Mpdbm`].
#[derive(Debug, Clone, PartialEq)]
pub struct MpdbmConfig {
    /// Visible units (pixels).
    pub n_visible: i64,
    /// Units of the first hidden layer.
    pub n_hidden1: i64,
    /// Units of the second hidden layer (connected to the label).
    pub n_hidden2: i64,
    /// Label classes (at least 2).
    pub n_classes: i64,
    /// Mean-field updates after the bottom-up pass (at least 1).
    pub mf_steps: i64,
    /// Probability that a variable is predicted (masked) in the objective, in (0, 1).
    pub mask_prob: f64,
    /// Seed of the evaluation masks.
    pub eval_seed: u64,
    /// Rows per evaluation block.
    pub eval_rows: i64,
}

impl Default for MpdbmConfig {
    /// The MNIST model: 784 pixels, 500 and 1000 hidden units (the DBM of Salakhutdinov &
    /// Hinton 2009 that Goodfellow et al. 2013 compare with), 10 classes; 14 mean-field steps
    /// and masks with probability 0.5 (pylearn2's `scripts/papers/mpdbm/mpdbm.yaml`).
    fn default() -> Self {
        MpdbmConfig {
            n_visible: 784,
            n_hidden1: 500,
            n_hidden2: 1000,
            n_classes: 10,
            mf_steps: 14,
            mask_prob: 0.5,
            eval_seed: 0,
            eval_rows: 2048,
        }
    }
}

impl MpdbmConfig {
    /// Checks sizes, `mf_steps`, `mask_prob` and `eval_rows`.
    pub fn validate(&self) -> Result<()> {
        let sizes =
            [("n_visible", self.n_visible), ("n_hidden1", self.n_hidden1), ("n_hidden2", self.n_hidden2)];
        for (what, size) in sizes {
            if size < 1 {
                return Err(Error::InvalidArgument(format!("{what} must be positive, got {size}")));
            }
        }
        if self.n_classes < 2 {
            return Err(Error::InvalidArgument(format!(
                "n_classes must be at least 2, got {}",
                self.n_classes
            )));
        }
        if self.mf_steps < 1 {
            return Err(Error::InvalidArgument(format!(
                "mf_steps must be at least 1, got {}",
                self.mf_steps
            )));
        }
        if !(self.mask_prob > 0.0 && self.mask_prob < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "mask_prob must lie strictly between 0 and 1, got {}",
                self.mask_prob
            )));
        }
        if self.eval_rows < 1 {
            return Err(Error::InvalidArgument(format!(
                "eval_rows must be positive, got {}",
                self.eval_rows
            )));
        }
        self.parameter_count().map(drop)
    }

    /// Number of parameter values (three weight matrices and four bias vectors), with checked
    /// arithmetic.
    pub fn parameter_count(&self) -> Result<i64> {
        use crate::size::{product, sum};
        let what = "the MP-DBM's parameter count";
        let (v, h1, h2, c) = (self.n_visible, self.n_hidden1, self.n_hidden2, self.n_classes);
        let weights = [product(&[h1, v], what)?, product(&[h2, h1], what)?, product(&[c, h2], what)?];
        sum(&[sum(&weights, what)?, v, h1, h2, c], what)
    }

    /// Number of variables a mask covers: the pixels and the label (exact for a validated
    /// configuration, whose `n_visible` is below the parameter count).
    pub fn n_variables(&self) -> i64 {
        self.n_visible.saturating_add(1)
    }
}

/// Which variables are predicted: `[n, n_visible]` and `[n, 1]` 0/1 tensors of the parameters'
/// kind (1 = predicted); `None` for the visible units means all observed.
pub struct Masks {
    pub visible: Option<Tensor>,
    pub label: Tensor,
}

/// The pre-activations of the last mean-field update: `visible` `[n, n_visible]` (None when
/// no pixel was predicted) and `label` `[n, n_classes]` (the logits of Q(y)).
pub struct Predictions {
    pub visible: Option<Tensor>,
    pub label: Tensor,
}

/// A multi-prediction DBM (see the module documentation).
#[derive(Debug)]
pub struct Mpdbm {
    config: MpdbmConfig,
    visible_bias: Tensor,
    w1: Tensor,
    hidden1_bias: Tensor,
    w2: Tensor,
    hidden2_bias: Tensor,
    w3: Tensor,
    label_bias: Tensor,
}

impl Mpdbm {
    /// Creates the variables under `path`: weights N(0, 0.01²) from libtorch's global RNG,
    /// biases 0 (Python's `MPDBM.reset_parameters` draws the paper's sparse initialisation).
    pub fn new(path: &nn::Path, config: MpdbmConfig) -> Result<Self> {
        config.validate()?;
        let hint = "use fewer units";
        crate::size::check_fits(config.parameter_count()?, 4, "this MP-DBM's parameters", hint)?;
        let c = &config;
        let normal = nn::Init::Randn { mean: 0.0, stdev: 0.01 };
        let zero = nn::Init::Const(0.0);
        Ok(Mpdbm {
            visible_bias: path.f_var("visible_bias", &[c.n_visible], zero)?,
            w1: path.f_var("w1", &[c.n_hidden1, c.n_visible], normal)?,
            hidden1_bias: path.f_var("hidden1_bias", &[c.n_hidden1], zero)?,
            w2: path.f_var("w2", &[c.n_hidden2, c.n_hidden1], normal)?,
            hidden2_bias: path.f_var("hidden2_bias", &[c.n_hidden2], zero)?,
            w3: path.f_var("w3", &[c.n_classes, c.n_hidden2], normal)?,
            label_bias: path.f_var("label_bias", &[c.n_classes], zero)?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MpdbmConfig {
        &self.config
    }

    /// `(name, tensor)` of every parameter in order (see the module documentation); the tensors
    /// share storage with the model's variables.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        [
            ("visible_bias", &self.visible_bias),
            ("w1", &self.w1),
            ("hidden1_bias", &self.hidden1_bias),
            ("w2", &self.w2),
            ("hidden2_bias", &self.hidden2_bias),
            ("w3", &self.w3),
            ("label_bias", &self.label_bias),
        ]
        .into_iter()
        .map(|(name, t)| (name.to_string(), t.shallow_clone()))
        .collect()
    }

    /// Checks that `x` is a floating `[n, n_visible]` tensor on the model's device.
    pub fn check_input(&self, x: &Tensor, what: &str) -> Result<()> {
        let (size, width) = (x.size(), self.config.n_visible);
        if size.len() != 2 || size[1] != width {
            return Err(Error::InvalidArgument(format!(
                "{what}: the inputs must have shape [n, {width}] for this model, got {size:?}"
            )));
        }
        crate::flat::check_float_kind(x.f_kind()?, &format!("{what}: the inputs"))?;
        if x.device() != self.w1.device() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the inputs are on {:?} but the model is on {:?}",
                x.device(),
                self.w1.device()
            )));
        }
        Ok(())
    }

    /// Checks that the labels are int64 class indices `[n]` below `n_classes`, for n > 0 inputs.
    fn check_labels(&self, y: &Tensor, n: i64, what: &str) -> Result<()> {
        let kind = y.f_kind()?;
        if kind != Kind::Int64 {
            return Err(Error::Dtype(format!(
                "{what}: the targets must be int64 class indices, not {kind:?}"
            )));
        }
        let size = y.size();
        if size.len() != 1 || size[0] != n {
            return Err(Error::InvalidArgument(format!(
                "{what}: {n} inputs but targets of shape {size:?}; give one class index per example"
            )));
        }
        if n == 0 {
            return Err(Error::InvalidArgument(format!("{what}: no examples")));
        }
        let classes = self.config.n_classes;
        let (lo, hi) = (y.f_min()?.f_int64_value(&[])?, y.f_max()?.f_int64_value(&[])?);
        if lo < 0 || hi >= classes {
            return Err(Error::InvalidArgument(format!(
                "{what}: class indices must lie in [0, {classes}) for this model; found {lo} to {hi}"
            )));
        }
        Ok(())
    }

    /// Checks that every input value lies in [0, 1] (pixel intensities; NaN fails).
    fn check_intensities(x: &Tensor, what: &str) -> Result<()> {
        if x.numel() == 0 {
            return Ok(());
        }
        let (lo, hi) = (x.f_min()?.f_double_value(&[])?, x.f_max()?.f_double_value(&[])?);
        if !(lo >= 0.0 && hi <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "{what}: the inputs must be pixel intensities in [0, 1] (found {lo} to {hi}); \
                 scale them, e.g. divide bytes by 255"
            )));
        }
        Ok(())
    }

    /// `x` in the parameters' kind.
    fn visible_data(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_to_kind(self.w1.f_kind()?)?)
    }

    /// One-hot `[n, n_classes]` labels in the parameters' kind.
    fn one_hot(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.f_one_hot(self.config.n_classes)?.f_to_kind(self.w1.f_kind()?)?)
    }

    /// `data` where `mask` is 0 and `prediction` where it is 1: `data + mask·(prediction − data)`.
    fn mix(data: &Tensor, mask: &Tensor, prediction: &Tensor) -> Result<Tensor> {
        Ok(data.f_add(&mask.f_mul(&prediction.f_sub(data)?)?)?)
    }

    /// `h1 = σ(v W1ᵀ + h2 W2 + b1)` (no top-down term when `h2` is None).
    fn update_h1(&self, v: &Tensor, h2: Option<&Tensor>) -> Result<Tensor> {
        let mut z = self.hidden1_bias.f_addmm(v, &self.w1.f_tr()?)?;
        if let Some(h2) = h2 {
            z = z.f_addmm(h2, &self.w2)?;
        }
        Ok(z.f_sigmoid()?)
    }

    /// `h2 = σ(h1 W2ᵀ + y W3 + b2)`.
    fn update_h2(&self, h1: &Tensor, y: &Tensor) -> Result<Tensor> {
        let z = self.hidden2_bias.f_addmm(h1, &self.w2.f_tr()?)?;
        Ok(z.f_addmm(y, &self.w3)?.f_sigmoid()?)
    }

    /// Mean-field inference on data `v` (`[n, n_visible]`, parameters' kind) and one-hot labels
    /// `y`, predicting the variables `masks` marks; returns the last update's pre-activations.
    pub fn mean_field(&self, v: &Tensor, y: &Tensor, masks: &Masks) -> Result<Predictions> {
        let n = v.size()[0];
        let mut v_hat = match &masks.visible {
            Some(m) => Self::mix(v, m, &self.visible_bias.f_sigmoid()?.f_expand([n, -1], false)?)?,
            None => v.shallow_clone(),
        };
        let prior_y = self.label_bias.f_softmax(-1, self.label_bias.f_kind()?)?;
        let mut y_hat = Self::mix(y, &masks.label, &prior_y.f_expand([n, -1], false)?)?;
        let h1 = self.update_h1(&v_hat.f_mul_scalar(2.0)?, None)?; // weight doubling
        let mut h2 = self.update_h2(&h1, &y_hat)?;
        let mut last = Predictions { visible: None, label: Tensor::new() };
        for _ in 0..self.config.mf_steps {
            let h1 = self.update_h1(&v_hat, Some(&h2))?;
            h2 = self.update_h2(&h1, &y_hat)?;
            if let Some(m) = &masks.visible {
                let zv = self.visible_bias.f_addmm(&h1, &self.w1)?;
                v_hat = Self::mix(v, m, &zv.f_sigmoid()?)?;
                last.visible = Some(zv);
            }
            let zy = self.label_bias.f_addmm(&h2, &self.w3.f_tr()?)?;
            y_hat = Self::mix(y, &masks.label, &zy.f_softmax(-1, zy.f_kind()?)?)?;
            last.label = zy;
        }
        Ok(last)
    }

    /// Per-example multi-prediction loss `[n]` (see the module documentation) of data `v`
    /// (parameters' kind), one-hot labels `y` and the predicted variables `masks`.
    pub fn masked_loss(&self, v: &Tensor, y: &Tensor, masks: &Masks) -> Result<Tensor> {
        let out = self.mean_field(v, y, masks)?;
        // −log Q(y = label) = logsumexp(z) − z·y, counted where the label is predicted.
        let zy = &out.label;
        let label_ce = zy.f_logsumexp([1i64].as_slice(), false)?.f_sub(&zy.f_mul(y)?.f_sum_dim_intlist(
            [1i64].as_slice(),
            false,
            zy.f_kind()?,
        )?)?;
        let mut total = label_ce.f_mul(&masks.label.f_squeeze_dim(1)?)?;
        if let (Some(zv), Some(m)) = (&out.visible, &masks.visible) {
            // Binary cross-entropy of σ(z) against the intensity v: softplus(z) − v·z.
            let bce = zv.f_softplus()?.f_sub(&v.f_mul(zv)?)?.f_mul(m)?;
            total = total.f_add(&bce.f_sum_dim_intlist([1i64].as_slice(), false, zv.f_kind()?)?)?;
        }
        Ok(total.f_div_scalar(self.config.n_variables() as f64)?)
    }

    /// Masks for `n` rows from libtorch's global generator: each variable predicted with
    /// probability `mask_prob`.
    fn random_masks(&self, n: i64) -> Result<Masks> {
        let kind = self.w1.f_kind()?;
        let draw = Tensor::f_rand([n, self.config.n_variables()], (Kind::Float, self.w1.device()))?;
        let mask = draw.f_lt(self.config.mask_prob)?.f_to_kind(kind)?;
        Self::split_masks(&mask, self.config.n_visible)
    }

    /// Splits `[n, n_visible + 1]` into the visible and label masks.
    fn split_masks(mask: &Tensor, n_visible: i64) -> Result<Masks> {
        Ok(Masks { visible: Some(mask.f_narrow(1, 0, n_visible)?), label: mask.f_narrow(1, n_visible, 1)? })
    }

    /// The evaluation masks of rows `first_row .. first_row + n`: row `r`'s mask is drawn from
    /// [`evaluation_rng`]`(eval_seed, r)`, one draw per variable (pixels first, then the label).
    pub fn evaluation_masks(&self, first_row: i64, n: i64) -> Result<Masks> {
        let width = self.config.n_variables();
        let count = crate::size::product(&[n.max(0), width], "the size of the evaluation masks")?;
        crate::size::check_fits(count, 4, "the evaluation masks", "evaluate fewer rows at once")?;
        let mut values = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for r in first_row..first_row + n {
            let mut rng = evaluation_rng(self.config.eval_seed, r as u64);
            values.extend((0..width).map(|_| f32::from(u8::from(uniform(&mut rng) < self.config.mask_prob))));
        }
        let mask = Tensor::f_from_slice(&values)?
            .f_view([n, width])?
            .f_to_device(self.w1.device())?
            .f_to_kind(self.w1.f_kind()?)?;
        Self::split_masks(&mask, self.config.n_visible)
    }

    /// The classifier's masks for `n` rows: every pixel observed, the label predicted.
    fn classifier_masks(&self, n: i64) -> Result<Masks> {
        let label = Tensor::f_ones([n, 1], (self.w1.f_kind()?, self.w1.device()))?;
        Ok(Masks { visible: None, label })
    }

    /// Logits of Q(y) `[n, n_classes]` with all of `x` observed (the label's prior term uses
    /// only the labels' shape, so any valid labels may stand in).
    fn classifier_logits(&self, v: &Tensor) -> Result<Tensor> {
        let n = v.size()[0];
        let y = Tensor::f_zeros([n, self.config.n_classes], (self.w1.f_kind()?, self.w1.device()))?;
        Ok(self.mean_field(v, &y, &self.classifier_masks(n)?)?.label)
    }
}

/// The random stream of evaluation row `row` under `seed`: splitmix64 started from
/// `mix(mix(seed) ^ row)`, where `mix(s)` is the first output of splitmix64 seeded with `s`.
pub fn evaluation_rng(seed: u64, row: u64) -> SplitMix64 {
    let key = SplitMix64::new(seed).next_u64();
    SplitMix64::new(SplitMix64::new(key ^ row).next_u64())
}

/// A uniform number in [0, 1) from the top 53 bits of the next draw.
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl Network for Mpdbm {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Mpdbm::named_parameters(self)
    }

    fn constrained_weights(&self) -> Vec<Tensor> {
        vec![self.w1.shallow_clone(), self.w2.shallow_clone(), self.w3.shallow_clone()]
    }

    fn device(&self) -> Device {
        self.w1.device()
    }

    /// Inputs `[n, n_visible]` of a floating dtype with values in [0, 1]; int64 labels.
    fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        self.check_input(x, what)?;
        self.check_labels(y, x.size()[0], what)?;
        Self::check_intensities(x, what)
    }

    /// log Q(y) `[n, n_classes]` with every pixel observed; `train` is ignored (the MP-DBM's
    /// training noise is its masks, which only the objective draws).
    fn try_forward(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.check_input(x, "x")?;
        let logits = self.classifier_logits(&self.visible_data(x)?)?;
        Ok(logits.f_log_softmax(-1, logits.f_kind()?)?)
    }

    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (v, y1) = (self.visible_data(x)?, self.one_hot(y)?);
        let masks = self.random_masks(v.size()[0])?;
        Ok(self.masked_loss(&v, &y1, &masks)?.f_mean(v.f_kind()?)?)
    }

    fn evaluate_rows(&self, x: &Tensor, y: &Tensor, first_row: i64) -> Result<Measure> {
        let (v, y1) = (self.visible_data(x)?, self.one_hot(y)?);
        let n = v.size()[0];
        let masks = self.evaluation_masks(first_row, n)?;
        let loss_sum = self.masked_loss(&v, &y1, &masks)?.f_sum(Kind::Double)?.f_double_value(&[])?;
        let guess = self.classifier_logits(&v)?.f_argmax(-1, false)?;
        let wrong = guess.f_ne_tensor(y)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
        Ok(Measure { loss_sum, wrong, count: n })
    }

    fn eval_rows(&self) -> i64 {
        self.config.eval_rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> MpdbmConfig {
        MpdbmConfig {
            n_visible: 6,
            n_hidden1: 5,
            n_hidden2: 4,
            n_classes: 3,
            mf_steps: 3,
            ..MpdbmConfig::default()
        }
    }

    /// A tiny model in float64 with weights N(0, 0.7²) and biases N(0, 0.3²).
    fn model(cfg: MpdbmConfig) -> (nn::VarStore, Mpdbm) {
        tch::manual_seed(3);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = Mpdbm::new(&vs.root(), cfg).unwrap();
        vs.double();
        tch::no_grad(|| {
            for (name, mut p) in net.named_parameters() {
                let scale = if name.starts_with('w') { 0.7 } else { 0.3 };
                p.copy_(&(p.randn_like() * scale));
            }
        });
        (vs, net)
    }

    fn data(n: i64, cfg: &MpdbmConfig) -> (Tensor, Tensor) {
        let x = Tensor::rand([n, cfg.n_visible], (Kind::Double, Device::Cpu));
        let y = Tensor::randint(cfg.n_classes, [n], (Kind::Int64, Device::Cpu));
        (x, y)
    }

    #[test]
    fn parameters_are_named_ordered_and_shaped() {
        let (vs, net) = model(tiny());
        let got: Vec<(String, Vec<i64>)> =
            net.named_parameters().into_iter().map(|(n, t)| (n, t.size())).collect();
        let want: Vec<(String, Vec<i64>)> = [
            ("visible_bias", vec![6]),
            ("w1", vec![5, 6]),
            ("hidden1_bias", vec![5]),
            ("w2", vec![4, 5]),
            ("hidden2_bias", vec![4]),
            ("w3", vec![3, 4]),
            ("label_bias", vec![3]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(got, want);
        assert_eq!(vs.variables().len(), 7);
    }

    #[test]
    fn forward_gives_log_probabilities() {
        let (_vs, net) = model(tiny());
        let (x, _) = data(7, net.config());
        let out = net.try_forward(&x, false).unwrap();
        assert_eq!(out.size(), [7, 3]);
        let sums = out.exp().sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-12);
    }

    #[test]
    fn gradient_matches_central_differences() {
        let (_vs, net) = model(tiny());
        let (x, y) = data(5, net.config());
        let y1 = net.one_hot(&y).unwrap();
        let masks = net.evaluation_masks(0, 5).unwrap();
        let loss = || net.masked_loss(&x, &y1, &masks).unwrap().mean(Kind::Double);
        let params: Vec<Tensor> = net.named_parameters().into_iter().map(|(_, t)| t).collect();
        let grads = Tensor::run_backward(&[loss()], &params, false, false);
        let eps = 1e-6;
        for (p, g) in params.iter().zip(&grads) {
            let (flat, gflat) = (p.view([-1]), g.view([-1]));
            for i in 0..flat.size()[0] {
                let orig = flat.double_value(&[i]);
                let at = |value: f64| {
                    tch::no_grad(|| {
                        let _ = flat.get(i).fill_(value);
                    });
                    tch::no_grad(loss).double_value(&[])
                };
                let numeric = (at(orig + eps) - at(orig - eps)) / (2.0 * eps);
                at(orig);
                let analytic = gflat.double_value(&[i]);
                let err = (numeric - analytic).abs() / analytic.abs().max(1e-3);
                assert!(err < 1e-6, "d/dθ[{i}]: numeric {numeric}, autograd {analytic}");
            }
        }
    }

    #[test]
    fn evaluation_masks_depend_on_seed_and_row_only() {
        let (_vs, net) = model(tiny());
        let whole = net.evaluation_masks(0, 10).unwrap();
        let tail = net.evaluation_masks(4, 6).unwrap();
        let whole_v = whole.visible.unwrap();
        assert!(whole_v.narrow(0, 4, 6).equal(&tail.visible.unwrap()));
        assert!(whole.label.narrow(0, 4, 6).equal(&tail.label));
        let mean = whole_v.mean(Kind::Double).double_value(&[]);
        assert!(mean > 0.2 && mean < 0.8, "mask mean {mean}");
        let (_vs2, other) = model(MpdbmConfig { eval_seed: 1, ..tiny() });
        assert!(!other.evaluation_masks(0, 10).unwrap().visible.unwrap().equal(&whole_v));
    }

    #[test]
    fn evaluation_is_deterministic_and_counts_rows() {
        let (_vs, net) = model(tiny());
        let (x, y) = data(9, net.config());
        let a = tch::no_grad(|| net.evaluate_rows(&x, &y, 0)).unwrap();
        let b = tch::no_grad(|| net.evaluate_rows(&x, &y, 0)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.count, 9);
        assert!(a.loss_sum > 0.0 && a.wrong >= 0 && a.wrong <= 9);
    }

    #[test]
    fn bad_configs_and_data_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bad = [
            MpdbmConfig { n_hidden1: 0, ..tiny() },
            MpdbmConfig { n_classes: 1, ..tiny() },
            MpdbmConfig { mf_steps: 0, ..tiny() },
            MpdbmConfig { mask_prob: 1.0, ..tiny() },
            MpdbmConfig { mask_prob: 0.0, ..tiny() },
            MpdbmConfig { eval_rows: 0, ..tiny() },
        ];
        for cfg in bad {
            assert!(Mpdbm::new(&vs.root(), cfg).is_err());
        }
        let (_vs, net) = model(tiny());
        let (x, y) = data(4, net.config());
        assert!(net.check_labelled(&x, &y, "d").is_ok());
        assert!(net.check_labelled(&(&x * 2.0 + 0.5), &y, "d").is_err());
        assert!(net.check_labelled(&x.narrow(1, 0, 5), &y, "d").is_err());
        assert!(net.check_labelled(&x, &(&y + 3), "d").is_err());
        assert!(net.check_labelled(&x, &y.to_kind(Kind::Int), "d").is_err());
    }

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_errors_before_allocation() {
        let vs = nn::VarStore::new(Device::Cpu);
        let msg =
            Mpdbm::new(&vs.root(), MpdbmConfig { n_visible: i64::MAX, ..tiny() }).unwrap_err().to_string();
        assert!(msg.contains("MP-DBM's parameter count is too large"), "{msg}");
        let msg =
            Mpdbm::new(&vs.root(), MpdbmConfig { n_hidden1: 1 << 40, ..tiny() }).unwrap_err().to_string();
        assert!(msg.contains("parameters would need") && msg.contains("this machine has"), "{msg}");
        assert!(vs.variables().is_empty());
        let (_vs, net) = model(tiny());
        let msg = net.evaluation_masks(0, 1 << 61).err().unwrap().to_string();
        assert!(msg.contains("evaluation masks"), "{msg}");
    }
}
