//! The word-level LSTM language model of Zaremba, Sutskever & Vinyals (2014), "Recurrent neural
//! network regularization", on the Penn Treebank; [`LstmConfig::default`] is their "small" model.
//!
//! Token ids `[n, T]` go through an embedding (`embedding.weight`, `[vocab, emb]`), a stack of
//! LSTM layers run by libtorch's `lstm` op with PyTorch's flat weights (`lstm.weight_ih_l{k}`
//! `[4H, in]`, `lstm.weight_hh_l{k}` `[4H, H]`, `lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}` `[4H]`,
//! gate order i, f, g, o, so that `torch.nn.LSTM` gives the same numbers) and a linear decoder
//! (`decoder.weight` `[vocab, H]`, `decoder.bias`) to the logits `[n, T, vocab]`.
//!
//! Simplification against Zaremba et al.: every row is an independent sequence that starts from a
//! zero state (they carry the state across consecutive minibatches of one long stream). With
//! dropout `p > 0`, training drops the non-recurrent connections as they do: the embedding
//! output, the output of every LSTM layer but the last (libtorch's inter-layer dropout) and the
//! last layer's output before the decoder; evaluation uses no dropout.
//!
//! The objective is the mean per-word cross-entropy, so J is in nats per word and the
//! perplexity is `exp(J)`.

use super::mlp::Affine;
use super::network::{Measure, Network};
use crate::error::{Error, Result};
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Bytes of float32 decoder output (logits and log-probabilities together) one evaluation
/// chunk may take.
const EVAL_LOGIT_BYTES: i64 = 250_000_000;

/// Configuration of an [`LstmLanguageModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct LstmConfig {
    /// Number of words (token ids lie in `[0, vocab_size)`).
    pub vocab_size: i64,
    /// Width of the word embedding (the first LSTM layer's input).
    pub embedding_size: i64,
    /// Units per LSTM layer.
    pub hidden_size: i64,
    /// Number of stacked LSTM layers (at least 1).
    pub num_layers: i64,
    /// Drop probability of the non-recurrent connections while training, in [0, 1).
    pub dropout: f64,
    /// Every parameter starts uniform in `[−init_scale, init_scale]`.
    pub init_scale: f64,
}

impl Default for LstmConfig {
    /// Zaremba et al.'s "small" PTB model: 10,000 words, 200-wide embedding, 2 layers of 200
    /// units, no dropout, initial weights uniform in ±0.1.
    fn default() -> Self {
        LstmConfig {
            vocab_size: 10_000,
            embedding_size: 200,
            hidden_size: 200,
            num_layers: 2,
            dropout: 0.0,
            init_scale: 0.1,
        }
    }
}

impl LstmConfig {
    /// Checks sizes, the dropout probability and the initial scale.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("vocab_size", self.vocab_size),
            ("embedding_size", self.embedding_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if value < 1 {
                return Err(Error::InvalidArgument(format!("{name} must be at least 1, got {value}")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidArgument(format!("dropout must be in [0, 1), got {}", self.dropout)));
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "init_scale must be a positive finite number, got {}",
                self.init_scale
            )));
        }
        self.parameter_count().map(drop)
    }

    /// Number of parameter values (embedding, LSTM layers, decoder), with checked arithmetic.
    pub fn parameter_count(&self) -> Result<i64> {
        use crate::size::{product, sum};
        let what = "the LSTM's parameter count";
        let (v, e, h) = (self.vocab_size, self.embedding_size, self.hidden_size);
        let gates = product(&[4, h], "the number of gate rows of an LSTM layer (4 x hidden_size)")?;
        let first = product(&[gates, sum(&[e, h, 2], what)?], what)?; // w_ih, w_hh, b_ih, b_hh
        let later = product(&[gates, sum(&[h, h, 2], what)?, self.num_layers - 1], what)?;
        let embedding_and_decoder = product(&[v, sum(&[e, h, 1], what)?], what)?;
        sum(&[first, later, embedding_and_decoder], what)
    }

    /// Input width of LSTM layer `k`.
    fn layer_input(&self, k: i64) -> i64 {
        if k == 0 {
            self.embedding_size
        } else {
            self.hidden_size
        }
    }
}

/// The four tensors of one LSTM layer, in PyTorch's layout.
#[derive(Debug)]
struct LstmLayer {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
}

/// A word-level LSTM language model (see the module documentation).
#[derive(Debug)]
pub struct LstmLanguageModel {
    config: LstmConfig,
    embedding: Tensor,
    layers: Vec<LstmLayer>,
    decoder: Affine,
}

impl LstmLanguageModel {
    /// Creates the variables under `path`, each uniform in ±`init_scale` (Zaremba et al.'s
    /// initialisation), drawn from libtorch's global RNG.
    pub fn new(path: &nn::Path, config: LstmConfig) -> Result<Self> {
        config.validate()?;
        let hint = "use a smaller vocabulary, narrower layers or fewer of them";
        crate::size::check_fits(config.parameter_count()?, 4, "this LSTM's parameters", hint)?;
        let init = nn::Init::Uniform { lo: -config.init_scale, up: config.init_scale };
        let (v, e, h) = (config.vocab_size, config.embedding_size, config.hidden_size);
        let gates = crate::size::product(&[4, h], "the number of gate rows of an LSTM layer")?;
        let embedding = (path / "embedding").f_var("weight", &[v, e], init)?;
        let lstm = path / "lstm";
        let layers = (0..config.num_layers)
            .map(|k| {
                Ok(LstmLayer {
                    weight_ih: lstm.f_var(
                        &format!("weight_ih_l{k}"),
                        &[gates, config.layer_input(k)],
                        init,
                    )?,
                    weight_hh: lstm.f_var(&format!("weight_hh_l{k}"), &[gates, h], init)?,
                    bias_ih: lstm.f_var(&format!("bias_ih_l{k}"), &[gates], init)?,
                    bias_hh: lstm.f_var(&format!("bias_hh_l{k}"), &[gates], init)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec = path / "decoder";
        let decoder =
            Affine { weight: dec.f_var("weight", &[v, h], init)?, bias: dec.f_var("bias", &[v], init)? };
        Ok(LstmLanguageModel { config, embedding, layers, decoder })
    }

    /// The configuration.
    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    /// The LSTM weights in libtorch's flat order: per layer w_ih, w_hh, b_ih, b_hh.
    fn flat_weights(&self) -> Vec<&Tensor> {
        self.layers.iter().flat_map(|l| [&l.weight_ih, &l.weight_hh, &l.bias_ih, &l.bias_hh]).collect()
    }

    /// `(name, tensor)` of every parameter in `torch.nn` order: `embedding.weight`, the LSTM
    /// tensors layer by layer, `decoder.weight`, `decoder.bias` (sharing storage).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("embedding.weight".to_string(), self.embedding.shallow_clone())];
        for (k, l) in self.layers.iter().enumerate() {
            for (name, t) in [
                ("weight_ih", &l.weight_ih),
                ("weight_hh", &l.weight_hh),
                ("bias_ih", &l.bias_ih),
                ("bias_hh", &l.bias_hh),
            ] {
                out.push((format!("lstm.{name}_l{k}"), t.shallow_clone()));
            }
        }
        out.push(("decoder.weight".to_string(), self.decoder.weight.shallow_clone()));
        out.push(("decoder.bias".to_string(), self.decoder.bias.shallow_clone()));
        out
    }

    /// Checks token ids: a 2-D int64 tensor `[n, T]` with T ≥ 1 and every id in
    /// `[0, vocab_size)`. `what` names the tensor in the message.
    pub fn check_ids(&self, ids: &Tensor, what: &str) -> Result<()> {
        let kind = ids.f_kind()?;
        if kind != Kind::Int64 {
            return Err(Error::Dtype(format!(
                "{what}: token ids must be int64, not {kind:?} (convert with .long())"
            )));
        }
        let size = ids.size();
        if size.len() != 2 || size[1] < 1 {
            return Err(Error::InvalidArgument(format!(
                "{what}: token ids must have shape [n, steps] with steps >= 1 (one sequence per row), \
                 got {size:?}; linpath.datasets.lm_windows cuts a stream into such windows"
            )));
        }
        if ids.numel() == 0 {
            return Ok(());
        }
        let vocab = self.config.vocab_size;
        let (lo, hi) = (ids.f_min()?.f_int64_value(&[])?, ids.f_max()?.f_int64_value(&[])?);
        if lo < 0 || hi >= vocab {
            return Err(Error::InvalidArgument(format!(
                "{what}: token ids must lie in [0, {vocab}) for this model; found {lo} to {hi}"
            )));
        }
        Ok(())
    }

    /// The last LSTM layer's outputs `[n, T, hidden]` for ids `x` (checked), every row starting
    /// from a zero state; dropout on the non-recurrent connections when `train`.
    fn hidden_states(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.check_ids(x, "inputs")?;
        let device = self.embedding.device();
        if x.device() != device {
            return Err(Error::InvalidArgument(format!(
                "inputs are on {:?} but the model is on {device:?}",
                x.device()
            )));
        }
        let p = self.config.dropout;
        let emb = Tensor::f_embedding(&self.embedding, x, -1, false, false)?.f_dropout(p, train)?;
        let zeros = Tensor::f_zeros(
            [self.config.num_layers, x.size()[0], self.config.hidden_size],
            (self.embedding.f_kind()?, device),
        )?;
        let weights = self.flat_weights();
        let (out, _, _) =
            emb.f_lstm(&[&zeros, &zeros], &weights, true, self.config.num_layers, p, train, false, true)?;
        Ok(out.f_dropout(p, train)?)
    }

    /// The decoder's logits for hidden states `h` (`[..., hidden]` → `[..., vocab]`).
    fn decode(&self, h: &Tensor) -> Result<Tensor> {
        Ok(h.f_linear(&self.decoder.weight, Some(&self.decoder.bias))?)
    }

    /// The logits `[n, T, vocab]` for token ids `x` (`[n, T]`, int64); dropout when `train`.
    pub fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.decode(&self.hidden_states(x, train)?)
    }

    /// Checks labelled data: ids `x` and next-word targets `y`, both int64 `[n, T]` of equal
    /// shape with n ≥ 1 and ids in range.
    pub fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        self.check_ids(x, &format!("{what}: X"))?;
        self.check_ids(y, &format!("{what}: Y"))?;
        if x.size() != y.size() {
            return Err(Error::InvalidArgument(format!(
                "{what}: X has shape {:?} but Y has shape {:?}; give one target word per input word",
                x.size(),
                y.size()
            )));
        }
        if x.size()[0] == 0 {
            return Err(Error::InvalidArgument(format!("{what}: no sequences")));
        }
        Ok(())
    }

    /// Positions per decoder chunk in evaluation (logits and log-probabilities within
    /// [`EVAL_LOGIT_BYTES`]).
    fn eval_positions(&self) -> i64 {
        (EVAL_LOGIT_BYTES / self.config.vocab_size.saturating_mul(2 * 4)).max(1)
    }

    /// Summed cross-entropy and wrong argmax predictions of hidden states `h` (`[m, hidden]`)
    /// against targets `y` (`[m]`).
    fn chunk_measure(&self, h: &Tensor, y: &Tensor) -> Result<(f64, i64)> {
        let logits = self.decode(h)?;
        let loss = logits.f_cross_entropy_loss::<Tensor>(y, None, Reduction::Sum, -100, 0.0)?;
        let wrong = logits.f_argmax(-1, false)?.f_ne_tensor(y)?.f_sum(Kind::Int64)?;
        Ok((loss.f_double_value(&[])?, wrong.f_int64_value(&[])?))
    }
}

impl Network for LstmLanguageModel {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        LstmLanguageModel::named_parameters(self)
    }

    fn constrained_weights(&self) -> Vec<Tensor> {
        Vec::new()
    }

    fn device(&self) -> Device {
        self.embedding.device()
    }

    fn check_labelled(&self, x: &Tensor, y: &Tensor, what: &str) -> Result<()> {
        LstmLanguageModel::check_labelled(self, x, y, what)
    }

    fn try_forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        LstmLanguageModel::try_forward(self, x, train)
    }

    /// Mean per-word cross-entropy, dropout active when configured.
    fn objective(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let logits = self.try_forward(x, true)?;
        let flat = logits.f_view([-1, self.config.vocab_size])?;
        Ok(flat.f_cross_entropy_loss::<Tensor>(&y.f_reshape([-1])?, None, Reduction::Mean, -100, 0.0)?)
    }

    /// Per-word sums over the block: `count` = n·T words; the decoder runs in chunks of
    /// positions so that its output stays within a fixed memory budget.
    fn evaluate_rows(&self, x: &Tensor, y: &Tensor, _first_row: i64) -> Result<Measure> {
        let h = self.hidden_states(x, false)?.f_reshape([-1, self.config.hidden_size])?;
        let targets = y.f_reshape([-1])?;
        let (count, chunk) = (targets.size()[0], self.eval_positions());
        let mut total = Measure { count, ..Measure::default() };
        for start in (0..count).step_by(chunk as usize) {
            let len = chunk.min(count - start);
            let (loss, wrong) =
                self.chunk_measure(&h.f_narrow(0, start, len)?, &targets.f_narrow(0, start, len)?)?;
            total.loss_sum += loss;
            total.wrong += wrong;
        }
        Ok(total)
    }

    /// Rows (sequences) per evaluation block; the LSTM states of a block are small, and the
    /// decoder is chunked inside [`Network::evaluate_rows`].
    fn eval_rows(&self) -> i64 {
        1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> LstmConfig {
        LstmConfig {
            vocab_size: 7,
            embedding_size: 3,
            hidden_size: 4,
            num_layers: 2,
            ..LstmConfig::default()
        }
    }

    fn model(config: LstmConfig, kind: Kind) -> (nn::VarStore, LstmLanguageModel) {
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let lm = LstmLanguageModel::new(&vs.root(), config).unwrap();
        vs.set_kind(kind);
        (vs, lm)
    }

    fn ids(n: i64, t: i64, vocab: i64) -> Tensor {
        Tensor::randint(vocab, [n, t], (Kind::Int64, Device::Cpu))
    }

    #[test]
    fn parameters_are_named_ordered_and_shaped_like_torch_nn() {
        let (vs, lm) = model(tiny(), Kind::Float);
        let got: Vec<(String, Vec<i64>)> =
            lm.named_parameters().into_iter().map(|(n, t)| (n, t.size())).collect();
        let mut want = vec![("embedding.weight".to_string(), vec![7, 3])];
        for (k, input) in [(0, 3), (1, 4)] {
            want.push((format!("lstm.weight_ih_l{k}"), vec![16, input]));
            want.push((format!("lstm.weight_hh_l{k}"), vec![16, 4]));
            want.push((format!("lstm.bias_ih_l{k}"), vec![16]));
            want.push((format!("lstm.bias_hh_l{k}"), vec![16]));
        }
        want.push(("decoder.weight".to_string(), vec![7, 4]));
        want.push(("decoder.bias".to_string(), vec![7]));
        assert_eq!(got, want);
        assert_eq!(vs.variables().len(), want.len());
        for (_, t) in lm.named_parameters() {
            assert!(t.abs().max().double_value(&[]) <= 0.1);
        }
    }

    #[test]
    fn logits_have_one_row_per_word_and_evaluation_counts_words() {
        let (_vs, lm) = model(tiny(), Kind::Float);
        let (x, y) = (ids(3, 5, 7), ids(3, 5, 7));
        assert_eq!(lm.try_forward(&x, false).unwrap().size(), [3, 5, 7]);
        let m = lm.evaluate_rows(&x, &y, 0).unwrap();
        assert_eq!(m.count, 15);
        let ce = lm.objective(&x, &y).unwrap().double_value(&[]);
        assert!((m.loss_sum / 15.0 - ce).abs() < 1e-5 * ce.abs());
    }

    /// The autograd gradient of the mean per-word cross-entropy equals central differences for
    /// every parameter coordinate (float64).
    #[test]
    fn gradients_match_finite_differences_in_float64() {
        let (_vs, lm) = model(tiny(), Kind::Double);
        let (x, y) = (ids(2, 3, 7), ids(2, 3, 7));
        let params: Vec<Tensor> = lm.named_parameters().into_iter().map(|(_, t)| t).collect();
        let loss = lm.objective(&x, &y).unwrap();
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        let f = || tch::no_grad(|| lm.objective(&x, &y).unwrap().double_value(&[]));
        let eps = 1e-6;
        for (p, g) in params.iter().zip(&grads) {
            let flat = p.view([-1]);
            for i in 0..flat.size()[0] {
                let old = flat.double_value(&[i]);
                let _ = tch::no_grad(|| flat.get(i).fill_(old + eps));
                let up = f();
                let _ = tch::no_grad(|| flat.get(i).fill_(old - eps));
                let down = f();
                let _ = tch::no_grad(|| flat.get(i).fill_(old));
                let numeric = (up - down) / (2.0 * eps);
                let analytic = g.view([-1]).double_value(&[i]);
                assert!(
                    (numeric - analytic).abs() <= 1e-6 * (1e-2 + analytic.abs()),
                    "coordinate {i}: autograd {analytic}, finite differences {numeric}"
                );
            }
        }
    }

    #[test]
    fn dropout_acts_only_while_training() {
        let (_vs, lm) = model(LstmConfig { dropout: 0.5, ..tiny() }, Kind::Float);
        let x = ids(4, 6, 7);
        let eval = lm.try_forward(&x, false).unwrap();
        assert!(eval.equal(&lm.try_forward(&x, false).unwrap()));
        assert!(!eval.equal(&lm.try_forward(&x, true).unwrap()));
    }

    #[test]
    fn bad_configs_and_data_are_errors() {
        let vs = nn::VarStore::new(Device::Cpu);
        for bad in [
            LstmConfig { vocab_size: 0, ..tiny() },
            LstmConfig { num_layers: 0, ..tiny() },
            LstmConfig { dropout: 1.0, ..tiny() },
            LstmConfig { init_scale: 0.0, ..tiny() },
        ] {
            assert!(matches!(LstmLanguageModel::new(&vs.root(), bad), Err(Error::InvalidArgument(_))));
        }
        let (_vs, lm) = model(tiny(), Kind::Float);
        let x = ids(2, 3, 7);
        let floats = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        assert!(matches!(lm.check_labelled(&floats, &x, "data"), Err(Error::Dtype(_))));
        assert!(lm.check_labelled(&x, &ids(2, 4, 7), "data").is_err());
        assert!(lm.check_labelled(&(&x + 7), &x, "data").is_err());
        assert!(lm.check_labelled(&ids(0, 3, 7), &ids(0, 3, 7), "data").is_err());
        assert!(lm.try_forward(&x.view([-1]), false).is_err());
    }

    #[test]
    fn sizes_that_overflow_or_exceed_memory_are_errors_before_allocation() {
        let vs = nn::VarStore::new(Device::Cpu);
        let error = |config| LstmLanguageModel::new(&vs.root(), config).err().unwrap().to_string();
        let msg = error(LstmConfig { hidden_size: 1 << 62, ..tiny() });
        assert!(msg.contains("gate rows of an LSTM layer") && msg.contains("2**63 - 1"), "{msg}");
        let msg = error(LstmConfig { num_layers: i64::MAX, ..tiny() });
        assert!(msg.contains("LSTM's parameter count is too large"), "{msg}");
        let msg = error(LstmConfig { vocab_size: 1 << 40, ..tiny() });
        assert!(msg.contains("parameters would need") && msg.contains("this machine has"), "{msg}");
        assert!(vs.variables().is_empty());
        let small = LstmConfig::default();
        assert_eq!(small.parameter_count().unwrap(), 10_000 * 401 + 2 * 800 * 402);
    }
}
