//! Fully connected networks: ReLU, sigmoid, tanh or maxout hidden layers, optional dropout.
//!
//! Layer `i` is an affine map `x Wᵢᵀ + bᵢ` with `Wᵢ` of shape `[out·k, in]` (k = maxout pieces,
//! 1 otherwise), named `layers.{i}.weight` / `layers.{i}.bias`. A maxout unit `j` takes the
//! maximum over rows `j·k .. (j+1)·k` of its layer (the output reshaped to `[batch, out, k]`).
//! The last layer is linear (the logits). Dropout (inverted, so nothing changes at evaluation)
//! applies to the input and to each hidden layer's output when training.

use super::network::{Measure, Network};
use crate::error::{Error, Result};
use tch::{nn, Device, Kind, Tensor};

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    Sigmoid,
    Tanh,
    /// Maxout with this many pieces per unit (at least 2).
    Maxout(i64),
}

impl Activation {
    /// Parses "relu", "sigmoid", "tanh" or "maxout" (with `pieces` for maxout).
    pub fn parse(name: &str, pieces: i64) -> Result<Self> {
        match name {
            "relu" => Ok(Activation::Relu),
            "sigmoid" => Ok(Activation::Sigmoid),
            "tanh" => Ok(Activation::Tanh),
            "maxout" if pieces >= 2 => Ok(Activation::Maxout(pieces)),
            "maxout" => Err(Error::InvalidArgument(format!("maxout needs pieces >= 2, got {pieces}"))),
            other => Err(Error::InvalidArgument(format!(
                "unknown activation {other:?}; use 'relu', 'sigmoid', 'tanh' or 'maxout'"
            ))),
        }
    }

    /// Rows of the weight matrix per output unit.
    pub fn pieces(self) -> i64 {
        match self {
            Activation::Maxout(k) => k,
            _ => 1,
        }
    }

    /// Applies the nonlinearity to a hidden layer's affine output `z` (`[batch, out·k]`).
    pub fn apply(self, z: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => z.f_relu()?,
            Activation::Sigmoid => z.f_sigmoid()?,
            Activation::Tanh => z.f_tanh()?,
            Activation::Maxout(k) => {
                let batch = z.size()[0];
                z.f_view([batch, -1, k])?.f_amax([2i64].as_slice(), false)?
            }
        })
    }
}

/// Configuration of an [`Mlp`].
#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    /// Layer widths, input first and classes last (at least two entries).
    pub sizes: Vec<i64>,
    pub activation: Activation,
    /// Probability of dropping an input value while training.
    pub input_dropout: f64,
    /// Probability of dropping a hidden unit's output while training.
    pub hidden_dropout: f64,
}

impl Default for MlpConfig {
    /// The 784-1024-1024-10 ReLU network of the benchmarks, without dropout.
    fn default() -> Self {
        MlpConfig {
            sizes: vec![784, 1024, 1024, 10],
            activation: Activation::Relu,
            input_dropout: 0.0,
            hidden_dropout: 0.0,
        }
    }
}

impl MlpConfig {
    /// Checks sizes, pieces and dropout probabilities, and that every weight shape and the
    /// parameter count stay below 2**63 (checked arithmetic: nothing wraps).
    pub fn validate(&self) -> Result<()> {
        if self.sizes.len() < 2 || self.sizes.iter().any(|&s| s < 1) {
            return Err(Error::InvalidArgument(format!(
                "sizes must list at least an input and an output width, all positive; got {:?}",
                self.sizes
            )));
        }
        if let Activation::Maxout(k @ ..=1) = self.activation {
            return Err(Error::InvalidArgument(format!("maxout needs pieces >= 2, got {k}")));
        }
        for (what, p) in [("input", self.input_dropout), ("hidden", self.hidden_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::InvalidArgument(format!("{what} dropout must be in [0, 1), got {p}")));
            }
        }
        self.parameter_count().map(drop)
    }

    /// Number of parameter values (weights and biases), with checked arithmetic.
    pub fn parameter_count(&self) -> Result<i64> {
        let mut total = 0i64;
        for i in 0..self.depth() {
            let k = if i + 1 < self.depth() { self.activation.pieces() } else { 1 };
            let rows = crate::size::product(
                &[self.sizes[i + 1], k],
                &format!("layer {i}'s number of weight rows (sizes[{}] x pieces)", i + 1),
            )?;
            let what = format!("layer {i}'s parameter count");
            let layer = crate::size::product(&[rows, crate::size::sum(&[self.sizes[i], 1], &what)?], &what)?;
            total = crate::size::sum(&[total, layer], "the MLP's parameter count")?;
        }
        Ok(total)
    }

    /// Number of affine layers.
    pub fn depth(&self) -> usize {
        self.sizes.len() - 1
    }

    /// Checks labelled data for this network: inputs `[n, sizes[0]]` of a floating dtype and
    /// int64 class indices `[n]` below the number of classes, with n > 0. `what` names the data.
    pub fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        let (xs, ys, width) = (x.size(), y.size(), self.sizes[0]);
        if xs.len() != 2 || xs[1] != width {
            return Err(Error::InvalidArgument(format!(
                "{what}: the inputs must have shape [n, {width}] for this model, got {xs:?}"
            )));
        }
        crate::flat::check_float_kind(x.f_kind()?, &format!("{what}: the inputs"))?;
        let kind = y.f_kind()?;
        if kind != Kind::Int64 {
            return Err(Error::Dtype(format!(
                "{what}: the targets must be int64 class indices, not {kind:?}"
            )));
        }
        if ys.len() != 1 || ys[0] != xs[0] {
            return Err(Error::InvalidArgument(format!(
                "{what}: {} inputs but targets of shape {ys:?}; give one class index per example",
                xs[0]
            )));
        }
        if xs[0] == 0 {
            return Err(Error::InvalidArgument(format!("{what}: no examples")));
        }
        let classes = *self.sizes.last().unwrap_or(&0);
        let (lo, hi) = (y.f_min()?.f_int64_value(&[])?, y.f_max()?.f_int64_value(&[])?);
        if lo < 0 || hi >= classes {
            return Err(Error::InvalidArgument(format!(
                "{what}: class indices must lie in [0, {classes}) for this model; found {lo} to {hi}"
            )));
        }
        Ok(())
    }

    /// Shape of layer `i`'s weight: `[out·k, in]` (k = 1 for the output layer). Exact for a
    /// configuration that passes [`MlpConfig::validate`]; saturates (never wraps) otherwise.
    pub fn weight_shape(&self, i: usize) -> [i64; 2] {
        let k = if i + 1 < self.depth() { self.activation.pieces() } else { 1 };
        [self.sizes[i + 1].saturating_mul(k), self.sizes[i]]
    }
}

/// An affine layer: weight `[out, in]` and bias `[out]`.
#[derive(Debug)]
pub struct Affine {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// A multilayer perceptron (see the module documentation for its layout).
#[derive(Debug)]
pub struct Mlp {
    config: MlpConfig,
    layers: Vec<Affine>,
}

impl Mlp {
    /// Creates the variables under `path` (PyTorch's default initialisation of nn.Linear:
    /// Kaiming-uniform weights, biases uniform in ±1/√fan_in), drawn from libtorch's global RNG.
    pub fn new(path: &nn::Path, config: MlpConfig) -> Result<Self> {
        config.validate()?;
        let what = format!("an MLP of sizes {:?}: its parameters", config.sizes);
        crate::size::check_fits(config.parameter_count()?, 4, &what, "use smaller layers")?;
        let layers = (0..config.depth())
            .map(|i| {
                let [out, fan_in] = config.weight_shape(i);
                let p = path / "layers" / i;
                let bound = 1.0 / (fan_in as f64).sqrt();
                Ok(Affine {
                    weight: p.f_var("weight", &[out, fan_in], nn::init::DEFAULT_KAIMING_UNIFORM)?,
                    bias: p.f_var("bias", &[out], nn::Init::Uniform { lo: -bound, up: bound })?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { config, layers })
    }

    /// The configuration.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    /// The affine layers, input first.
    pub fn layers(&self) -> &[Affine] {
        &self.layers
    }

    /// `(name, tensor)` of every parameter in PyTorch order: layers.0.weight, layers.0.bias, ...
    /// The tensors share storage with the model's variables.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                [
                    (format!("layers.{i}.weight"), l.weight.shallow_clone()),
                    (format!("layers.{i}.bias"), l.bias.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Checks that `xs` is a floating `[batch, sizes[0]]` tensor on the model's device.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let width = self.config.sizes[0];
        let size = xs.size();
        if size.len() != 2 || size[1] != width {
            return Err(Error::InvalidArgument(format!(
                "inputs must have shape [batch, {width}], got {size:?}"
            )));
        }
        if xs.device() != self.layers[0].weight.device() {
            return Err(Error::InvalidArgument(format!(
                "inputs are on {:?} but the model is on {:?}",
                xs.device(),
                self.layers[0].weight.device()
            )));
        }
        crate::flat::check_float_kind(xs.f_kind()?, "the inputs")
    }

    /// The logits for `xs` (`[batch, sizes[0]]`); dropout is active when `train`.
    pub fn try_forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(xs)?;
        let (cfg, last) = (&self.config, self.layers.len() - 1);
        let mut h = xs.f_to_kind(self.layers[0].weight.f_kind()?)?.f_dropout(cfg.input_dropout, train)?;
        for (i, layer) in self.layers.iter().enumerate() {
            let z = layer.bias.f_addmm(&h, &layer.weight.f_tr()?)?;
            h = if i == last { z } else { cfg.activation.apply(&z)?.f_dropout(cfg.hidden_dropout, train)? };
        }
        Ok(h)
    }

    /// Mean cross-entropy and number of misclassified examples of logits against class targets.
    pub fn loss_and_errors(logits: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
        let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss::<Tensor>(
            targets,
            None,
            tch::Reduction::Mean,
            -100,
        )?;
        let wrong = logits.f_argmax(-1, false)?.f_ne_tensor(targets)?.f_sum(Kind::Int64)?;
        Ok((loss, wrong))
    }
}

impl Network for Mlp {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Mlp::named_parameters(self)
    }

    fn constrained_weights(&self) -> Vec<Tensor> {
        self.layers.iter().map(|l| l.weight.shallow_clone()).collect()
    }

    fn device(&self) -> Device {
        self.layers[0].weight.device()
    }

    fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        self.config.check_labelled(x, y, what)
    }

    fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Mlp::try_forward(self, x, train)
    }

    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(Mlp::loss_and_errors(&Mlp::try_forward(self, x, true)?, y)?.0)
    }

    fn evaluate_rows(&self, x: &Tensor, y: &Tensor, _first_row: i64) -> Result<Measure> {
        let (loss, wrong) = Mlp::loss_and_errors(&Mlp::try_forward(self, x, false)?, y)?;
        let count = x.size()[0];
        Ok(Measure {
            loss_sum: loss.f_double_value(&[])? * count as f64,
            wrong: wrong.f_int64_value(&[])?,
            count,
        })
    }

    /// The fast sweep: the first layer once per batch for all points, the parameters untouched
    /// (see [`super::mlp_sweep`]); bf16 per-point layers available.
    fn sweep(
        &self,
        sub: &crate::subspace::Subspace,
        data: (&Tensor, &Tensor),
        passes: &[super::network::Pass],
        batch_size: i64,
        on_point: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Vec<Measure>>> {
        super::mlp_sweep::sweep_mlp_passes(&self.config, sub, data, passes, batch_size, on_point)
    }
}

impl nn::ModuleT for Mlp {
    /// Infallible form for tch code; linpath's own callers use [`Mlp::try_forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.try_forward(xs, train).expect("Mlp::forward_t: invalid input (use try_forward for errors)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;

    fn model(activation: Activation) -> (nn::VarStore, Mlp) {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = MlpConfig { sizes: vec![5, 7, 3], activation, ..MlpConfig::default() };
        let mlp = Mlp::new(&vs.root(), cfg).unwrap();
        (vs, mlp)
    }

    #[test]
    fn parameters_are_named_and_ordered_like_pytorch() {
        let (vs, mlp) = model(Activation::Maxout(3));
        let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]);
        assert_eq!(mlp.layers()[0].weight.size(), [21, 5]);
        assert_eq!(mlp.layers()[1].weight.size(), [3, 7]);
        assert_eq!(vs.variables().len(), 4);
    }

    #[test]
    fn forward_matches_a_hand_computation_for_maxout() {
        let (_vs, mlp) = model(Activation::Maxout(3));
        let x = Tensor::randn([4, 5], (Kind::Float, Device::Cpu));
        let l = mlp.layers();
        let z = x.matmul(&l[0].weight.tr()) + &l[0].bias;
        let h = z.view([4, 7, 3]).max_dim(2, false).0;
        let expected = h.matmul(&l[1].weight.tr()) + &l[1].bias;
        let got = mlp.forward_t(&x, false);
        assert!((got - expected).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn bad_configs_and_inputs_are_errors() {
        assert!(Activation::parse("swish", 2).is_err());
        assert!(Activation::parse("maxout", 1).is_err());
        let vs = nn::VarStore::new(Device::Cpu);
        let bad = MlpConfig { sizes: vec![5], ..MlpConfig::default() };
        assert!(Mlp::new(&vs.root(), bad).is_err());
        let bad = MlpConfig { input_dropout: 1.0, ..MlpConfig::default() };
        assert!(Mlp::new(&vs.root(), bad).is_err());
        let (_vs, mlp) = model(Activation::Relu);
        assert!(mlp.try_forward(&Tensor::zeros([2, 6], (Kind::Float, Device::Cpu)), false).is_err());
    }

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_errors_before_allocation() {
        let vs = nn::VarStore::new(Device::Cpu);
        let maxout = |sizes: Vec<i64>, k| MlpConfig {
            sizes,
            activation: Activation::Maxout(k),
            ..MlpConfig::default()
        };
        // 8·2**62 wraps to 0 in unchecked i64 arithmetic: the layers came out [0, 4].
        let msg = Mlp::new(&vs.root(), maxout(vec![4, 8, 3], 1 << 62)).unwrap_err().to_string();
        assert!(msg.contains("layer 0's number of weight rows") && msg.contains("2**63 - 1"), "{msg}");
        let wide_input = MlpConfig { sizes: vec![1 << 62, 4], ..MlpConfig::default() };
        let msg = wide_input.validate().unwrap_err().to_string();
        assert!(msg.contains("layer 0's parameter count is too large"), "{msg}");
        assert!(maxout(vec![4, 8, 3], 1).validate().is_err());
        let huge = MlpConfig { sizes: vec![4, 1 << 40, 3], ..MlpConfig::default() };
        let msg = Mlp::new(&vs.root(), huge).unwrap_err().to_string();
        assert!(msg.contains("35184372088844 bytes (32.0 TiB)") && msg.contains("this machine has"), "{msg}");
        assert!(vs.variables().is_empty());
        let cfg = MlpConfig::default();
        assert_eq!(cfg.parameter_count().unwrap(), 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10);
    }
}
