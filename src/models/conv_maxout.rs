//! The convolutional maxout network of Goodfellow et al. (2013), "Maxout networks", for CIFAR-10.
//!
//! Inputs are images `[n, C, H, W]`, targets class indices `[n]`. Layout:
//!
//! * conv maxout layer `i` (`convs.{i}.weight` `[channels_i·pieces, in_i, k_i, k_i]`,
//!   `convs.{i}.bias` `[channels_i·pieces]`): a stride-1 convolution with zero padding `p_i`;
//!   maxout over groups of `pieces` *consecutive* channels (the output reshaped to
//!   `[n, channels_i, pieces, H, W]`, maximum over dimension 2: channel `j` is the maximum of
//!   convolution channels `j·pieces .. (j+1)·pieces`, as in pylearn2's `MaxoutConvC01B`);
//!   then max pooling (window `pool_i`, stride `pool_stride_i`, no padding) in *ceil mode*:
//!   the last window may hang over the edge and takes the maximum of what it covers, so an
//!   image of size `s` pools to `ceil((s − pool)/stride) + 1` (PyTorch's `ceil_mode=True`,
//!   which is the output size of cuda-convnet's pooling used by pylearn2);
//! * a fully connected maxout layer (`fc.weight` `[fc_units·fc_pieces, C·H·W]`, the last
//!   feature map flattened in `[C, H, W]` order), maxout over consecutive rows as in the MLP;
//! * a linear softmax layer (`out.weight` `[classes, fc_units]`): the logits.
//!
//! Dropout (inverted: scaled by 1/(1−p) while training, nothing at evaluation) acts on the
//! input of every layer while training: `input_dropout` on the images, `hidden_dropout` on
//! the inputs of the other conv layers, of the fc layer and of the softmax layer.

use super::network::{Measure, Network};
use crate::error::{Error, Result};
use tch::{nn, Device, Kind, Tensor};

/// Bytes of activations one evaluation block may hold (see [`Network::eval_rows`]).
const EVAL_BLOCK_BYTES: i64 = 300 << 20;

/// The largest pooling window or stride: libtorch's max pooling takes them as C ints.
const POOL_LIMIT: i64 = i32::MAX as i64;

/// Configuration of a [`ConvMaxout`] network. The per-layer lists (`channels`, `kernels`,
/// `paddings`, `pools`, `pool_strides`) have one entry per conv maxout layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvMaxoutConfig {
    /// `[channels, height, width]` of the input images.
    pub input_shape: [i64; 3],
    /// Maxout channels of each conv layer (the convolution has `channels·pieces` outputs).
    pub channels: Vec<i64>,
    /// Square kernel size of each conv layer.
    pub kernels: Vec<i64>,
    /// Zero padding on each side of each conv layer's input.
    pub paddings: Vec<i64>,
    /// Square max-pooling window of each conv layer.
    pub pools: Vec<i64>,
    /// Pooling stride of each conv layer.
    pub pool_strides: Vec<i64>,
    /// Pieces per maxout channel in the conv layers (at least 2).
    pub pieces: i64,
    /// Units of the fully connected maxout layer.
    pub fc_units: i64,
    /// Pieces per unit of the fully connected maxout layer (at least 2).
    pub fc_pieces: i64,
    /// Number of classes (outputs of the softmax layer).
    pub classes: i64,
    /// Probability of dropping an input value while training.
    pub input_dropout: f64,
    /// Probability of dropping a value of every other layer's input while training.
    pub hidden_dropout: f64,
}

impl Default for ConvMaxoutConfig {
    /// The CIFAR-10 network of Goodfellow et al. 2013 (pylearn2's `papers/maxout/cifar10.yaml`):
    /// 3 conv maxout layers of 96/192/192 channels × 2 pieces, kernels 8/8/5, paddings 4/3/3,
    /// pools 4/4/2 with stride 2 (feature maps 16×16, 7×7, 5×5), a 500 × 5 maxout layer and a
    /// 10-way softmax; dropout 0.2 on the input and 0.5 on every other layer's input.
    fn default() -> Self {
        ConvMaxoutConfig {
            input_shape: [3, 32, 32],
            channels: vec![96, 192, 192],
            kernels: vec![8, 8, 5],
            paddings: vec![4, 3, 3],
            pools: vec![4, 4, 2],
            pool_strides: vec![2, 2, 2],
            pieces: 2,
            fc_units: 500,
            fc_pieces: 5,
            classes: 10,
            input_dropout: 0.2,
            hidden_dropout: 0.5,
        }
    }
}

/// Side of a stride-1 convolution's output (`side + 2·padding − kernel + 1`, checked; sides,
/// kernels and paddings are non-negative). `layer` names the conv layer in the error.
fn conv_side(side: i64, kernel: i64, padding: i64, layer: usize) -> Result<i64> {
    let padded = side.checked_add(padding.checked_mul(2).ok_or_else(|| too_wide(layer))?);
    Ok(padded.ok_or_else(|| too_wide(layer))? - kernel + 1)
}

/// The error for a conv layer whose padded input side exceeds 2**63 − 1.
fn too_wide(layer: usize) -> Error {
    crate::size::too_large(&format!("conv layer {layer}'s padded input side (side + 2 x padding)"))
}

/// Side of a ceil-mode max pooling's output without padding (PyTorch's formula, which also
/// drops a last window that would start past the input), for `side >= pool >= 1` and
/// `stride >= 1`; written so that no intermediate value can overflow.
fn pool_side(side: i64, pool: i64, stride: i64) -> i64 {
    let gap = side - pool;
    let out = gap / stride + i64::from(gap % stride != 0) + 1;
    // A last window starting at or past the input's end is dropped (an overflowing start is past it).
    if (out - 1).checked_mul(stride).is_none_or(|start| start >= side) {
        out - 1
    } else {
        out
    }
}

impl ConvMaxoutConfig {
    /// A configuration that trains on a small CPU (a few ms per example forward and backward):
    /// 3 conv maxout layers of 32/64/64 channels × 2 pieces, 5×5 kernels with padding 2,
    /// 2×2 pools with stride 2 (32 → 16 → 8 → 4), a 200 × 2 maxout layer, the paper's dropout.
    pub fn small() -> Self {
        ConvMaxoutConfig {
            channels: vec![32, 64, 64],
            kernels: vec![5, 5, 5],
            paddings: vec![2, 2, 2],
            pools: vec![2, 2, 2],
            pool_strides: vec![2, 2, 2],
            fc_units: 200,
            fc_pieces: 2,
            ..ConvMaxoutConfig::default()
        }
    }

    /// Number of conv maxout layers.
    pub fn depth(&self) -> usize {
        self.channels.len()
    }

    /// Checks list lengths, sizes, pieces, dropout probabilities, and that the feature maps
    /// keep at least one pixel (and at least a pooling window) through the stack.
    pub fn validate(&self) -> Result<()> {
        self.check_lists()?;
        let sizes = [("fc_units", self.fc_units), ("classes", self.classes)];
        for (what, v) in sizes.into_iter().chain(self.input_shape.iter().map(|&v| ("input_shape", v))) {
            if v < 1 {
                return Err(Error::InvalidArgument(format!("{what} must be positive, got {v}")));
            }
        }
        for (what, k) in [("pieces", self.pieces), ("fc_pieces", self.fc_pieces)] {
            if k < 2 {
                return Err(Error::InvalidArgument(format!("maxout needs {what} >= 2, got {k}")));
            }
        }
        for (what, p) in [("input", self.input_dropout), ("hidden", self.hidden_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::InvalidArgument(format!("{what} dropout must be in [0, 1), got {p}")));
            }
        }
        self.parameter_count()?;
        self.activations_per_row().map(drop)
    }

    /// Checks that the per-layer lists are non-empty, of equal length and hold valid values.
    /// Pooling windows and strides stay below 2**31: libtorch's max pooling takes them as C ints.
    fn check_lists(&self) -> Result<()> {
        let lists = [
            ("channels", &self.channels, 1, i64::MAX),
            ("kernels", &self.kernels, 1, i64::MAX),
            ("paddings", &self.paddings, 0, i64::MAX),
            ("pools", &self.pools, 1, POOL_LIMIT),
            ("pool_strides", &self.pool_strides, 1, POOL_LIMIT),
        ];
        let depth = self.channels.len();
        if depth == 0 {
            return Err(Error::InvalidArgument(
                "the network needs at least one conv layer: channels is empty".into(),
            ));
        }
        for (what, list, least, most) in lists {
            if list.len() != depth {
                return Err(Error::InvalidArgument(format!(
                    "channels, kernels, paddings, pools and pool_strides need one entry per conv \
                     layer; got {depth} channels but {} {what}",
                    list.len()
                )));
            }
            if let Some(v) = list.iter().find(|&&v| v < least) {
                return Err(Error::InvalidArgument(format!(
                    "{what} must all be >= {least}, got {v} in {list:?}"
                )));
            }
            if let Some(v) = list.iter().find(|&&v| v > most) {
                return Err(Error::InvalidArgument(format!(
                    "{what} must all be below 2**31 (libtorch's max pooling takes C ints), got {v} in {list:?}"
                )));
            }
        }
        Ok(())
    }

    /// `(height, width)` of each conv layer's pooled output, input first excluded; fails,
    /// naming the layer and the size, where a convolution or a pooling has nothing to work on.
    pub fn feature_sides(&self) -> Result<Vec<(i64, i64)>> {
        let mut side = (self.input_shape[1], self.input_shape[2]);
        let mut sides = Vec::with_capacity(self.depth());
        for i in 0..self.depth() {
            let (k, p, pool, stride) =
                (self.kernels[i], self.paddings[i], self.pools[i], self.pool_strides[i]);
            let conv = (conv_side(side.0, k, p, i)?, conv_side(side.1, k, p, i)?);
            if conv.0 < pool || conv.1 < pool {
                return Err(Error::InvalidArgument(format!(
                    "conv layer {i}: a {h}x{w} input convolved with a {k}x{k} kernel and padding {p} \
                     gives {}x{}, smaller than the {pool}x{pool} pooling window; use a larger input, \
                     more padding, or smaller kernels or pools",
                    conv.0,
                    conv.1,
                    h = side.0,
                    w = side.1,
                )));
            }
            side = (pool_side(conv.0, pool, stride), pool_side(conv.1, pool, stride));
            sides.push(side);
        }
        Ok(sides)
    }

    /// Inputs of the fully connected layer: the last feature map's `C·H·W`.
    pub fn fc_inputs(&self) -> Result<i64> {
        let (h, w) = self.feature_sides()?.last().copied().unwrap_or((1, 1));
        let c = self.channels.last().copied().unwrap_or(0);
        crate::size::product(
            &[c, h, w],
            "the number of inputs of the fc layer (the last feature map's C x H x W)",
        )
    }

    /// Number of parameter values (conv filters and biases, fc and softmax layers), with
    /// checked arithmetic.
    pub fn parameter_count(&self) -> Result<i64> {
        use crate::size::{product, sum};
        let what = "the conv maxout network's parameter count";
        let mut inputs = self.input_shape[0];
        let mut total = 0;
        for (&c, &k) in self.channels.iter().zip(&self.kernels) {
            let outputs =
                product(&[c, self.pieces], "the number of outputs of a conv layer (channels x pieces)")?;
            let filter = sum(&[product(&[inputs, k, k], what)?, 1], what)?;
            total = sum(&[total, product(&[outputs, filter], what)?], what)?;
            inputs = c;
        }
        let fc_rows = product(
            &[self.fc_units, self.fc_pieces],
            "the number of rows of the fc layer (fc_units x fc_pieces)",
        )?;
        let fc = product(&[fc_rows, sum(&[self.fc_inputs()?, 1], what)?], what)?;
        let out = product(&[self.classes, sum(&[self.fc_units, 1], what)?], what)?;
        sum(&[total, fc, out], what)
    }

    /// Activation values one example produces in an evaluation forward pass (the input, each
    /// convolution's output, its maxout and pooled maps, the fc layer and the logits), with
    /// checked arithmetic.
    pub fn activations_per_row(&self) -> Result<i64> {
        use crate::size::{product, sum};
        let what = "the number of activations of one example";
        let [c, mut h, mut w] = self.input_shape;
        let mut total = product(&[c, h, w], what)?;
        for (i, &(ph, pw)) in self.feature_sides()?.iter().enumerate() {
            let (k, p) = (self.kernels[i], self.paddings[i]);
            let (ch, cw) = (conv_side(h, k, p, i)?, conv_side(w, k, p, i)?);
            let maps = sum(
                &[product(&[ch, cw, sum(&[self.pieces, 1], what)?], what)?, product(&[ph, pw], what)?],
                what,
            )?;
            total = sum(&[total, product(&[self.channels[i], maps], what)?], what)?;
            (h, w) = (ph, pw);
        }
        let fc = product(&[self.fc_units, sum(&[self.fc_pieces, 1], what)?], what)?;
        sum(&[total, fc, self.classes], what)
    }

    /// Checks labelled data: float images `[n, C, H, W]` of `input_shape`, int64 class indices
    /// `[n]` in `[0, classes)`, n > 0. `what` names the data in the error message.
    pub fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        self.check_images(x, what)?;
        let (n, ys) = (x.size()[0], y.size());
        let kind = y.f_kind()?;
        if kind != Kind::Int64 {
            return Err(Error::Dtype(format!(
                "{what}: the targets must be int64 class indices, not {kind:?}"
            )));
        }
        if ys.len() != 1 || ys[0] != n {
            return Err(Error::InvalidArgument(format!(
                "{what}: {n} inputs but targets of shape {ys:?}; give one class index per example"
            )));
        }
        if n == 0 {
            return Err(Error::InvalidArgument(format!("{what}: no examples")));
        }
        let (lo, hi) = (y.f_min()?.f_int64_value(&[])?, y.f_max()?.f_int64_value(&[])?);
        if lo < 0 || hi >= self.classes {
            return Err(Error::InvalidArgument(format!(
                "{what}: class indices must lie in [0, {}) for this model; found {lo} to {hi}",
                self.classes
            )));
        }
        Ok(())
    }

    /// Checks that `x` is a floating-point batch of images of `input_shape`.
    pub fn check_images(&self, x: &Tensor, what: &str) -> Result<()> {
        let size = x.size();
        if size.len() != 4 || size[1..] != self.input_shape {
            return Err(Error::InvalidArgument(format!(
                "{what}: the inputs must be images of shape [n, {}, {}, {}] for this model, got {size:?}",
                self.input_shape[0], self.input_shape[1], self.input_shape[2]
            )));
        }
        crate::flat::check_float_kind(x.f_kind()?, &format!("{what}: the inputs"))
    }
}

/// A weight and a bias.
#[derive(Debug)]
pub struct Layer {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// Creates `weight` (`shape`) and `bias` (`[shape[0]]`) under `path` with PyTorch's default
/// initialisation of Conv2d/Linear: both uniform in ±1/√fan_in (fan_in = the product of
/// `shape[1..]`; Kaiming-uniform with a = √5 gives exactly this bound for the weight).
fn layer(path: &nn::Path, shape: &[i64]) -> Result<Layer> {
    let fan_in: i64 = shape[1..].iter().product();
    let bound = 1.0 / (fan_in as f64).sqrt();
    let init = nn::Init::Uniform { lo: -bound, up: bound };
    Ok(Layer { weight: path.f_var("weight", shape, init)?, bias: path.f_var("bias", &shape[..1], init)? })
}

/// Maximum over groups of `pieces` consecutive channels (dimension 1) of `z`.
fn maxout(z: &Tensor, pieces: i64) -> Result<Tensor> {
    let mut shape = z.size();
    shape[1] /= pieces;
    shape.insert(2, pieces);
    Ok(z.f_view(shape.as_slice())?.f_amax([2i64].as_slice(), false)?)
}

/// The convolutional maxout network (see the module documentation for its layout).
#[derive(Debug)]
pub struct ConvMaxout {
    config: ConvMaxoutConfig,
    convs: Vec<Layer>,
    fc: Layer,
    out: Layer,
}

impl ConvMaxout {
    /// Checks `config` and creates the variables under `path` (PyTorch's default
    /// initialisation, drawn from libtorch's global RNG).
    pub fn new(path: &nn::Path, config: ConvMaxoutConfig) -> Result<Self> {
        config.validate()?;
        let hint = "use fewer or smaller layers, or smaller images";
        crate::size::check_fits(config.parameter_count()?, 4, "this conv maxout network's parameters", hint)?;
        let what = "one example's activations in this conv maxout network";
        crate::size::check_fits(config.activations_per_row()?, 4, what, hint)?;
        let mut inputs = config.input_shape[0];
        let mut convs = Vec::with_capacity(config.depth());
        for (i, (&c, &k)) in config.channels.iter().zip(&config.kernels).enumerate() {
            let outputs = crate::size::product(&[c, config.pieces], "the number of outputs of a conv layer")?;
            convs.push(layer(&(path / "convs" / i), &[outputs, inputs, k, k])?);
            inputs = c;
        }
        let fc_rows =
            crate::size::product(&[config.fc_units, config.fc_pieces], "the number of rows of the fc layer")?;
        let fc = layer(&(path / "fc"), &[fc_rows, config.fc_inputs()?])?;
        let out = layer(&(path / "out"), &[config.classes, config.fc_units])?;
        Ok(ConvMaxout { config, convs, fc, out })
    }

    /// The configuration.
    pub fn config(&self) -> &ConvMaxoutConfig {
        &self.config
    }

    /// `(name, tensor)` of every parameter in PyTorch order: convs.0.weight, convs.0.bias, ...,
    /// fc.weight, fc.bias, out.weight, out.bias. The tensors share storage with the variables.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let named = self.convs.iter().enumerate().map(|(i, l)| (format!("convs.{i}"), l));
        named
            .chain([("fc".to_string(), &self.fc), ("out".to_string(), &self.out)])
            .flat_map(|(name, l)| {
                [
                    (format!("{name}.weight"), l.weight.shallow_clone()),
                    (format!("{name}.bias"), l.bias.shallow_clone()),
                ]
            })
            .collect()
    }

    /// Checks that `x` is a floating-point batch of images of the configured shape on the
    /// model's device.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        self.config.check_images(x, "x")?;
        if x.device() != self.fc.weight.device() {
            return Err(Error::InvalidArgument(format!(
                "inputs are on {:?} but the model is on {:?}",
                x.device(),
                self.fc.weight.device()
            )));
        }
        Ok(())
    }

    /// Conv maxout layer `i` on `h` (after its input dropout).
    fn conv_layer(&self, i: usize, h: &Tensor) -> Result<Tensor> {
        let (cfg, l) = (&self.config, &self.convs[i]);
        let (pad, pool, stride) = (cfg.paddings[i], cfg.pools[i], cfg.pool_strides[i]);
        let z = h.f_conv2d(&l.weight, Some(&l.bias), [1, 1], [pad, pad], [1, 1], 1)?;
        Ok(maxout(&z, cfg.pieces)?.f_max_pool2d([pool, pool], [stride, stride], [0, 0], [1, 1], true)?)
    }

    /// The logits for images `x`; dropout is active when `train`.
    pub fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(x)?;
        let cfg = &self.config;
        let mut h = x.f_to_kind(self.fc.weight.f_kind()?)?.f_dropout(cfg.input_dropout, train)?;
        for i in 0..self.convs.len() {
            if i > 0 {
                h = h.f_dropout(cfg.hidden_dropout, train)?;
            }
            h = self.conv_layer(i, &h)?;
        }
        let h = h.f_flatten(1, -1)?.f_dropout(cfg.hidden_dropout, train)?;
        let z = self.fc.bias.f_addmm(&h, &self.fc.weight.f_tr()?)?;
        let h = maxout(&z, cfg.fc_pieces)?.f_dropout(cfg.hidden_dropout, train)?;
        Ok(self.out.bias.f_addmm(&h, &self.out.weight.f_tr()?)?)
    }

    /// Summed cross-entropy (in the logits' precision) and number of misclassified examples.
    pub fn loss_and_errors(
        logits: &Tensor,
        targets: &Tensor,
        reduction: tch::Reduction,
    ) -> Result<(Tensor, Tensor)> {
        let log_p = logits.f_log_softmax(-1, logits.f_kind()?)?;
        let loss = log_p.f_nll_loss::<Tensor>(targets, None, reduction, -100)?;
        let wrong = logits.f_argmax(-1, false)?.f_ne_tensor(targets)?.f_sum(Kind::Int64)?;
        Ok((loss, wrong))
    }
}

impl Network for ConvMaxout {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        ConvMaxout::named_parameters(self)
    }

    /// Every weight: conv filters (each output channel's filter), fc and softmax rows.
    fn constrained_weights(&self) -> Vec<Tensor> {
        self.convs.iter().chain([&self.fc, &self.out]).map(|l| l.weight.shallow_clone()).collect()
    }

    fn device(&self) -> Device {
        self.fc.weight.device()
    }

    fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        self.config.check_labelled(x, y, what)
    }

    fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        ConvMaxout::try_forward(self, x, train)
    }

    /// Mean cross-entropy of the minibatch with dropout on.
    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let logits = ConvMaxout::try_forward(self, x, true)?;
        Ok(ConvMaxout::loss_and_errors(&logits, y, tch::Reduction::Mean)?.0)
    }

    /// Summed cross-entropy and errors without dropout.
    fn evaluate_rows(&self, x: &Tensor, y: &Tensor, _first_row: i64) -> Result<Measure> {
        let logits = ConvMaxout::try_forward(self, x, false)?;
        let (loss, wrong) = ConvMaxout::loss_and_errors(&logits, y, tch::Reduction::Sum)?;
        Ok(Measure {
            loss_sum: loss.f_double_value(&[])?,
            wrong: wrong.f_int64_value(&[])?,
            count: x.size()[0],
        })
    }

    /// Rows whose activations fit in about 300 MB (140 for the paper's network), at most 4096.
    fn eval_rows(&self) -> i64 {
        let bytes = self.fc.weight.kind().elt_size_in_bytes() as i64;
        let per_row = self.config.activations_per_row().unwrap_or(1).max(1).saturating_mul(bytes);
        (EVAL_BLOCK_BYTES / per_row).clamp(1, 4096)
    }
}

impl nn::ModuleT for ConvMaxout {
    /// Infallible form for tch code; linpath's own callers use [`ConvMaxout::try_forward`].
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.try_forward(xs, train)
            .expect("ConvMaxout::forward_t: invalid input (use try_forward for errors)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;

    /// Two conv layers on 2×7×7 images whose ceil-mode pools leave truncated last windows.
    fn tiny() -> ConvMaxoutConfig {
        ConvMaxoutConfig {
            input_shape: [2, 7, 7],
            channels: vec![3, 2],
            kernels: vec![3, 2],
            paddings: vec![1, 0],
            pools: vec![2, 2],
            pool_strides: vec![2, 2],
            pieces: 2,
            fc_units: 3,
            fc_pieces: 3,
            classes: 4,
            input_dropout: 0.0,
            hidden_dropout: 0.0,
        }
    }

    fn model(cfg: ConvMaxoutConfig, kind: Kind) -> (nn::VarStore, ConvMaxout) {
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = ConvMaxout::new(&vs.root(), cfg).unwrap();
        if kind == Kind::Double {
            vs.double();
        }
        (vs, net)
    }

    #[test]
    fn parameters_are_named_ordered_and_shaped_like_pytorch() {
        let (vs, net) = model(tiny(), Kind::Float);
        let got: Vec<(String, Vec<i64>)> =
            net.named_parameters().into_iter().map(|(n, t)| (n, t.size())).collect();
        let want: Vec<(String, Vec<i64>)> = [
            ("convs.0.weight", vec![6, 2, 3, 3]),
            ("convs.0.bias", vec![6]),
            ("convs.1.weight", vec![4, 3, 2, 2]),
            ("convs.1.bias", vec![4]),
            ("fc.weight", vec![9, 8]),
            ("fc.bias", vec![9]),
            ("out.weight", vec![4, 3]),
            ("out.bias", vec![4]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        assert_eq!(got, want);
        assert_eq!(vs.variables().len(), 8);
        assert_eq!(net.constrained_weights().len(), 4);
    }

    #[test]
    fn paper_and_small_configs_have_the_expected_feature_maps() {
        let paper = ConvMaxoutConfig::default();
        assert_eq!(paper.feature_sides().unwrap(), [(16, 16), (7, 7), (5, 5)]); // pylearn2's sizes
        assert_eq!(paper.fc_inputs().unwrap(), 192 * 25);
        let small = ConvMaxoutConfig::small();
        assert_eq!(small.feature_sides().unwrap(), [(16, 16), (8, 8), (4, 4)]);
        assert_eq!(tiny().feature_sides().unwrap(), [(4, 4), (2, 2)]);
        assert_eq!(pool_side(5, 1, 3), 2); // PyTorch drops a window starting past the input
    }

    /// The forward pass written the slow obvious way: maxout by strided channel slices,
    /// pooling by explicit (edge-truncated) windows.
    fn reference(net: &ConvMaxout, x: &Tensor) -> Tensor {
        let cfg = net.config();
        let mut h = x.shallow_clone();
        for (i, l) in net.convs.iter().enumerate() {
            let z = h.conv2d(&l.weight, Some(&l.bias), [1, 1], [cfg.paddings[i]; 2], [1, 1], 1);
            let c = z.size()[1];
            let m = (1..cfg.pieces)
                .fold(z.slice(1, 0, c, cfg.pieces), |m, j| m.maximum(&z.slice(1, j, c, cfg.pieces)));
            let (pool, stride, side) = (cfg.pools[i], cfg.pool_strides[i], m.size()[2]);
            let out = pool_side(side, pool, stride);
            let rows: Vec<Tensor> = (0..out)
                .map(|r| {
                    let cols: Vec<Tensor> = (0..out)
                        .map(|q| {
                            let (r0, q0) = (r * stride, q * stride);
                            let win = m.narrow(2, r0, pool.min(side - r0)).narrow(3, q0, pool.min(side - q0));
                            win.amax([2i64, 3].as_slice(), false)
                        })
                        .collect();
                    Tensor::stack(&cols, 2)
                })
                .collect();
            h = Tensor::stack(&rows, 2);
        }
        let z = h.flatten(1, -1).matmul(&net.fc.weight.tr()) + &net.fc.bias;
        let k = cfg.fc_pieces;
        let f = (1..k).fold(z.slice(1, 0, z.size()[1], k), |m, j| m.maximum(&z.slice(1, j, z.size()[1], k)));
        f.matmul(&net.out.weight.tr()) + &net.out.bias
    }

    #[test]
    fn forward_matches_a_slow_reference() {
        let (_vs, net) = model(tiny(), Kind::Double);
        let x = Tensor::randn([5, 2, 7, 7], (Kind::Double, Device::Cpu));
        let got = net.forward_t(&x, false);
        assert_eq!(got.size(), [5, 4]);
        let diff = (got - reference(&net, &x)).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "max difference {diff}");
    }

    /// Deterministic loss: summed cross-entropy without dropout.
    fn loss(net: &ConvMaxout, x: &Tensor, y: &Tensor) -> Tensor {
        ConvMaxout::loss_and_errors(&net.forward_t(x, false), y, tch::Reduction::Sum).unwrap().0
    }

    #[test]
    fn gradients_match_central_differences_in_float64() {
        let (_vs, net) = model(tiny(), Kind::Double);
        let x = Tensor::randn([3, 2, 7, 7], (Kind::Double, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 3, 1]);
        let params: Vec<Tensor> = net.named_parameters().into_iter().map(|(_, t)| t).collect();
        let grads = Tensor::run_backward(&[loss(&net, &x, &y)], &params, false, false);
        let eps = 1e-5;
        let mut worst: f64 = 0.0;
        let _guard = tch::no_grad_guard(); // the probes below are not differentiated
        for (p, g) in params.iter().zip(&grads) {
            let (flat, g) = (p.view([-1]), g.view([-1]));
            for j in 0..flat.size()[0] {
                let v = flat.double_value(&[j]);
                let at = |value: f64| {
                    let _ = flat.get(j).fill_(value);
                    loss(&net, &x, &y).double_value(&[])
                };
                let fd = (at(v + eps) - at(v - eps)) / (2.0 * eps);
                let _ = at(v);
                let ad = g.double_value(&[j]);
                worst = worst.max((fd - ad).abs() / (1e-3 + fd.abs().max(ad.abs())));
            }
        }
        assert!(worst < 1e-6, "worst relative gradient error {worst}");
    }

    #[test]
    fn evaluation_sums_losses_and_errors_and_dropout_is_seeded() {
        let cfg = ConvMaxoutConfig { input_dropout: 0.3, hidden_dropout: 0.5, ..tiny() };
        let (_vs, net) = model(cfg, Kind::Float);
        let x = Tensor::randn([6, 2, 7, 7], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        let m = net.evaluate_rows(&x, &y, 0).unwrap();
        let logits = net.forward_t(&x, false);
        let ce = logits.cross_entropy_for_logits(&y).double_value(&[]) * 6.0;
        let wrong = logits.argmax(-1, false).ne_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        assert!((m.loss_sum - ce).abs() < 1e-5 * ce.abs().max(1.0));
        assert_eq!((m.wrong, m.count), (wrong, 6));
        tch::manual_seed(7);
        let a = net.objective(&x, &y).unwrap().double_value(&[]);
        tch::manual_seed(7);
        let b = net.objective(&x, &y).unwrap().double_value(&[]);
        assert_eq!(a, b);
        assert_ne!(a, m.loss_sum / 6.0, "dropout must change the training objective");
    }

    #[test]
    fn eval_blocks_stay_under_the_memory_budget() {
        let (_vs, net) = model(ConvMaxoutConfig::default(), Kind::Float);
        let rows = net.eval_rows();
        let per_row = net.config().activations_per_row().unwrap() * 4;
        assert!(rows * per_row <= EVAL_BLOCK_BYTES && (rows + 1) * per_row > EVAL_BLOCK_BYTES);
        assert!((100..300).contains(&rows), "{rows} rows");
    }

    fn config_error(cfg: ConvMaxoutConfig) -> String {
        cfg.validate().unwrap_err().to_string()
    }

    #[test]
    fn bad_configs_are_errors_that_say_what_is_wrong() {
        assert!(config_error(ConvMaxoutConfig { kernels: vec![5], ..tiny() })
            .contains("one entry per conv layer"));
        let empty = ConvMaxoutConfig {
            channels: vec![],
            kernels: vec![],
            paddings: vec![],
            pools: vec![],
            pool_strides: vec![],
            ..tiny()
        };
        assert!(config_error(empty).contains("at least one conv layer"));
        assert!(
            config_error(ConvMaxoutConfig { pools: vec![2, 0], ..tiny() }).contains("pools must all be >= 1")
        );
        assert!(config_error(ConvMaxoutConfig { pieces: 1, ..tiny() }).contains("pieces >= 2"));
        assert!(config_error(ConvMaxoutConfig { hidden_dropout: 1.0, ..tiny() }).contains("dropout"));
        assert!(config_error(ConvMaxoutConfig { classes: 0, ..tiny() }).contains("classes"));
        let msg = config_error(ConvMaxoutConfig { kernels: vec![3, 4], ..tiny() });
        assert!(msg.contains("conv layer 1") && msg.contains("gives 1x1"), "{msg}");
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(ConvMaxout::new(&vs.root(), ConvMaxoutConfig { pieces: 0, ..tiny() }).is_err());
    }

    #[test]
    fn bad_data_are_errors() {
        let (_vs, net) = model(tiny(), Kind::Float);
        let x = Tensor::randn([2, 2, 7, 7], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 3]);
        assert!(net.check_labelled(&x, &y, "data").is_ok());
        let wrong_shape = Tensor::randn([2, 3, 7, 7], (Kind::Float, Device::Cpu));
        assert!(matches!(net.check_labelled(&wrong_shape, &y, "data"), Err(Error::InvalidArgument(_))));
        assert!(matches!(net.try_forward(&wrong_shape, false), Err(Error::InvalidArgument(_))));
        let ints = x.to_kind(Kind::Int64);
        assert!(matches!(net.check_labelled(&ints, &y, "data"), Err(Error::Dtype(_))));
        assert!(matches!(net.check_labelled(&x, &y.to_kind(Kind::Int), "data"), Err(Error::Dtype(_))));
        let msg = net.check_labelled(&x, &Tensor::from_slice(&[0i64, 4]), "data").unwrap_err().to_string();
        assert!(msg.contains("[0, 4)"), "{msg}");
        assert!(net.check_labelled(&x, &Tensor::from_slice(&[0i64]), "data").is_err());
    }

    #[test]
    fn max_norm_renorm_bounds_every_filter() {
        let (_vs, net) = model(tiny(), Kind::Float);
        tch::no_grad(|| {
            for w in net.constrained_weights() {
                let _ = w.shallow_clone().renorm_(2.0, 0, 0.05);
                let norms = w.view([w.size()[0], -1]).norm_scalaropt_dim(2.0, [1i64].as_slice(), false);
                assert!(norms.max().double_value(&[]) <= 0.05 + 1e-6);
            }
        });
    }

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_errors_before_allocation() {
        let msg = config_error(ConvMaxoutConfig { pieces: 1 << 62, ..tiny() });
        assert!(msg.contains("outputs of a conv layer") && msg.contains("2**63 - 1"), "{msg}");
        let msg = config_error(ConvMaxoutConfig { paddings: vec![1 << 62, 0], ..tiny() });
        assert!(msg.contains("conv layer 0's padded input side"), "{msg}");
        let msg = config_error(ConvMaxoutConfig { fc_units: i64::MAX, ..tiny() });
        assert!(msg.contains("rows of the fc layer"), "{msg}");
        let msg = config_error(ConvMaxoutConfig { pool_strides: vec![2, 1 << 31], ..tiny() });
        assert!(msg.contains("pool_strides must all be below 2**31"), "{msg}");
        // A padded map of about 2**32 x 2**32 pooled back to 3 x 3 (then 2 x 2): few parameters,
        // but activations past 2**63 - 1.
        let pooled_back = ConvMaxoutConfig {
            kernels: vec![3, 1],
            paddings: vec![1 << 31, 0],
            pools: vec![POOL_LIMIT, 2],
            pool_strides: vec![POOL_LIMIT, 2],
            ..tiny()
        };
        assert_eq!(pooled_back.feature_sides().unwrap(), [(3, 3), (2, 2)]);
        let msg = config_error(pooled_back);
        assert!(msg.contains("activations of one example is too large"), "{msg}");
        // Representable, but more than any machine holds: one example's activations, the parameters.
        let vs = nn::VarStore::new(Device::Cpu);
        let side = 1 << 20;
        let wide = ConvMaxoutConfig {
            input_shape: [1, side, side],
            channels: vec![1],
            kernels: vec![1],
            paddings: vec![0],
            pools: vec![side],
            pool_strides: vec![side],
            ..tiny()
        };
        let msg = ConvMaxout::new(&vs.root(), wide).unwrap_err().to_string();
        assert!(msg.contains("one example's activations") && msg.contains("this machine has"), "{msg}");
        let msg = ConvMaxout::new(&vs.root(), ConvMaxoutConfig { fc_units: 1 << 40, ..tiny() })
            .unwrap_err()
            .to_string();
        assert!(msg.contains("parameters would need"), "{msg}");
        assert!(vs.variables().is_empty());
    }

    #[test]
    fn pooled_sizes_follow_pytorch_and_never_overflow() {
        // PyTorch's ceil-mode formula, in i128 so that nothing can overflow.
        let torch = |side: i64, pool: i64, stride: i64| {
            let (side, pool, stride) = (side as i128, pool as i128, stride as i128);
            let out = (side - pool + stride - 1).div_euclid(stride) + 1;
            (if (out - 1) * stride >= side { out - 1 } else { out }) as i64
        };
        let cases = [(7, 2, 2), (5, 1, 3), (8, 3, 2), (16, 4, 2), (9, 2, i64::MAX), (i64::MAX, 1, 1)];
        for (side, pool, stride) in cases.into_iter().chain([(i64::MAX, 2, i64::MAX - 1), (i64::MAX, 3, 2)]) {
            assert_eq!(pool_side(side, pool, stride), torch(side, pool, stride), "{side} {pool} {stride}");
        }
    }
}
