//! The native sweep of an [`Mlp`]: J at points θ0 + Σ c_k·d_k of a line or plane ([`Subspace`]) on
//! one data split, the MLP's override of [`Network::sweep`](super::network::Network::sweep).
//!
//! It exploits the structure of the subspace. For a fixed batch X the first layer's affine output
//! is affine in the coordinates: z(c) = (X W0ᵀ + b0) + Σ c_k·(X dW_kᵀ + db_k), so it takes 1 + k
//! matrix products per batch instead of one per point; only the later layers run per point. The
//! parameters of the model are not touched (each layer's weights at a point are written from the
//! subspace into their own buffers, computed in float64 and rounded once), autograd is off, and in
//! `Bf16` precision the per-point layers run in bfloat16 (AMX on recent Xeons) while the first
//! layer stays float32.

use super::kernels::{activation_loss, point_activation, point_loss, LossSums};
use super::mlp::{Mlp, MlpConfig};
use super::network::{check_passes, Measure, Pass, Precision};
use crate::error::{Error, Result};
use crate::subspace::Subspace;
use tch::{Kind, Tensor};

/// Mean loss and error rate at each α of one split (the line convenience [`sweep_mlp`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSweep {
    pub loss: Vec<f64>,
    pub error: Vec<f64>,
}

impl SplitSweep {
    fn of(measures: &[Measure]) -> Self {
        let (loss, error) = measures.iter().map(Measure::rates).unzip();
        SplitSweep { loss, error }
    }
}

/// A layer's weight and bias.
type WeightBias = (Tensor, Tensor);

/// One layer's piece of the subspace, with preallocated W(c) and b(c) in the layer's compute kind.
struct LayerPiece {
    weight: Subspace,
    bias: Subspace,
    w_at: Tensor,
    b_at: Tensor,
}

impl LayerPiece {
    /// (W(c), b(c)) in the preallocated buffers (valid until the next call).
    fn at(&self, coords: &[f64]) -> Result<(Tensor, Tensor)> {
        self.weight.write_point(&mut [self.w_at.shallow_clone()], coords)?;
        self.bias.write_point(&mut [self.b_at.shallow_clone()], coords)?;
        Ok((self.w_at.shallow_clone(), self.b_at.shallow_clone()))
    }

    /// The layer's weight and bias at the origin and along each direction, in float32.
    fn float32_parts(&self) -> Result<(WeightBias, Vec<WeightBias>)> {
        let f = |t: &Tensor| t.f_to_kind(Kind::Float);
        let (w, b) = (&self.weight, &self.bias);
        let origin = (f(w.origin())?, f(b.origin())?);
        let dirs = w.directions().iter().zip(b.directions()).map(|(dw, db)| Ok((f(dw)?, f(db)?)));
        Ok((origin, dirs.collect::<Result<_>>()?))
    }
}

/// Cuts the subspace into per-layer pieces. Hidden layers after the first compute in `precision`;
/// the first and the output layer always in float32 (bf16 logits would round the loss too coarsely).
fn layer_pieces(config: &MlpConfig, sub: &Subspace, precision: Precision) -> Result<Vec<LayerPiece>> {
    let numel = usize::try_from(config.parameter_count()?).map_err(|_| {
        Error::InvalidArgument("the MLP's parameter count exceeds this platform's address space".into())
    })?;
    if sub.numel() != numel {
        return Err(Error::Layout(format!(
            "the subspace has {} elements but the MLP has {numel}",
            sub.numel()
        )));
    }
    let mut offset = 0usize;
    let mut take = |shape: &[i64]| -> Result<Subspace> {
        let n = shape.iter().product::<i64>() as usize;
        let piece = sub.slice(offset, n, shape)?;
        offset += n;
        Ok(piece)
    };
    let last = config.depth() - 1;
    (0..config.depth())
        .map(|i| {
            let shape = config.weight_shape(i);
            let (weight, bias) = (take(&shape)?, take(&shape[..1])?);
            let kind = if i == 0 || i == last { Kind::Float } else { precision.kind() };
            let w_at = Tensor::f_empty(shape.as_slice(), (kind, tch::Device::Cpu))?;
            let b_at = Tensor::f_empty([shape[0]], (kind, tch::Device::Cpu))?;
            Ok(LayerPiece { weight, bias, w_at, b_at })
        })
        .collect()
}

/// A batch's first-layer outputs at the origin and along each direction, with its targets.
struct FirstLayer {
    z0: Tensor,
    dz: Vec<Tensor>,
    targets: Tensor,
}

fn first_layer(piece: &LayerPiece, x: &Tensor, y: &Tensor) -> Result<FirstLayer> {
    let x = x.f_to_kind(Kind::Float)?;
    let ((w0, b0), dirs) = piece.float32_parts()?;
    let affine = |w: &Tensor, b: &Tensor| -> Result<Tensor> { Ok(b.f_addmm(&x, &w.f_tr()?)?) };
    Ok(FirstLayer {
        z0: affine(&w0, &b0)?,
        dz: dirs.iter().map(|(dw, db)| affine(dw, db)).collect::<Result<_>>()?,
        targets: y.shallow_clone(),
    })
}

impl FirstLayer {
    /// (dz_k, c_k) at the point `coords`.
    fn terms(&self, coords: &[f64]) -> Vec<(Tensor, f64)> {
        self.dz.iter().zip(coords).map(|(d, &c)| (d.shallow_clone(), c)).collect()
    }
}

/// Preallocated activations of one batch length (reused across points: no allocation per point).
///
/// With D affine layers, the per-point matrix products are those of hidden layers 1..D-2 (in the
/// compute kind); the last hidden activation, the output layer and the loss are one fused kernel.
struct Buffers {
    /// Activated input of each per-point hidden layer (layers 1..D-2), in the compute kind.
    inputs: Vec<Tensor>,
    /// Output of each per-point hidden layer (affine; for the last, the bare product), in the compute kind.
    affine: Vec<Tensor>,
}

impl Buffers {
    fn new(config: &MlpConfig, m: i64, kind: Kind) -> Result<Self> {
        let cpu = |shape: [i64; 2]| Tensor::f_empty(shape, (kind, tch::Device::Cpu));
        let per_point = 1..config.depth().saturating_sub(1);
        let inputs = per_point.clone().map(|l| cpu([m, config.sizes[l]]));
        let affine = per_point.map(|l| cpu([m, config.weight_shape(l)[0]]));
        Ok(Buffers {
            inputs: inputs.collect::<std::result::Result<_, _>>()?,
            affine: affine.collect::<std::result::Result<_, _>>()?,
        })
    }
}

/// Summed loss and number of errors of one batch at one point, given the later layers' weights.
fn batch_at(
    config: &MlpConfig,
    batch: &FirstLayer,
    coords: &[f64],
    later: &[(Tensor, Tensor)],
    bufs: &Buffers,
) -> Result<LossSums> {
    let (act, targets, terms) = (config.activation, &batch.targets, batch.terms(coords));
    match later.split_last() {
        None => {
            // No hidden layer: z(c) is the output.
            let logits =
                Subspace::of_activations(&batch.z0, &batch.dz)?.point(coords)?.f_to_kind(Kind::Double)?;
            let (mean_loss, wrong) = Mlp::loss_and_errors(&logits, targets)?;
            let n = targets.size()[0] as f64;
            Ok(LossSums { loss: mean_loss.f_double_value(&[])? * n, wrong: wrong.f_int64_value(&[])? })
        }
        Some(((w, b), [])) => point_loss(&batch.z0, &terms, act, (w, b), targets),
        Some(((w_out, b_out), hidden)) => {
            point_activation(&batch.z0, &terms, act, &bufs.inputs[0])?;
            let mut sums = LossSums::default();
            for (i, (w, b)) in hidden.iter().enumerate() {
                match bufs.inputs.get(i + 1) {
                    Some(next) => {
                        let z = b.f_addmm_out(&bufs.affine[i], &bufs.inputs[i], &w.f_tr()?)?;
                        next.shallow_clone().f_copy_(&act.apply(&z)?)?;
                    }
                    // The last hidden layer is a bare product, its bias added in the loss kernel's
                    // pass: addmm adds it in a pass of its own over the whole matrix (in bf16, 1.3 s
                    // of an 8.8 s sweep of 784-1024-1024-10 on 10,000 examples at 101 α).
                    None => {
                        let z = bufs.inputs[i].f_mm_out(&bufs.affine[i], &w.f_tr()?)?;
                        sums = activation_loss(&z, b, act, (w_out, b_out), targets)?;
                    }
                }
            }
            Ok(sums)
        }
    }
}

/// (W(c), b(c)) of every layer after the first.
fn later_layers(pieces: &[LayerPiece], coords: &[f64]) -> Result<Vec<(Tensor, Tensor)>> {
    pieces[1..].iter().map(|l| l.at(coords)).collect()
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

/// Coordinates beyond this size are moved into the directions first (exactly, by powers of two):
/// the first layer's kernels take them in float32, where 1e39 is inf and inf·dz NaN.
const COORD_LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64

/// Bytes of first-layer outputs (float32, origin and directions) cached per block.
const BLOCK_BYTES: i64 = 256 << 20;

/// Examples per block: a multiple of `batch_size` whose first-layer outputs (origin and `dim`
/// directions) take at most ≈256 MB of float32. Each block is evaluated as one matrix per point.
fn block_len(config: &MlpConfig, batch_size: i64, n: i64, budget: i64, dim: usize) -> i64 {
    let per_example = config.weight_shape(0)[0].saturating_mul(4 * (1 + dim as i64));
    let fit = (budget / per_example.max(1)).max(batch_size);
    (fit / batch_size * batch_size).min(n)
}

/// J and the error rate along the line θ0 + α·(θ1 − θ0) on one split (see [`sweep_mlp_passes`]).
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
    on_point: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<SplitSweep> {
    let line = Subspace::line(theta0, theta1, Kind::Double)?;
    let points: Vec<Vec<f64>> = alphas.iter().map(|&a| vec![a]).collect();
    let pass = Pass { points: &points, precision };
    let measures = sweep_mlp_passes(config, &line, (x, y), &[pass], batch_size, on_point)?;
    Ok(SplitSweep::of(&measures[0]))
}

/// The measures of several passes (points of `sub`, each pass in its precision) over the same split
/// `(x, y)`, in blocks of whole batches of `batch_size` (see [`block_len`]: batch_size only sets the
/// granularity of the memory bound), sharing the first layer's products: e.g. a bf16 sweep and its
/// float32 check. One [`Measure`] per point per pass; `on_point(done, total)` runs after each point
/// of each block of data (for progress and cancellation); returning `false` stops the sweep with
/// `Error::InvalidArgument("interrupted")`.
pub fn sweep_mlp_passes(
    config: &MlpConfig,
    sub: &Subspace,
    data: (&Tensor, &Tensor),
    passes: &[Pass],
    batch_size: i64,
    on_point: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<Measure>>> {
    sweep_in_blocks(config, sub, data, passes, (batch_size, BLOCK_BYTES), on_point)
}

/// [`sweep_mlp_passes`] with the block budget in bytes as a parameter (`sizes` = (batch_size, budget)).
fn sweep_in_blocks(
    config: &MlpConfig,
    sub: &Subspace,
    (x, y): (&Tensor, &Tensor),
    passes: &[Pass],
    (batch_size, budget): (i64, i64),
    on_point: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<Measure>>> {
    check_passes(sub, passes)?;
    let all_points: Vec<&[Vec<f64>]> = passes.iter().map(|p| p.points).collect();
    if let Some((moderate, scales)) = sub.with_moderate_coordinates(&all_points, COORD_LIMIT)? {
        let scale = |c: &Vec<f64>| -> Vec<f64> { c.iter().zip(&scales).map(|(c, s)| c / s).collect() };
        let points: Vec<Vec<Vec<f64>>> =
            passes.iter().map(|p| p.points.iter().map(scale).collect()).collect();
        let passes: Vec<Pass> =
            points.iter().zip(passes).map(|(points, p)| Pass { points, precision: p.precision }).collect();
        return sweep_in_blocks(config, &moderate, (x, y), &passes, (batch_size, budget), on_point);
    }
    if batch_size < 1 {
        return Err(Error::InvalidArgument(format!("batch_size must be positive, got {batch_size}")));
    }
    config.validate()?;
    config.check_labelled(x, y, "the data")?;
    if sub.device() != tch::Device::Cpu {
        return Err(Error::InvalidArgument("the native MLP sweep runs on the CPU; pass CPU vectors".into()));
    }
    let _guard = tch::no_grad_guard();
    // Strided inputs or targets (e.g. `Y[::2]`) are copied once; the kernels read contiguous rows.
    let (x, y) = (&x.f_contiguous()?, &y.f_contiguous()?);
    let pieces: Vec<Vec<LayerPiece>> =
        passes.iter().map(|p| layer_pieces(config, sub, p.precision)).collect::<Result<_>>()?;
    let n = x.size()[0];
    let mut sums: Vec<Vec<Measure>> =
        passes.iter().map(|p| vec![Measure::default(); p.points.len()]).collect();
    let block = block_len(config, batch_size, n, budget, sub.dim());
    let mut buffers = Vec::new();
    let per_block: usize = passes.iter().map(|p| p.points.len()).sum();
    let total = per_block * (n as usize).div_ceil(block as usize);
    let mut done = 0;
    for start in (0..n).step_by(block as usize) {
        let len = block.min(n - start);
        let batch = first_layer(&pieces[0][0], &x.f_narrow(0, start, len)?, &y.f_narrow(0, start, len)?)?;
        for ((pass, pass_pieces), pass_sums) in passes.iter().zip(&pieces).zip(&mut sums) {
            let bufs = buffers_for(&mut buffers, config, len, pass.precision.kind())?;
            for (coords, sum) in pass.points.iter().zip(pass_sums.iter_mut()) {
                let at = batch_at(config, &batch, coords, &later_layers(pass_pieces, coords)?, bufs)?;
                sum.add(Measure { loss_sum: at.loss, wrong: at.wrong, count: len });
                done += 1;
                if !on_point(done, total) {
                    return Err(Error::InvalidArgument("interrupted".into()));
                }
            }
        }
    }
    Ok(sums)
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
    fn plane_points_match_the_slow_way() {
        tch::manual_seed(9);
        let cfg =
            MlpConfig { sizes: vec![5, 7, 6, 3], activation: Activation::Maxout(2), ..MlpConfig::default() };
        let numel: i64 = (0..cfg.depth())
            .map(|i| cfg.weight_shape(i).iter().product::<i64>() + cfg.weight_shape(i)[0])
            .sum();
        let f64s = || Tensor::randn([numel], (Kind::Double, Device::Cpu));
        let (origin, d1, d2) = (f64s(), f64s() * 0.3, f64s() * 0.3);
        let plane = Subspace::new(&origin, &[d1.shallow_clone(), d2.shallow_clone()], Kind::Double).unwrap();
        let x = Tensor::randn([40, 5], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(3, [40], (Kind::Int64, Device::Cpu));
        let points = vec![vec![0.0, 0.0], vec![-1.0, 0.5], vec![2.0, -1.5]];
        let pass = Pass { points: &points, precision: Precision::F32 };
        let got = sweep_mlp_passes(&cfg, &plane, (&x, &y), &[pass], 16, &mut |_, _| true).unwrap();
        for (point, measure) in points.iter().zip(&got[0]) {
            let theta = &origin + &d1 * point[0] + &d2 * point[1];
            // The line from θ(c) to itself evaluates exactly θ(c) at α = 0.
            let (loss, _) = reference(&cfg, &theta, &theta, &x, &y, 0.0);
            let (got_loss, _) = measure.rates();
            assert!((got_loss - loss).abs() <= 1e-5 * loss.abs(), "{point:?}: {got_loss} vs {loss}");
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
        assert_eq!(block_len(&cfg, 10, 103, budget, 1), 20);
        let (mut calls, mut seen_total) = (0, 0);
        let mut count = |_, total| {
            calls += 1;
            seen_total = total;
            true
        };
        let points = [vec![-0.5], vec![0.3], vec![1.2]];
        let pass = Pass { points: &points, precision: Precision::F32 };
        let line = Subspace::line(&t0, &t1, Kind::Double).unwrap();
        let many = sweep_in_blocks(&cfg, &line, (&x, &y), &[pass], (10, budget), &mut count).unwrap();
        let many = SplitSweep::of(&many[0]);
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
        let points = |alphas: &[f64]| -> Vec<Vec<f64>> { alphas.iter().map(|&a| vec![a]).collect() };
        let (grid_points, check_points) = (points(&grid), points(&check));
        let passes = [
            Pass { points: &grid_points, precision: Precision::Bf16 },
            Pass { points: &check_points, precision: Precision::F32 },
        ];
        let mut seen = 0;
        let line = Subspace::line(&t0, &t1, Kind::Double).unwrap();
        let both = sweep_mlp_passes(&cfg, &line, (&x, &y), &passes, 8, &mut |_, total| {
            seen = total;
            true
        })
        .unwrap();
        assert_eq!(seen, grid.len() + check.len());
        assert_eq!(SplitSweep::of(&both[0]), alone(&grid, Precision::Bf16));
        assert_eq!(SplitSweep::of(&both[1]), alone(&check, Precision::F32));
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
    fn coordinates_beyond_float32_along_tiny_directions_are_not_nan() {
        tch::manual_seed(11);
        let cfg = MlpConfig { sizes: vec![4, 6, 5, 3], ..MlpConfig::default() };
        let numel = 4 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3;
        let origin = Tensor::randn([numel], (Kind::Double, Device::Cpu));
        let reach = 1e39;
        let d = Tensor::randn([numel], (Kind::Double, Device::Cpu)) * (0.1 / reach);
        let x = Tensor::randn([30, 4], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(3, [30], (Kind::Int64, Device::Cpu));
        let line = Subspace::new(&origin, &[d.shallow_clone()], Kind::Double).unwrap();
        let points = vec![vec![-reach], vec![0.0], vec![0.5 * reach]];
        let pass = Pass { points: &points, precision: Precision::F32 };
        let got = sweep_mlp_passes(&cfg, &line, (&x, &y), &[pass], 16, &mut |_, _| true).unwrap();
        for (point, measure) in points.iter().zip(&got[0]) {
            let theta = &origin + &d * point[0];
            let (loss, _) = reference(&cfg, &theta, &theta, &x, &y, 0.0);
            let (got_loss, _) = measure.rates();
            assert!((got_loss - loss).abs() <= 1e-5 * loss.abs(), "{point:?}: {got_loss} vs {loss}");
        }
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
