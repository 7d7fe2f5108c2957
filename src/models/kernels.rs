//! Fused elementwise kernels of the native sweep, on raw CPU buffers (in parallel over rows, on
//! libtorch's own threads where it can: see [`crate::pool`]).
//!
//! They replace chains of tensor ops (scale, add, activation, cast), each of which would read and
//! write the whole activation matrix, with one pass into a preallocated tensor. They run no tch
//! ops inside their parallel tasks (see the thread rules in build-facts).

use super::mlp::Activation;
use crate::error::{Error, Result};
use crate::pool::{for_each_chunk_mut, map_tasks};
use crate::subspace::combine;
use tch::{Device, Kind, Tensor};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// The widest vector instructions this CPU has, detected once at run time: one build runs
/// everywhere, and fast where it can.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512,
    Avx2,
    Base,
}

fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
                return Level::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Base
    })
}

/// Defines `$name`, which runs the `#[inline(always)]` function `$body` compiled for the CPU's
/// widest vector level (the body is inlined into a `#[target_feature]` copy per level).
macro_rules! multiversion {
    ($name:ident, $body:ident, <$($g:ident: $bound:path),*>, ($($arg:ident: $ty:ty),*)) => {
        fn $name<$($g: $bound),*>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
            unsafe fn avx512<$($g: $bound),*>($($arg: $ty),*) {
                $body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2<$($g: $bound),*>($($arg: $ty),*) {
                $body($($arg),*)
            }
            match level() {
                // SAFETY: `level()` found these features on this CPU.
                #[cfg(target_arch = "x86_64")]
                Level::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                Level::Avx2 => unsafe { avx2($($arg),*) },
                _ => $body($($arg),*),
            }
        }
    };
}

/// An output element: float32, or bfloat16 stored as its upper 16 bits.
trait Out: Copy + Send + Sync {
    fn from_f32(v: f32) -> Self;
}

impl Out for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
}

/// bfloat16 bits.
#[derive(Clone, Copy)]
struct Bf16(#[allow(dead_code)] u16);

impl Out for Bf16 {
    /// Round to nearest even (NaN stays NaN), as PyTorch converts; branch-free so that it vectorises.
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        let bits = v.to_bits();
        let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
        let quiet_nan = (bits >> 16) | 0x40;
        Bf16((if v.is_nan() { quiet_nan } else { rounded }) as u16)
    }
}

/// An input element: float32 or bfloat16.
trait In: Copy + Send + Sync {
    fn to_f32(self) -> f32;
}

impl In for f32 {
    fn to_f32(self) -> f32 {
        self
    }
}

impl In for Bf16 {
    fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

fn check(t: &Tensor, kinds: &[Kind], what: &str) -> Result<()> {
    let kind = t.f_kind()?;
    if t.device() != Device::Cpu || !t.is_contiguous() || !kinds.contains(&kind) {
        return Err(Error::InvalidArgument(format!("{what}: expected a contiguous CPU tensor of {kinds:?}")));
    }
    Ok(())
}

/// # Safety
/// `t` must be a contiguous CPU tensor whose elements have the layout of `T`.
unsafe fn slice<T>(t: &Tensor) -> &[T] {
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, t.numel()) }
}

/// # Safety
/// As [`slice`], and nothing else may read or write `t` while the slice is alive.
#[allow(clippy::mut_from_ref)]
unsafe fn slice_mut<T>(t: &Tensor) -> &mut [T] {
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel()) }
}

#[inline(always)]
fn relu(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Fills `tmp` with the pre-activations starting at flat index `start` (a vectorisable loop).
trait Pre: Sync {
    fn fill(&self, tmp: &mut [f32], start: usize);
}

/// z0 + Σ c_k·dz_k, the first layer's pre-activations at a point of a subspace (built by
/// [`combine`], the one expression of a point).
struct Point<'a> {
    origin: &'a [f32],
    terms: Vec<(&'a [f32], f32)>,
}

impl Pre for Point<'_> {
    #[inline(always)]
    fn fill(&self, tmp: &mut [f32], start: usize) {
        let range = start..start + tmp.len();
        let terms: Vec<(&[f32], f32)> = self.terms.iter().map(|(d, c)| (&d[range.clone()], *c)).collect();
        combine(tmp, &self.origin[range], &terms, |v| v);
    }
}

/// The [`Point`] of `z0` and `terms` (dz_k, c_k), checked: float32 contiguous CPU tensors of one shape.
fn point_of<'a>(z0: &'a Tensor, terms: &'a [(Tensor, f64)], what: &str) -> Result<Point<'a>> {
    check(z0, &[Kind::Float], "z0")?;
    for (dz, _) in terms {
        check(dz, &[Kind::Float], "dz")?;
        if dz.size() != z0.size() {
            return Err(Error::InvalidArgument(format!("{what}: shapes do not match")));
        }
    }
    // SAFETY: checked above (contiguous CPU float32 tensors that outlive the point).
    let origin = unsafe { slice::<f32>(z0) };
    let terms = terms.iter().map(|(dz, c)| (unsafe { slice::<f32>(dz) }, *c as f32)).collect();
    Ok(Point { origin, terms })
}

impl Pre for &[f32] {
    #[inline(always)]
    fn fill(&self, tmp: &mut [f32], start: usize) {
        tmp.copy_from_slice(&self[start..start + tmp.len()]);
    }
}

impl Pre for &[Bf16] {
    #[inline(always)]
    fn fill(&self, tmp: &mut [f32], start: usize) {
        let src = &self[start..start + tmp.len()];
        for (t, &x) in tmp.iter_mut().zip(src) {
            *t = x.to_f32();
        }
    }
}

/// A [`Pre`] with each unit's bias added: element `start + i` of the flat `[m, n]` pre-activations
/// gets `bias[(start + i) % n]` (a layer computed as a bare product, its bias added here in the same
/// pass instead of in a pass of its own over the whole matrix).
struct Biased<'a, P> {
    inner: P,
    bias: &'a [f32],
}

impl<P: Pre> Pre for Biased<'_, P> {
    #[inline(always)]
    fn fill(&self, tmp: &mut [f32], start: usize) {
        self.inner.fill(tmp, start);
        let n = self.bias.len();
        let (mut done, mut unit) = (0, start % n);
        while done < tmp.len() {
            let take = (n - unit).min(tmp.len() - done);
            for (t, b) in tmp[done..done + take].iter_mut().zip(&self.bias[unit..unit + take]) {
                *t += b;
            }
            (done, unit) = (done + take, 0);
        }
    }
}

/// Applies `act` to the pre-activations of `pre`, one output per unit, in parallel chunks.
fn map_activation<O: Out>(out: &mut [O], act: Activation, pre: &impl Pre) {
    let k = act.pieces() as usize;
    for_each_chunk_mut(out, CHUNK, |c, chunk| activation_chunk(chunk, pre, c * CHUNK * k, act));
}

#[inline(always)]
fn activation_chunk_body<O: Out, P: Pre>(chunk: &mut [O], pre: &P, start: usize, act: Activation) {
    let mut tmp = vec![0f32; chunk.len() * act.pieces() as usize];
    pre.fill(&mut tmp, start);
    map_chunk(chunk, &tmp, act);
}

multiversion!(activation_chunk, activation_chunk_body, <O: Out, P: Pre>, (chunk: &mut [O], pre: &P, start: usize, act: Activation));

/// One output per unit from the pre-activations in `tmp` (`k` per unit for maxout).
#[inline(always)]
fn map_chunk<O: Out>(out: &mut [O], tmp: &[f32], act: Activation) {
    match act {
        Activation::Relu => store(out, tmp, relu),
        Activation::Sigmoid => store(out, tmp, sigmoid),
        Activation::Tanh => store(out, tmp, f32::tanh),
        Activation::Maxout(k) => {
            for (o, group) in out.iter_mut().zip(tmp.chunks_exact(k as usize)) {
                let m = group.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m || v.is_nan() { v } else { m });
                *o = O::from_f32(m);
            }
        }
    }
}

#[inline(always)]
fn store<O: Out>(out: &mut [O], tmp: &[f32], f: impl Fn(f32) -> f32) {
    for (o, &t) in out.iter_mut().zip(tmp) {
        *o = O::from_f32(f(t));
    }
}

/// `out = act(z0 + Σ c_k·dz_k)` with `z0` and each `dz_k` float32 `[m, w·k]` (`terms` = (dz_k, c_k))
/// and `out` float32 or bf16 `[m, w]`.
pub fn point_activation(z0: &Tensor, terms: &[(Tensor, f64)], act: Activation, out: &Tensor) -> Result<()> {
    let pre = point_of(z0, terms, "point_activation")?;
    check(out, &[Kind::Float, Kind::BFloat16], "out")?;
    if out.numel() * act.pieces() as usize != z0.numel() {
        return Err(Error::InvalidArgument("point_activation: shapes do not match".into()));
    }
    // SAFETY: `out` is a checked contiguous CPU tensor, a distinct buffer.
    match out.f_kind()? {
        Kind::Float => map_activation(unsafe { slice_mut::<f32>(out) }, act, &pre),
        _ => map_activation(unsafe { slice_mut::<Bf16>(out) }, act, &pre),
    }
    Ok(())
}

/// Rows per parallel task of the logits kernel.
const ROWS: usize = 32;

/// Lanes of partial sums in [`dot`] (one AVX-512 register).
const LANES: usize = 16;

/// Rows the output layer takes together: each of its weight rows is read once per block of rows (a
/// 10-class layer of width 1,024 is 40 KB, more than the L1 cache: read once per row, its reads
/// bounded the whole kernel).
const ROW_BLOCK: usize = 4;

/// `[h_r · w for r in 0..4]`: with explicit FMA, one accumulator per row, where the CPU has AVX-512
/// or AVX2; else [`dot_portable`] per row. Summed in a fixed order: the same inputs give the same
/// result on one machine, whatever the number of threads.
#[inline(always)]
fn dots4(h: [&[f32]; ROW_BLOCK], w: &[f32]) -> [f32; ROW_BLOCK] {
    #[cfg(target_arch = "x86_64")]
    match level() {
        // SAFETY: `level()` found these features on this CPU.
        Level::Avx512 => return unsafe { simd::dots4_avx512(h, w) },
        Level::Avx2 => return unsafe { simd::dots4_avx2(h, w) },
        Level::Base => {}
    }
    h.map(|row| dot_portable(row, w))
}

/// Σ a·b with [`LANES`] partial sums (vectorises).
#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// [`dots4`] with x86 intrinsics: a register of partial sums per row, fused multiply-adds.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::ROW_BLOCK;
    use std::arch::x86_64::*;

    /// The scalar tail `Σ h[i..n]·w[i..n]`.
    fn tail(h: &[f32], w: &[f32], from: usize) -> f32 {
        h[from..].iter().zip(&w[from..]).map(|(x, y)| x * y).sum()
    }

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots4_avx512(h: [&[f32]; ROW_BLOCK], w: &[f32]) -> [f32; ROW_BLOCK] {
        let n = h.iter().fold(w.len(), |n, r| n.min(r.len()));
        let mut acc = [_mm512_setzero_ps(); ROW_BLOCK];
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, inside w and every row.
            let y = unsafe { _mm512_loadu_ps(w.as_ptr().add(i)) };
            for (sum, row) in acc.iter_mut().zip(&h) {
                *sum = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(row.as_ptr().add(i)) }, y, *sum);
            }
            i += 16;
        }
        std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r]) + tail(&h[r][..n], &w[..n], i))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots4_avx2(h: [&[f32]; ROW_BLOCK], w: &[f32]) -> [f32; ROW_BLOCK] {
        let n = h.iter().fold(w.len(), |n, r| n.min(r.len()));
        let mut acc = [_mm256_setzero_ps(); ROW_BLOCK];
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, inside w and every row.
            let y = unsafe { _mm256_loadu_ps(w.as_ptr().add(i)) };
            for (sum, row) in acc.iter_mut().zip(&h) {
                *sum = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(row.as_ptr().add(i)) }, y, *sum);
            }
            i += 8;
        }
        std::array::from_fn(|r| {
            let quad = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
            let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
            _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1))) + tail(&h[r][..n], &w[..n], i)
        })
    }
}

/// Logits of a block of [`ROW_BLOCK`] rows of hidden activations (`h`: row-major, `width` each):
/// `logits[r·classes + j] = h_r · w_j + b[j]`.
#[inline(always)]
fn output_block(h: &[f32], width: usize, w: &[f32], b: &[f32], logits: &mut [f32]) {
    let classes = b.len();
    let rows: [&[f32]; ROW_BLOCK] = std::array::from_fn(|r| &h[r * width..(r + 1) * width]);
    for (j, bias) in b.iter().enumerate() {
        let values = dots4(rows, &w[j * width..(j + 1) * width]);
        for (r, v) in values.iter().enumerate() {
            logits[r * classes + j] = v + bias;
        }
    }
}

/// Summed cross-entropy and number of misclassified rows of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossSums {
    pub loss: f64,
    pub wrong: i64,
}

/// Cross-entropy of one row of logits against `target` (log-sum-exp accumulated in float64),
/// and whether its argmax (the first maximum, NaN counting as the largest, as torch.argmax) misses.
#[inline(always)]
fn row_loss(logits: &[f32], target: usize) -> (f64, bool) {
    let mut best = 0;
    for (j, &v) in logits.iter().enumerate() {
        let m = logits[best];
        if v > m || (v.is_nan() && !m.is_nan()) {
            best = j;
        }
    }
    let max = logits[best];
    let sum: f64 = logits.iter().map(|&v| ((v - max).exp()) as f64).sum();
    let lse = max as f64 + sum.ln();
    (lse - logits[target] as f64, best != target)
}

/// `act(pre) Wᵀ + b` row by row, straight into the loss: the last hidden activation, the small
/// output layer and the cross-entropy fused, so no activated matrix or logits are written out.
/// Partial sums are combined in row order (the result does not depend on the thread count).
fn loss_rows(pre: &impl Pre, act: Activation, w: &[f32], b: &[f32], targets: &[i64]) -> LossSums {
    let parts: Vec<LossSums> = map_tasks(targets.len().div_ceil(ROWS), |c| {
        let t = &targets[c * ROWS..(c * ROWS + ROWS).min(targets.len())];
        let mut out = LossSums::default();
        loss_chunk(&mut out, t, pre, c * ROWS, act, w, b);
        out
    });
    parts
        .iter()
        .fold(LossSums::default(), |s, p| LossSums { loss: s.loss + p.loss, wrong: s.wrong + p.wrong })
}

#[inline(always)]
fn loss_chunk_body<P: Pre>(
    out: &mut LossSums,
    targets: &[i64],
    pre: &P,
    first_row: usize,
    act: Activation,
    w: &[f32],
    b: &[f32],
) {
    let (k, classes) = (act.pieces() as usize, b.len());
    let width = w.len() / classes;
    let (mut tmp, mut h) = (vec![0f32; width * k], vec![0f32; width * ROW_BLOCK]);
    let mut logits = vec![0f32; classes * ROW_BLOCK];
    for (block, block_targets) in targets.chunks(ROW_BLOCK).enumerate() {
        // A short last block is padded with zero rows: every row goes through the same arithmetic.
        h[block_targets.len() * width..].fill(0.0);
        for (r, row) in h.chunks_exact_mut(width).take(block_targets.len()).enumerate() {
            pre.fill(&mut tmp, (first_row + block * ROW_BLOCK + r) * width * k);
            map_chunk(row, &tmp, act);
        }
        output_block(&h, width, w, b, &mut logits);
        for (row_logits, &target) in logits.chunks_exact(classes).zip(block_targets) {
            let (loss, wrong) = row_loss(row_logits, target as usize);
            out.loss += loss;
            out.wrong += wrong as i64;
        }
    }
}

multiversion!(loss_chunk, loss_chunk_body, <P: Pre>, (out: &mut LossSums, targets: &[i64], pre: &P, first_row: usize, act: Activation, w: &[f32], b: &[f32]));

/// Checks the output layer `(w, b)` and the targets of `rows` rows (class indices below `b.len()`).
fn check_output_layer(w: &Tensor, b: &Tensor, targets: &Tensor, rows: usize) -> Result<()> {
    check(w, &[Kind::Float], "output weight")?;
    check(b, &[Kind::Float], "output bias")?;
    check(targets, &[Kind::Int64], "targets")?;
    let classes = b.numel();
    if classes == 0 || !w.numel().is_multiple_of(classes) || targets.numel() != rows {
        return Err(Error::InvalidArgument("output layer: shapes do not match".into()));
    }
    // SAFETY: checked to be a contiguous int64 CPU tensor.
    if unsafe { slice::<i64>(targets) }.iter().any(|&t| t < 0 || t as usize >= classes) {
        return Err(Error::InvalidArgument(format!("targets must be class indices in [0, {classes})")));
    }
    Ok(())
}

/// Loss sums of `act(z0 + Σ c_k·dz_k) Wᵀ + b` (a network with one hidden layer) against `targets`.
pub fn point_loss(
    z0: &Tensor,
    terms: &[(Tensor, f64)],
    act: Activation,
    (w, b): (&Tensor, &Tensor),
    targets: &Tensor,
) -> Result<LossSums> {
    let pre = point_of(z0, terms, "point_loss")?;
    let rows = *z0.size().first().unwrap_or(&0) as usize;
    check_output_layer(w, b, targets, rows)?;
    if z0.numel() != rows * (w.numel() / b.numel()) * act.pieces() as usize {
        return Err(Error::InvalidArgument("point_loss: shapes do not match".into()));
    }
    // SAFETY: all checked to be contiguous CPU tensors of these element types.
    Ok(loss_rows(&pre, act, unsafe { slice(w) }, unsafe { slice(b) }, unsafe { slice(targets) }))
}

/// Loss sums of `act(z + bias) Wᵀ + b` against `targets`, with `z` float32 or bf16 `[m, w·k]` (a
/// hidden layer's bare product) and `bias` its float32 or bf16 bias `[w·k]`.
pub fn activation_loss(
    z: &Tensor,
    bias: &Tensor,
    act: Activation,
    (w, b): (&Tensor, &Tensor),
    targets: &Tensor,
) -> Result<LossSums> {
    check(z, &[Kind::Float, Kind::BFloat16], "z")?;
    check(bias, &[Kind::Float, Kind::BFloat16], "hidden bias")?;
    let rows = *z.size().first().unwrap_or(&0) as usize;
    check_output_layer(w, b, targets, rows)?;
    let units = (w.numel() / b.numel()) * act.pieces() as usize;
    if z.numel() != rows * units || bias.numel() != units {
        return Err(Error::InvalidArgument("activation_loss: shapes do not match".into()));
    }
    let bias = bias.f_to_kind(Kind::Float)?; // a new tensor only when it is bf16 (w·k values)
                                             // SAFETY: checked above.
    let (w, b, t) = unsafe { (slice::<f32>(w), slice::<f32>(b), slice::<i64>(targets)) };
    let bias = unsafe { slice::<f32>(&bias) };
    Ok(match z.f_kind()? {
        Kind::Float => loss_rows(&Biased { inner: unsafe { slice::<f32>(z) }, bias }, act, w, b, t),
        _ => loss_rows(&Biased { inner: unsafe { slice::<Bf16>(z) }, bias }, act, w, b, t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);

    #[test]
    fn kernels_match_tensor_ops_for_every_activation() {
        tch::manual_seed(11);
        for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh, Activation::Maxout(3)] {
            let k = act.pieces();
            let z0 = Tensor::randn([37, 5 * k], (Kind::Float, Device::Cpu));
            let dz = Tensor::randn([37, 5 * k], (Kind::Float, Device::Cpu));
            let expected = act.apply(&(&dz * 0.3 + &z0)).unwrap();
            let out = Tensor::zeros([37, 5], (Kind::Float, Device::Cpu));
            point_activation(&z0, &[(dz.shallow_clone(), 0.3)], act, &out).unwrap();
            assert!((&out - &expected).abs().max().double_value(&[]) < 1e-6, "{act:?}");
            let half = Tensor::zeros([37, 5], (Kind::BFloat16, Device::Cpu));
            point_activation(&z0, &[(dz.shallow_clone(), 0.3)], act, &half).unwrap();
            assert!(half.to_kind(Kind::Float).equal(&expected.to_kind(Kind::BFloat16).to_kind(Kind::Float)));
        }
    }

    /// (Σ cross-entropy, #wrong) of logits against targets, with tensor ops in float64.
    fn reference_loss(logits: &Tensor, targets: &Tensor) -> LossSums {
        let logits = logits.to_kind(Kind::Double);
        let loss = logits
            .log_softmax(-1, Kind::Double)
            .f_nll_loss::<Tensor>(targets, None, tch::Reduction::Sum, -100)
            .unwrap();
        let wrong = logits.argmax(-1, false).ne_tensor(targets).sum(Kind::Int64);
        LossSums { loss: loss.double_value(&[]), wrong: wrong.int64_value(&[]) }
    }

    #[test]
    fn loss_kernels_match_tensor_ops() {
        tch::manual_seed(12);
        for act in [Activation::Relu, Activation::Sigmoid, Activation::Tanh, Activation::Maxout(2)] {
            let k = act.pieces();
            let (z0, dz) = (Tensor::randn([70, 37 * k], FLOAT), Tensor::randn([70, 37 * k], FLOAT));
            let (w, b) = (Tensor::randn([10, 37], FLOAT), Tensor::randn([10], FLOAT));
            let targets = Tensor::randint(10, [70], (Kind::Int64, Device::Cpu));
            let expected =
                reference_loss(&(act.apply(&(&dz * -0.7 + &z0)).unwrap().matmul(&w.tr()) + &b), &targets);
            let got = point_loss(&z0, &[(dz.shallow_clone(), -0.7)], act, (&w, &b), &targets).unwrap();
            assert!((got.loss - expected.loss).abs() < 1e-5 * expected.loss, "{act:?}");
            assert_eq!(got.wrong, expected.wrong);
            // A bare product and its bias (float32 or bf16), added in the kernel's pass.
            let z = (&dz * -0.7 + &z0).to_kind(Kind::BFloat16);
            let bias = Tensor::randn([37 * k], FLOAT);
            for hidden_bias in [bias.shallow_clone(), bias.to_kind(Kind::BFloat16)] {
                let pre = z.to_kind(Kind::Float) + hidden_bias.to_kind(Kind::Float);
                let expected = reference_loss(&(act.apply(&pre).unwrap().matmul(&w.tr()) + &b), &targets);
                let got = activation_loss(&z, &hidden_bias, act, (&w, &b), &targets).unwrap();
                assert!((got.loss - expected.loss).abs() < 1e-5 * expected.loss, "{act:?}");
                assert_eq!(got.wrong, expected.wrong);
            }
        }
    }

    #[test]
    fn plane_kernels_match_tensor_ops() {
        tch::manual_seed(13);
        let act = Activation::Maxout(2);
        let (z0, d1, d2) =
            (Tensor::randn([50, 8], FLOAT), Tensor::randn([50, 8], FLOAT), Tensor::randn([50, 8], FLOAT));
        let terms = [(d1.shallow_clone(), 0.4), (d2.shallow_clone(), -1.3)];
        let z = &z0 + &d1 * 0.4 + &d2 * -1.3;
        let out = Tensor::zeros([50, 4], FLOAT);
        point_activation(&z0, &terms, act, &out).unwrap();
        assert!((&out - act.apply(&z).unwrap()).abs().max().double_value(&[]) < 1e-5);
        let (w, b) = (Tensor::randn([3, 4], FLOAT), Tensor::randn([3], FLOAT));
        let targets = Tensor::randint(3, [50], (Kind::Int64, Device::Cpu));
        let expected = reference_loss(&(act.apply(&z).unwrap().matmul(&w.tr()) + &b), &targets);
        let got = point_loss(&z0, &terms, act, (&w, &b), &targets).unwrap();
        assert!((got.loss - expected.loss).abs() < 1e-5 * expected.loss);
        assert!(point_loss(&z0, &[(Tensor::zeros([50, 7], FLOAT), 1.0)], act, (&w, &b), &targets).is_err());
    }

    #[test]
    fn every_dot_product_path_matches_float64_on_any_width() {
        tch::manual_seed(14);
        for width in [0i64, 1, 7, 8, 9, 16, 37, 64, 100, 1024] {
            let (h, w) = (Tensor::randn([ROW_BLOCK as i64, width], FLOAT), Tensor::randn([width], FLOAT));
            let expected: Vec<f64> = (0..ROW_BLOCK as i64)
                .map(|r| h.get(r).to_kind(Kind::Double).dot(&w.to_kind(Kind::Double)).double_value(&[]))
                .collect();
            let (hv, wv) =
                (Vec::<f32>::try_from(h.flatten(0, 1)).unwrap(), Vec::<f32>::try_from(&w).unwrap());
            let rows: [&[f32]; ROW_BLOCK] =
                std::array::from_fn(|r| &hv[r * width as usize..][..width as usize]);
            let mut paths: Vec<(&str, [f32; ROW_BLOCK])> =
                vec![("portable", rows.map(|row| dot_portable(row, &wv))), ("dispatched", dots4(rows, &wv))];
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    paths.push(("avx2", unsafe { simd::dots4_avx2(rows, &wv) }));
                }
                if std::is_x86_feature_detected!("avx512f") {
                    paths.push(("avx512", unsafe { simd::dots4_avx512(rows, &wv) }));
                }
            }
            for (name, got) in paths {
                for (g, e) in got.iter().zip(&expected) {
                    let scale = 1e-5 * (1.0 + (width as f64).sqrt());
                    assert!(
                        (*g as f64 - e).abs() <= scale * (1.0 + e.abs()),
                        "{name}, width {width}: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_bias_is_added_per_unit_from_any_start() {
        let (values, bias) = ((0..35).map(|v| v as f32).collect::<Vec<_>>(), [0.5f32, -1.0, 2.0, 4.0, 8.0]);
        let pre = Biased { inner: values.as_slice(), bias: &bias };
        for (start, len) in [(0, 35), (3, 9), (5, 5), (7, 1), (9, 26)] {
            let mut tmp = vec![0f32; len];
            pre.fill(&mut tmp, start);
            let expected: Vec<f32> = (start..start + len).map(|i| values[i] + bias[i % 5]).collect();
            assert_eq!(tmp, expected, "start {start}, len {len}");
        }
    }

    #[test]
    fn wrong_buffers_are_errors() {
        let z = Tensor::zeros([4, 6], (Kind::Float, Device::Cpu));
        let out = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
        assert!(point_activation(&z, &[(z.shallow_clone(), 1.0)], Activation::Relu, &out).is_err());
        let ints = Tensor::zeros([4, 6], (Kind::Int64, Device::Cpu));
        let (w, b) = (Tensor::zeros([2, 6], FLOAT), Tensor::zeros([2], FLOAT));
        let targets = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        let (relu, bias) = (Activation::Relu, Tensor::zeros([6], FLOAT));
        assert!(activation_loss(&ints, &bias, relu, (&w, &b), &targets).is_err());
        assert!(activation_loss(&z, &bias, relu, (&w, &b), &(targets.ones_like() * 2)).is_err());
        let five = Tensor::zeros([5], (Kind::Int64, Device::Cpu));
        assert!(activation_loss(&z, &bias, relu, (&w, &b), &five).is_err());
        assert!(activation_loss(&z, &Tensor::zeros([5], FLOAT), relu, (&w, &b), &targets).is_err());
        assert!(activation_loss(&z, &bias.to_kind(Kind::Double), relu, (&w, &b), &targets).is_err());
        assert!(activation_loss(&z, &bias, relu, (&w, &b), &targets).is_ok());
    }
}
