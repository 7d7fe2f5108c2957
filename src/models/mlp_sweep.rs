//! The native sweep of an [`Mlp`]: J(θ0 + α·d) for a grid of α on one data split.
//!
//! It exploits the structure of the line. For a fixed batch X the first layer's affine output is
//! affine in α: z(α) = (X W0ᵀ + b0) + α·(X dWᵀ + db), so it is computed twice per batch instead
//! of once per α; only the later layers run per α. The parameters of the model are not touched
//! (the line's weights live in their own tensors), autograd is off, and in `Bf16` precision the
//! per-α layers run in bfloat16 (AMX on recent Xeons) while the first layer stays float32.

use super::kernels::{activation_loss, line_activation, line_into, line_loss, LossSums};
use super::mlp::{Mlp, MlpConfig};
use crate::error::{Error, Result};
use crate::flat::{check_finite, check_vector};
use crate::sweep::check_alphas;
use tch::{Kind, Tensor};

/// Arithmetic of the per-α layers.
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

    fn kind(self) -> Kind {
        match self {
            Precision::F32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// Mean loss and error rate at each α of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSweep {
    pub loss: Vec<f64>,
    pub error: Vec<f64>,
}

/// One layer's line: weight and bias at α = 0 and their directions (float32).
struct LayerLine {
    w0: Tensor,
    dw: Tensor,
    b0: Tensor,
    db: Tensor,
    /// Preallocated W(α) and b(α), in the kind the layer computes in.
    w_at: Tensor,
    b_at: Tensor,
}

impl LayerLine {
    fn new((w0, dw): (Tensor, Tensor), (b0, db): (Tensor, Tensor), kind: Kind) -> Result<Self> {
        let w_at = Tensor::f_empty(w0.size(), (kind, tch::Device::Cpu))?;
        let b_at = Tensor::f_empty(b0.size(), (kind, tch::Device::Cpu))?;
        Ok(LayerLine { w0, dw, b0, db, w_at, b_at })
    }

    /// (W(α), b(α)), computed in float32 from the layer's start and direction (one fused pass
    /// each), in the preallocated buffers (valid until the next call).
    fn at(&self, alpha: f64) -> Result<(Tensor, Tensor)> {
        line_into(&self.w0, &self.dw, alpha, &self.w_at)?;
        line_into(&self.b0, &self.db, alpha, &self.b_at)?;
        Ok((self.w_at.shallow_clone(), self.b_at.shallow_clone()))
    }
}

/// Cuts θ0 and d = θ1 − θ0 (taken in float64, stored float32) into per-layer lines. Hidden
/// layers after the first compute in `precision`; the output layer always in float32 (bf16 logits
/// would round the loss too coarsely).
fn layer_lines(
    config: &MlpConfig,
    theta0: &Tensor,
    theta1: &Tensor,
    precision: Precision,
) -> Result<Vec<LayerLine>> {
    let numel = usize::try_from(config.parameter_count()?).map_err(|_| {
        Error::InvalidArgument("the MLP's parameter count exceeds this platform's address space".into())
    })?;
    check_vector(theta0, numel, "start")?;
    check_vector(theta1, numel, "end")?;
    let t0 = theta0.f_to_kind(Kind::Double)?;
    let d = theta1.f_to_kind(Kind::Double)?.f_sub(&t0)?;
    check_finite(&t0, "start")?;
    check_finite(&d, "end - start (NaN or infinite end, or a direction that overflows)")?;
    let mut offset = 0i64;
    let mut take = |shape: &[i64]| -> Result<(Tensor, Tensor)> {
        let n: i64 = shape.iter().product();
        let cut = |v: &Tensor| -> Result<Tensor> {
            Ok(v.f_narrow(0, offset, n)?.f_view(shape)?.f_to_kind(Kind::Float)?)
        };
        let pair = (cut(&t0)?, cut(&d)?);
        offset += n;
        Ok(pair)
    };
    let last = config.depth() - 1;
    (0..config.depth())
        .map(|i| {
            let shape = config.weight_shape(i);
            let (weight, bias) = (take(&shape)?, take(&shape[..1])?);
            LayerLine::new(weight, bias, if i == 0 || i == last { Kind::Float } else { precision.kind() })
        })
        .collect()
}

/// A batch's first-layer outputs at α = 0 and their α-slope, with its targets.
struct FirstLayer {
    z0: Tensor,
    dz: Tensor,
    targets: Tensor,
}

fn first_layer(line: &LayerLine, x: &Tensor, y: &Tensor) -> Result<FirstLayer> {
    let x = x.f_to_kind(Kind::Float)?;
    Ok(FirstLayer {
        z0: line.b0.f_addmm(&x, &line.w0.f_tr()?)?,
        dz: line.db.f_addmm(&x, &line.dw.f_tr()?)?,
        targets: y.shallow_clone(),
    })
}

/// Preallocated activations of one batch length (reused across α: no allocation per α).
///
/// With D affine layers, the per-α matrix products are those of hidden layers 1..D-2 (in the
/// compute kind); the last hidden activation, the output layer and the loss are one fused kernel.
struct Buffers {
    /// Activated input of each per-α hidden layer (layers 1..D-2), in the compute kind.
    inputs: Vec<Tensor>,
    /// Affine output of each per-α hidden layer, in the compute kind.
    affine: Vec<Tensor>,
}

impl Buffers {
    fn new(config: &MlpConfig, m: i64, kind: Kind) -> Result<Self> {
        let cpu = |shape: [i64; 2]| Tensor::f_empty(shape, (kind, tch::Device::Cpu));
        let per_alpha = 1..config.depth().saturating_sub(1);
        let inputs = per_alpha.clone().map(|l| cpu([m, config.sizes[l]]));
        let affine = per_alpha.map(|l| cpu([m, config.weight_shape(l)[0]]));
        Ok(Buffers {
            inputs: inputs.collect::<std::result::Result<_, _>>()?,
            affine: affine.collect::<std::result::Result<_, _>>()?,
        })
    }
}

/// Summed loss and number of errors of one batch at one α, given the later layers' weights.
fn batch_at(
    config: &MlpConfig,
    batch: &FirstLayer,
    alpha: f64,
    later: &[(Tensor, Tensor)],
    bufs: &Buffers,
) -> Result<LossSums> {
    let (act, targets) = (config.activation, &batch.targets);
    match later.split_last() {
        None => {
            // No hidden layer: z(α) is the output.
            let logits = batch.dz.f_mul_scalar(alpha)?.f_add_(&batch.z0)?.f_to_kind(Kind::Double)?;
            let (mean_loss, wrong) = Mlp::loss_and_errors(&logits, targets)?;
            let n = targets.size()[0] as f64;
            Ok(LossSums { loss: mean_loss.f_double_value(&[])? * n, wrong: wrong.f_int64_value(&[])? })
        }
        Some(((w, b), [])) => line_loss(&batch.z0, &batch.dz, alpha, act, (w, b), targets),
        Some(((w_out, b_out), hidden)) => {
            line_activation(&batch.z0, &batch.dz, alpha, act, &bufs.inputs[0])?;
            let mut sums = LossSums::default();
            for (i, (w, b)) in hidden.iter().enumerate() {
                let z = b.f_addmm_out(&bufs.affine[i], &bufs.inputs[i], &w.f_tr()?)?;
                match bufs.inputs.get(i + 1) {
                    Some(next) => drop(next.shallow_clone().f_copy_(&act.apply(&z)?)?),
                    None => sums = activation_loss(&z, act, (w_out, b_out), targets)?,
                }
            }
            Ok(sums)
        }
    }
}

/// (W(α), b(α)) of every layer after the first.
fn later_layers(lines: &[LayerLine], alpha: f64) -> Result<Vec<(Tensor, Tensor)>> {
    lines[1..].iter().map(|l| l.at(alpha)).collect()
}

/// The buffers for batches of `m` examples in `kind` (at most two lengths occur: full and last
/// block; one kind per pass).
fn buffers_for<'a>(
    cache: &'a mut Vec<((i64, Kind), Buffers)>,
    config: &MlpConfig,
    m: i64,
    kind: Kind,
) -> Result<&'a Buffers> {
    if let Some(i) = cache.iter().position(|(key, _)| *key == (m, kind)) {
        return Ok(&cache[i].1);
    }
    cache.push(((m, kind), Buffers::new(config, m, kind)?));
    Ok(&cache[cache.len() - 1].1)
}

/// One grid of α evaluated in one precision. Several passes over the same split share the
/// first layer's products (see [`sweep_mlp_passes`]).
#[derive(Debug, Clone, Copy)]
pub struct Pass<'a> {
    pub alphas: &'a [f64],
    pub precision: Precision,
}

/// Bytes of first-layer outputs (float32, α = 0 and slope) cached per block.
const BLOCK_BYTES: i64 = 256 << 20;

/// Examples per block: a multiple of `batch_size` whose first-layer outputs (α = 0 and slope)
/// take at most ≈256 MB of float32. Each block is evaluated as one matrix per α.
fn block_len(config: &MlpConfig, batch_size: i64, n: i64, budget: i64) -> i64 {
    let per_example = config.weight_shape(0)[0].saturating_mul(2 * 4);
    let fit = (budget / per_example.max(1)).max(batch_size);
    (fit / batch_size * batch_size).min(n)
}

/// Sweeps `alphas` on the split (`x`, `y`) in blocks of whole batches of `batch_size` (see
/// [`block_len`]: batch_size only sets the granularity of the memory bound). `on_alpha(done, total)` runs
/// after each α of each block of data (for progress and cancellation); returning `false` stops the
/// sweep early with `Error::InvalidArgument("interrupted")`.
#[allow(clippy::too_many_arguments)]
pub fn sweep_mlp(
    config: &MlpConfig,
    theta0: &Tensor,
    theta1: &Tensor,
    x: &Tensor,
    y: &Tensor,
    alphas: &[f64],
    batch_size: i64,
    precision: Precision,
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<SplitSweep> {
    let pass = Pass { alphas, precision };
    let mut sweeps = sweep_mlp_passes(config, theta0, theta1, x, y, &[pass], batch_size, on_alpha)?;
    Ok(sweeps.remove(0))
}

/// [`sweep_mlp`] for several passes (α grids, each in its precision) over the same split, sharing
/// the first layer's products: e.g. a bf16 sweep and its float32 check. One [`SplitSweep`] per pass;
/// `on_alpha(done, total)` counts the α of every pass.
#[allow(clippy::too_many_arguments)]
pub fn sweep_mlp_passes(
    config: &MlpConfig,
    theta0: &Tensor,
    theta1: &Tensor,
    x: &Tensor,
    y: &Tensor,
    passes: &[Pass],
    batch_size: i64,
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<SplitSweep>> {
    sweep_in_blocks(config, (theta0, theta1), (x, y), passes, (batch_size, BLOCK_BYTES), on_alpha)
}

/// Running sums of one pass: summed loss and errors per α.
struct PassSums {
    loss: Vec<f64>,
    wrong: Vec<i64>,
}

/// [`sweep_mlp_passes`] with the block budget in bytes as a parameter (`sizes` = (batch_size, budget)).
fn sweep_in_blocks(
    config: &MlpConfig,
    (theta0, theta1): (&Tensor, &Tensor),
    (x, y): (&Tensor, &Tensor),
    passes: &[Pass],
    (batch_size, budget): (i64, i64),
    on_alpha: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<SplitSweep>> {
    for pass in passes {
        check_alphas(pass.alphas)?;
    }
    if batch_size < 1 {
        return Err(Error::InvalidArgument(format!("batch_size must be positive, got {batch_size}")));
    }
    config.validate()?;
    config.check_labelled(x, y, "the data")?;
    let _guard = tch::no_grad_guard();
    // Strided inputs or targets (e.g. `Y[::2]`) are copied once; the kernels read contiguous rows.
    let (x, y) = (&x.f_contiguous()?, &y.f_contiguous()?);
    let lines: Vec<Vec<LayerLine>> =
        passes.iter().map(|p| layer_lines(config, theta0, theta1, p.precision)).collect::<Result<_>>()?;
    let n = x.size()[0];
    let mut sums: Vec<PassSums> = passes
        .iter()
        .map(|p| PassSums { loss: vec![0.0; p.alphas.len()], wrong: vec![0; p.alphas.len()] })
        .collect();
    let block = block_len(config, batch_size, n, budget);
    let mut buffers = Vec::new();
    let per_block: usize = passes.iter().map(|p| p.alphas.len()).sum();
    let total = per_block * (n as usize).div_ceil(block as usize);
    let mut done = 0;
    for start in (0..n).step_by(block as usize) {
        let len = block.min(n - start);
        let batch = first_layer(&lines[0][0], &x.f_narrow(0, start, len)?, &y.f_narrow(0, start, len)?)?;
        for ((pass, pass_lines), pass_sums) in passes.iter().zip(&lines).zip(&mut sums) {
            let bufs = buffers_for(&mut buffers, config, len, pass.precision.kind())?;
            for (ai, &alpha) in pass.alphas.iter().enumerate() {
                let at = batch_at(config, &batch, alpha, &later_layers(pass_lines, alpha)?, bufs)?;
                pass_sums.loss[ai] += at.loss;
                pass_sums.wrong[ai] += at.wrong;
                done += 1;
                if !on_alpha(done, total) {
                    return Err(Error::InvalidArgument("interrupted".into()));
                }
            }
        }
    }
    Ok(sums.into_iter().map(|s| s.rates(n)).collect())
}

impl PassSums {
    /// Mean loss and error rate per α over `n` examples. Where the loss is not finite the logits
    /// were NaN or infinite, so their argmax means nothing: the error rate is NaN there, never a
    /// plausible number.
    fn rates(&self, n: i64) -> SplitSweep {
        let n = n as f64;
        let loss: Vec<f64> = self.loss.iter().map(|l| l / n).collect();
        let error =
            loss.iter().zip(&self.wrong).map(|(l, &w)| if l.is_finite() { w as f64 / n } else { f64::NAN });
        SplitSweep { error: error.collect(), loss }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::mlp::Activation;
    use tch::{nn, Device};

    /// J(θ(α)) the slow way: write θ(α) into a float64 copy of the model and run it.
    fn reference(
        cfg: &MlpConfig,
        t0: &Tensor,
        t1: &Tensor,
        x: &Tensor,
        y: &Tensor,
        alpha: f64,
    ) -> (f64, f64) {
        let vs = nn::VarStore::new(Device::Cpu);
        let mlp = Mlp::new(&vs.root(), cfg.clone()).unwrap();
        let theta = t0.to_kind(Kind::Double) * (1.0 - alpha) + t1.to_kind(Kind::Double) * alpha;
        let mut params: Vec<Tensor> = mlp.named_parameters().into_iter().map(|(_, t)| t).collect();
        crate::flat::assign(&mut params, &theta).unwrap();
        let logits = tch::no_grad(|| mlp.try_forward(&x.to_kind(Kind::Double), false)).unwrap();
        let (loss, wrong) = Mlp::loss_and_errors(&logits.to_kind(Kind::Double), y).unwrap();
        (loss.double_value(&[]), wrong.int64_value(&[]) as f64 / y.size()[0] as f64)
    }

    #[test]
    fn matches_the_slow_way_for_every_activation() {
        for activation in [Activation::Relu, Activation::Sigmoid, Activation::Tanh, Activation::Maxout(3)] {
            tch::manual_seed(7);
            let cfg = MlpConfig { sizes: vec![6, 9, 8, 4], activation, ..MlpConfig::default() };
            let n = cfg.depth();
            let numel: i64 =
                (0..n).map(|i| cfg.weight_shape(i).iter().product::<i64>() + cfg.weight_shape(i)[0]).sum();
            let t0 = Tensor::randn([numel], (Kind::Float, Device::Cpu));
            let t1 = Tensor::randn([numel], (Kind::Float, Device::Cpu));
            let x = Tensor::randn([50, 6], (Kind::Float, Device::Cpu));
            let y = Tensor::randint(4, [50], (Kind::Int64, Device::Cpu));
            let alphas = [-0.5, 0.0, 0.4, 1.0, 1.5];
            let got =
                sweep_mlp(&cfg, &t0, &t1, &x, &y, &alphas, 16, Precision::F32, &mut |_, _| true).unwrap();
            for (i, &a) in alphas.iter().enumerate() {
                let (loss, error) = reference(&cfg, &t0, &t1, &x, &y, a);
                assert!(
                    (got.loss[i] - loss).abs() <= 1e-5 * loss.abs(),
                    "{activation:?} α={a}: {} vs {loss}",
                    got.loss[i]
                );
                assert!((got.error[i] - error).abs() <= 1.0 / 50.0 + 1e-12);
            }
        }
    }

    #[test]
    fn several_blocks_give_the_same_numbers_as_one() {
        tch::manual_seed(8);
        let cfg = MlpConfig { sizes: vec![6, 9, 4], ..MlpConfig::default() };
        let numel = 6 * 9 + 9 + 9 * 4 + 4;
        let (t0, t1) = (
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
        );
        let x = Tensor::randn([103, 6], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(4, [103], (Kind::Int64, Device::Cpu));
        let run = || {
            sweep_mlp(&cfg, &t0, &t1, &x, &y, &[-0.5, 0.3, 1.2], 10, Precision::F32, &mut |_, _| true)
                .unwrap()
        };
        let one = run();
        let budget = 2 * 9 * 4 * 25; // 25 examples' worth: blocks of 20 (two whole batches)
        assert_eq!(block_len(&cfg, 10, 103, budget), 20);
        let (mut calls, mut seen_total) = (0, 0);
        let mut count = |_, total| {
            calls += 1;
            seen_total = total;
            true
        };
        let pass = Pass { alphas: &[-0.5, 0.3, 1.2], precision: Precision::F32 };
        let many =
            sweep_in_blocks(&cfg, (&t0, &t1), (&x, &y), &[pass], (10, budget), &mut count).unwrap().remove(0);
        assert_eq!((calls, seen_total), (18, 18)); // 6 blocks x 3 alphas
                                                   // Float32 matrix products of other shapes round differently: agreement to float32 precision.
        for ((a, b), (e, f)) in one.loss.iter().zip(&many.loss).zip(one.error.iter().zip(&many.error)) {
            assert!((a - b).abs() <= 1e-6 * a.abs(), "{a} vs {b}");
            assert!((e - f).abs() <= 1.0 / 103.0 + 1e-12);
        }
    }

    #[test]
    fn passes_share_the_first_layer_and_match_separate_sweeps() {
        let cfg = MlpConfig { sizes: vec![6, 16, 12, 4], ..MlpConfig::default() };
        let numel = 6 * 16 + 16 + 16 * 12 + 12 + 12 * 4 + 4;
        let (t0, t1) = (
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
        );
        let x = Tensor::randn([57, 6], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(4, [57], (Kind::Int64, Device::Cpu));
        let (grid, check) = ([-0.5, 0.0, 0.4, 1.0, 1.5], [-0.5, 1.5]);
        let alone = |alphas: &[f64], precision| {
            sweep_mlp(&cfg, &t0, &t1, &x, &y, alphas, 8, precision, &mut |_, _| true).unwrap()
        };
        let passes = [
            Pass { alphas: &grid, precision: Precision::Bf16 },
            Pass { alphas: &check, precision: Precision::F32 },
        ];
        let mut seen = 0;
        let both = sweep_mlp_passes(&cfg, &t0, &t1, &x, &y, &passes, 8, &mut |_, total| {
            seen = total;
            true
        })
        .unwrap();
        assert_eq!(seen, grid.len() + check.len());
        assert_eq!(both[0], alone(&grid, Precision::Bf16));
        assert_eq!(both[1], alone(&check, Precision::F32));
    }

    #[test]
    fn non_finite_logits_give_a_nan_error_rate_never_a_plausible_one() {
        let cfg = MlpConfig { sizes: vec![3, 4, 2], ..MlpConfig::default() };
        let numel = 3 * 4 + 4 + 4 * 2 + 2;
        let t0 = Tensor::randn([numel], (Kind::Float, Device::Cpu));
        // A huge but finite end: far along the line the logits overflow float32.
        let t1 = Tensor::full([numel], 1e30, (Kind::Float, Device::Cpu));
        let x = Tensor::randn([20, 3], (Kind::Float, Device::Cpu)).abs() + 1.0;
        let y = Tensor::zeros([20], (Kind::Int64, Device::Cpu));
        let got =
            sweep_mlp(&cfg, &t0, &t1, &x, &y, &[0.0, 1.0], 8, Precision::F32, &mut |_, _| true).unwrap();
        assert!(got.loss[0].is_finite() && got.error[0].is_finite());
        assert!(!got.loss[1].is_finite(), "{:?}", got.loss);
        assert!(got.error[1].is_nan(), "{:?}", got.error);
    }

    #[test]
    fn strided_inputs_and_targets_are_accepted() {
        let cfg = MlpConfig { sizes: vec![3, 5, 4], ..MlpConfig::default() };
        let numel = 3 * 5 + 5 + 5 * 4 + 4;
        let (t0, t1) = (
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
            Tensor::randn([numel], (Kind::Float, Device::Cpu)),
        );
        let x = Tensor::randn([40, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(4, [40], (Kind::Int64, Device::Cpu));
        let every_other = |t: &Tensor| t.slice(0, 0, 40, 2);
        let run = |x: &Tensor, y: &Tensor| {
            sweep_mlp(&cfg, &t0, &t1, x, y, &[-0.5, 0.5, 1.5], 8, Precision::F32, &mut |_, _| true).unwrap()
        };
        let strided = run(&every_other(&x), &every_other(&y));
        assert_eq!(strided, run(&every_other(&x).contiguous(), &every_other(&y).contiguous()));
    }

    #[test]
    fn non_finite_endpoints_are_errors() {
        let cfg = MlpConfig { sizes: vec![3, 2], ..MlpConfig::default() };
        let t = Tensor::zeros([8], (Kind::Float, Device::Cpu));
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        for bad in [f32::NAN, f32::INFINITY] {
            let b = t.copy();
            let _ = b.get(5).fill_(bad as f64);
            for (t0, t1) in [(&t, &b), (&b, &t)] {
                let err = sweep_mlp(&cfg, t0, t1, &x, &y, &[0.5], 2, Precision::F32, &mut |_, _| true);
                assert!(matches!(err, Err(Error::InvalidArgument(_))), "{bad}");
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = MlpConfig { sizes: vec![3, 2], ..MlpConfig::default() };
        let t = Tensor::zeros([8], (Kind::Float, Device::Cpu));
        let x = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
        let y = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let run = |x: &Tensor, y: &Tensor, alphas: &[f64], t1: &Tensor| {
            sweep_mlp(&cfg, &t, t1, x, y, alphas, 2, Precision::F32, &mut |_, _| true)
        };
        assert!(run(&x, &y, &[0.5], &t).is_ok());
        assert!(run(&x, &y, &[], &t).is_err());
        assert!(run(&Tensor::zeros([4, 5], (Kind::Float, Device::Cpu)), &y, &[0.5], &t).is_err());
        assert!(run(&x, &(y.ones_like() * 2), &[0.5], &t).is_err());
        assert!(run(&x, &y, &[0.5], &Tensor::zeros([9], (Kind::Float, Device::Cpu))).is_err());
        assert!(Precision::parse("fp8").is_err());
        // A batch larger than the data is one block; a configuration whose sizes wrap is an error.
        assert!(sweep_mlp(&cfg, &t, &t, &x, &y, &[0.5], i64::MAX, Precision::F32, &mut |_, _| true).is_ok());
        let wrapping =
            MlpConfig { sizes: vec![3, 4, 2], activation: Activation::Maxout(1 << 62), ..cfg.clone() };
        let t = Tensor::zeros([10], (Kind::Float, Device::Cpu)); // the wrapped sizes' numel
        let err = sweep_mlp(&wrapping, &t, &t, &x, &y, &[0.5], 2, Precision::F32, &mut |_, _| true);
        assert!(err.unwrap_err().to_string().contains("2**63 - 1"));
    }
}
