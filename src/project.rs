//! Projection of a trajectory onto the line θ0 + α·d, or onto the affine subspace θ0 + D·c
//! spanned by k directions (`project_subspace`; the plane of a 2-D loss surface for k = 2).
//!
//! For each checkpoint θ_t, with x_t = θ_t − θ0:
//! coordinate a_t = ⟨x_t, d⟩ / ‖d‖², residual r_t = ‖x_t − a_t·d‖.
//! Both come from one fused pass that accumulates ⟨x_t, d⟩ and ‖x_t‖² in float64
//! (r_t² = ‖x_t‖² − ⟨x_t, d⟩²/‖d‖²). Where that difference loses digits to
//! cancellation (the checkpoint lies almost on the line), a second, direct pass
//! computes r_t exactly. Work is split into chunks processed by rayon; the sums
//! are combined in a fixed order, so results do not depend on the thread count.
//! Checkpoints are read in segments, so a file-backed trajectory streams from
//! disk with bounded memory; each checkpoint's CRC is accumulated over its segments
//! as they are read (beside the sums, in parallel) and checked once it is read whole.
//! A checkpoint with NaN or infinite values (or sums that overflow float64) gets NaN
//! for its coordinate, residual and displacement, and makes the summary numbers NaN.
//!
//! For k directions D = [d_1 … d_k] (neither orthogonal nor normalised), the same fused pass
//! accumulates g_t = Dᵀx_t beside ‖x_t‖²; the coordinates solve G·c_t = g_t with the Gram
//! matrix G = DᵀD (Cholesky in float64), and r_t² = ‖x_t‖² − c_tᵀg_t, with the same direct
//! second pass where that difference cancels.

use crate::error::{Error, Result};
use crate::trajectory::{Dtype, Element, RecordCheck, TrajectoryStore};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 13;
/// θ0 for the ‖d‖² sum (x − 0 = x exactly).
static ZEROS: [f64; CHUNK] = [0.0; CHUNK];
/// Elements read per checkpoint and segment (bounds memory when streaming).
const SEGMENT: usize = 1 << 20;
/// Bytes of checkpoint data read per group of checkpoints.
const GROUP_BYTES: usize = 32 << 20;
/// Below this ratio r_t²/‖x_t‖² the residual is recomputed directly.
const CANCELLATION_RATIO: f64 = 1e-4;
/// Most directions `project_subspace` takes.
pub const MAX_DIRECTIONS: usize = 8;
/// Directions are linearly dependent when 1/trace(Ĝ⁻¹) (λ_min/λ_max of the unit-diagonal Gram matrix Ĝ, within a factor k) is below this.
const DEPENDENCE_RTOL: f64 = 1e-12;

/// Where one checkpoint lies relative to the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointProjection {
    /// a_t: 0 at θ0, 1 at θ0 + d.
    pub coordinate: f64,
    /// r_t: distance from the line.
    pub residual: f64,
    /// ‖θ_t − θ0‖.
    pub displacement: f64,
}

/// Summary numbers of a projected trajectory (science.md's definitions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Σ|a_{t+1} − a_t|·‖d‖.
    pub path_length: f64,
    /// max_t r_t.
    pub max_residual: f64,
    /// Σ(a_t‖d‖)² / Σ‖θ_t − θ0‖²: the fraction of squared displacement along the line.
    pub explained: f64,
}

/// Where one checkpoint lies relative to an affine subspace θ0 + D·c.
#[derive(Debug, Clone, PartialEq)]
pub struct SubspaceProjection {
    /// c_t (k values): the point of the subspace closest to θ_t is θ0 + Σ_j c_t[j]·d_j.
    pub coords: Vec<f64>,
    /// ‖x_t − D·c_t‖: distance from the subspace.
    pub residual: f64,
    /// ‖θ_t − θ0‖.
    pub displacement: f64,
}

/// The fused pass's sums for one checkpoint (or one chunk of it): ⟨x, d_j⟩ for each direction
/// (unused entries stay 0), and ‖x‖².
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sums {
    dots: [f64; MAX_DIRECTIONS],
    sq: f64,
}

impl Sums {
    const ZERO: Sums = Sums { dots: [0.0; MAX_DIRECTIONS], sq: 0.0 };

    fn finite(&self) -> bool {
        self.sq.is_finite() && self.dots.iter().all(|v| v.is_finite())
    }
}

impl std::ops::AddAssign for Sums {
    fn add_assign(&mut self, other: Sums) {
        self.dots.iter_mut().zip(other.dots).for_each(|(a, b)| *a += b);
        self.sq += other.sq;
    }
}

impl std::iter::Sum for Sums {
    fn sum<I: Iterator<Item = Sums>>(iter: I) -> Sums {
        iter.fold(Sums::ZERO, |mut a, b| {
            a += b;
            a
        })
    }
}

/// Projects every checkpoint of `store` onto the line through `theta0` with direction `direction`.
pub fn project(store: &TrajectoryStore, theta0: &[f64], direction: &[f64]) -> Result<Vec<PointProjection>> {
    let n = store.layout().numel();
    if theta0.len() != n || direction.len() != n {
        return Err(Error::Layout(format!(
            "the line has {} and {} elements but the trajectory's checkpoints have {n}",
            theta0.len(),
            direction.len()
        )));
    }
    // ‖d‖² through the very kernel that sums ⟨x, d⟩, so that x = d gives a coordinate of exactly 1.
    let dd = sum_chunks(n, |r| {
        dots_and_square::<f64, 1>(&direction[r.clone()], &ZEROS, &[direction], r.start).dots[0]
    });
    if !theta0.iter().all(|v| v.is_finite()) || direction.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument("start or end contains NaN or infinite values".into()));
    }
    if !dd.is_finite() {
        return Err(Error::InvalidArgument(
            "end - start is too long to project onto: its squared norm overflows float64".into(),
        ));
    }
    if dd == 0.0 {
        return Err(Error::InvalidArgument(
            "start and end are the same point: the line has no direction".into(),
        ));
    }
    match store.dtype() {
        Dtype::F32 => project_typed::<f32>(store, theta0, direction, dd),
        Dtype::F64 => project_typed::<f64>(store, theta0, direction, dd),
    }
}

/// Projects every checkpoint of `store` onto the affine subspace θ0 + D·c spanned by `directions`
/// (1 to MAX_DIRECTIONS of them, linearly independent; neither orthogonal nor normalised).
pub fn project_subspace(
    store: &TrajectoryStore,
    theta0: &[f64],
    directions: &[&[f64]],
) -> Result<Vec<SubspaceProjection>> {
    check_subspace(store.layout().numel(), theta0, directions)?;
    let factor = GramFactor::new(&gram(directions)?, directions.len())?;
    match store.dtype() {
        Dtype::F32 => subspace_typed::<f32>(store, theta0, directions, &factor),
        Dtype::F64 => subspace_typed::<f64>(store, theta0, directions, &factor),
    }
}

/// Refuses a count of directions outside 1..=MAX_DIRECTIONS, wrong lengths and non-finite values.
fn check_subspace(n: usize, theta0: &[f64], directions: &[&[f64]]) -> Result<()> {
    let k = directions.len();
    if !(1..=MAX_DIRECTIONS).contains(&k) {
        return Err(Error::InvalidArgument(format!(
            "got {k} directions; a subspace needs 1 to {MAX_DIRECTIONS} of them"
        )));
    }
    if theta0.len() != n {
        return Err(Error::Layout(format!(
            "the origin has {} elements but the checkpoints have {n}",
            theta0.len()
        )));
    }
    if let Some((j, d)) = directions.iter().enumerate().find(|(_, d)| d.len() != n) {
        return Err(Error::Layout(format!(
            "directions[{j}] has {} elements but the checkpoints have {n}",
            d.len()
        )));
    }
    if !theta0.iter().all(|v| v.is_finite()) {
        return Err(Error::InvalidArgument("the origin contains NaN or infinite values".into()));
    }
    if let Some(j) = directions.iter().position(|d| !d.iter().all(|v| v.is_finite())) {
        return Err(Error::InvalidArgument(format!("directions[{j}] contains NaN or infinite values")));
    }
    Ok(())
}

/// The Gram matrix G = DᵀD (rows of MAX_DIRECTIONS, the first k used), through the fused kernel;
/// refuses a zero direction and one whose squared norm overflows.
fn gram(directions: &[&[f64]]) -> Result<Vec<[f64; MAX_DIRECTIONS]>> {
    let (k, n) = (directions.len(), directions[0].len());
    let kernel = kernel::<f64>(k);
    let mut g = vec![[0.0; MAX_DIRECTIONS]; k];
    for (i, d) in directions.iter().enumerate() {
        let row = sum_chunks(n, |r| kernel(&d[r.clone()], &ZEROS, directions, r.start)).dots;
        // The upper triangle, mirrored: G is symmetric to the last bit.
        for j in i..k {
            (g[i][j], g[j][i]) = (row[j], row[j]);
        }
        if !g[i][i].is_finite() {
            return Err(Error::InvalidArgument(format!(
                "directions[{i}] is too long to project onto: its squared norm overflows float64"
            )));
        }
        if g[i][i] == 0.0 {
            return Err(Error::InvalidArgument(format!(
                "directions[{i}] is zero (or its squared norm underflows float64): it spans nothing"
            )));
        }
    }
    Ok(g)
}

/// The Cholesky factor of the Gram matrix scaled to a unit diagonal, Ĝ = S·G·S = L·Lᵀ with
/// S = diag(1/√G_jj), and trace(Ĝ⁻¹), which bounds Ĝ's condition number: 1/λ_min ≤ trace(Ĝ⁻¹) ≤ k/λ_min.
struct GramFactor {
    k: usize,
    scale: [f64; MAX_DIRECTIONS],
    l: [[f64; MAX_DIRECTIONS]; MAX_DIRECTIONS],
    inverse_trace: f64,
}

// Dense k × k linear algebra reads best with indices.
#[allow(clippy::needless_range_loop)]
impl GramFactor {
    /// Factors `g` (k × k); linearly dependent directions (λ_min/λ_max of Ĝ about 1e-12 or less) are an error.
    fn new(g: &[[f64; MAX_DIRECTIONS]], k: usize) -> Result<GramFactor> {
        let zero = [[0.0; MAX_DIRECTIONS]; MAX_DIRECTIONS];
        let mut f = GramFactor { k, scale: [0.0; MAX_DIRECTIONS], l: zero, inverse_trace: 0.0 };
        for i in 0..k {
            f.scale[i] = 1.0 / g[i][i].sqrt();
        }
        f.cholesky(g)?;
        // trace(Ĝ⁻¹) = ‖L⁻¹‖_F²: L⁻¹'s columns are forward solves of the unit vectors.
        f.inverse_trace = (0..k)
            .map(|j| {
                let mut e = [0.0; MAX_DIRECTIONS];
                e[j] = 1.0;
                f.forward(&mut e);
                e.iter().map(|v| v * v).sum::<f64>()
            })
            .sum();
        // λ_max(Ĝ) ≤ trace(Ĝ) = k, so 1/trace(Ĝ⁻¹) estimates λ_min/λ_max within a factor k.
        if f.inverse_trace.is_nan() || 1.0 / f.inverse_trace < DEPENDENCE_RTOL {
            return Err(dependent(f.inverse_trace));
        }
        Ok(f)
    }

    /// L with Ĝ = S·g·S = L·Lᵀ; a pivot that is not positive means dependent directions.
    fn cholesky(&mut self, g: &[[f64; MAX_DIRECTIONS]]) -> Result<()> {
        let (k, s) = (self.k, self.scale);
        for j in 0..k {
            let pivot = g[j][j] * s[j] * s[j] - (0..j).map(|m| self.l[j][m].powi(2)).sum::<f64>();
            if pivot.is_nan() || pivot <= 0.0 {
                return Err(dependent(f64::INFINITY));
            }
            self.l[j][j] = pivot.sqrt();
            for i in j + 1..k {
                let dot = (0..j).map(|m| self.l[i][m] * self.l[j][m]).sum::<f64>();
                self.l[i][j] = (g[i][j] * s[i] * s[j] - dot) / self.l[j][j];
            }
        }
        Ok(())
    }

    /// y ← L⁻¹·y (the first k entries).
    fn forward(&self, y: &mut [f64; MAX_DIRECTIONS]) {
        for i in 0..self.k {
            y[i] = (y[i] - (0..i).map(|m| self.l[i][m] * y[m]).sum::<f64>()) / self.l[i][i];
        }
    }

    /// (c = G⁻¹·g, cᵀg) for the sums g = Dᵀx; cᵀg = ‖L⁻¹·S·g‖² = ‖P x‖², never negative.
    fn solve(&self, g: &[f64; MAX_DIRECTIONS]) -> ([f64; MAX_DIRECTIONS], f64) {
        let mut y = [0.0; MAX_DIRECTIONS];
        for i in 0..self.k {
            y[i] = g[i] * self.scale[i];
        }
        self.forward(&mut y);
        let projected = y[..self.k].iter().map(|v| v * v).sum::<f64>();
        // Back substitution: Lᵀ·ĉ = y, then c = S·ĉ.
        for i in (0..self.k).rev() {
            y[i] = (y[i] - (i + 1..self.k).map(|m| self.l[m][i] * y[m]).sum::<f64>()) / self.l[i][i];
        }
        for i in 0..self.k {
            y[i] *= self.scale[i];
        }
        (y, projected)
    }
}

fn dependent(inverse_trace: f64) -> Error {
    Error::InvalidArgument(format!(
        "the directions are parallel (linearly dependent): their Gram matrix is singular (smallest over \
         largest eigenvalue about {:.1e}, below {DEPENDENCE_RTOL:.0e}); drop or replace the redundant direction",
        1.0 / inverse_trace
    ))
}

fn subspace_typed<T: Element>(
    store: &TrajectoryStore,
    theta0: &[f64],
    dirs: &[&[f64]],
    factor: &GramFactor,
) -> Result<Vec<SubspaceProjection>> {
    let k = dirs.len();
    // The error of ‖x‖² − cᵀg grows with Ĝ's condition number (≤ k·trace(Ĝ⁻¹); trace(Ĝ⁻¹) = k when orthogonal).
    let ratio = CANCELLATION_RATIO * factor.inverse_trace / k as f64;
    stream::<T, _>(store, theta0, dirs, |ck, sums, buf| {
        let (c, projected) = factor.solve(&sums.dots);
        let mut coords = c[..k].to_vec();
        if !(sums.finite() && coords.iter().all(|v| v.is_finite())) {
            return Ok(SubspaceProjection {
                coords: vec![f64::NAN; k],
                residual: f64::NAN,
                displacement: f64::NAN,
            });
        }
        let mut r2 = sums.sq - projected;
        if r2 < ratio * sums.sq {
            // One step of iterative refinement on r = x − D·c: c += G⁻¹Dᵀr, and ‖r‖² − ‖P r‖²
            // now cancels at the scale of ‖r‖ (tiny), not of ‖x‖.
            let direct = direct_sums(store, ck, theta0, dirs, &coords, buf)?;
            let (dc, projected) = factor.solve(&direct.dots);
            coords.iter_mut().zip(dc).for_each(|(c, d)| *c += d);
            r2 = direct.sq - projected;
        }
        Ok(SubspaceProjection { coords, residual: residual_from_square(r2), displacement: sums.sq.sqrt() })
    })
}

/// Sums `f` over CHUNK-sized ranges of 0..n in parallel, combining in index order.
fn sum_chunks<S: Send + std::iter::Sum>(n: usize, f: impl Fn(std::ops::Range<usize>) -> S + Sync) -> S {
    let parts: Vec<S> =
        (0..n.div_ceil(CHUNK)).into_par_iter().map(|c| f(c * CHUNK..((c + 1) * CHUNK).min(n))).collect();
    parts.into_iter().sum()
}

fn project_typed<T: Element>(
    store: &TrajectoryStore,
    theta0: &[f64],
    direction: &[f64],
    dd: f64,
) -> Result<Vec<PointProjection>> {
    stream::<T, _>(store, theta0, &[direction], |ck, sums, buf| {
        let (dot, sq) = (sums.dots[0], sums.sq);
        if !(dot.is_finite() && sq.is_finite()) {
            return Ok(PointProjection { coordinate: f64::NAN, residual: f64::NAN, displacement: f64::NAN });
        }
        let coordinate = dot / dd;
        let mut r2 = sq - dot * dot / dd;
        if r2 < CANCELLATION_RATIO * sq {
            r2 = direct_sums(store, ck, theta0, &[direction], &[coordinate], buf)?.sq;
        }
        Ok(PointProjection { coordinate, residual: residual_from_square(r2), displacement: sq.sqrt() })
    })
}

/// √r² with NaN kept: NaN must never become "on the line" (f64::max drops NaN).
fn residual_from_square(r2: f64) -> f64 {
    if r2.is_nan() {
        f64::NAN
    } else {
        r2.max(0.0).sqrt()
    }
}

/// The streaming driver shared by the line and the subspace: reads the checkpoints in groups, one
/// segment of every checkpoint of a group per step ([`for_each_step`]), runs the fused pass on each
/// step and, once a group is read whole and checked against its CRCs, calls
/// `point(checkpoint, sums, buffer)` for its checkpoints in order.
fn stream<T: Element, P>(
    store: &TrajectoryStore,
    theta0: &[f64],
    dirs: &[&[f64]],
    mut point: impl FnMut(usize, &Sums, &mut Vec<T>) -> Result<P>,
) -> Result<Vec<P>> {
    let n = theta0.len();
    let segment = SEGMENT.min(n).max(1);
    let group = (GROUP_BYTES / (segment * std::mem::size_of::<T>())).clamp(1, 4096);
    let steps: Vec<Step> = (0..store.len())
        .step_by(group)
        .flat_map(|first| {
            let ckpts = first..(first + group).min(store.len());
            (0..n).step_by(segment).map(move |offset| Step {
                ckpts: ckpts.clone(),
                offset,
                len: segment.min(n - offset),
            })
        })
        .collect();
    let kernel = kernel::<T>(dirs.len());
    let (mut out, mut scratch) = (Vec::with_capacity(store.len()), Vec::new());
    let (mut totals, mut checks) = (Vec::new(), Vec::new());
    for_each_step(store, &steps, |step, segs| {
        if step.offset == 0 {
            totals = vec![Sums::ZERO; step.ckpts.len()];
            checks = step.ckpts.clone().map(|ck| store.begin_check(ck)).collect::<Result<_>>()?;
        }
        fused_sums(segs, (theta0, dirs, step.offset), kernel, &mut totals, &mut checks);
        if step.offset + step.len == n {
            std::mem::take(&mut checks).into_iter().try_for_each(|check| store.finish_check(check))?;
            for (ck, s) in step.ckpts.clone().zip(&totals) {
                out.push(point(ck, s, &mut scratch)?);
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// One read step: values `offset..offset+len` of each checkpoint in `ckpts`.
struct Step {
    ckpts: std::ops::Range<usize>,
    offset: usize,
    len: usize,
}

/// Adds (⟨x_t, d_j⟩ for each direction, ‖x_t‖²) over one step's segments (θ0 and the directions
/// from `offset`) to `totals`, and the segments to their checkpoints' CRC `checks`.
fn fused_sums<T: Element>(
    segs: &[&[T]],
    (theta0, dirs, offset): (&[f64], &[&[f64]], usize),
    kernel: Kernel<T>,
    totals: &mut [Sums],
    checks: &mut [RecordCheck],
) {
    let len = segs.first().map_or(0, |s| s.len());
    let chunks = len.div_ceil(CHUNK);
    // Chunk-major task order: neighbouring tasks share the same slice of θ0 and the directions in cache.
    let sums = || -> Vec<Sums> {
        (0..chunks * segs.len())
            .into_par_iter()
            .map(|task| {
                let (c, g) = (task / segs.len(), task % segs.len());
                let r = c * CHUNK..((c + 1) * CHUNK).min(len);
                kernel(&segs[g][r.clone()], &theta0[offset + r.start..], dirs, offset + r.start)
            })
            .collect()
    };
    let crcs = || checks.par_iter_mut().zip(segs).for_each(|(check, seg)| check.update(seg));
    let (parts, ()) = rayon::join(sums, crcs);
    for (task, part) in parts.into_iter().enumerate() {
        totals[task % segs.len()] += part;
    }
}

/// Calls `step(step, segments)` for each of `steps` in order, with the values of that step. A
/// memory-backed store lends its values; a file-backed one is read by a second thread one step
/// ahead into a second set of buffers (reused throughout), so the disk works while `step` sums: a
/// read that waits for the sums leaves the disk idle for their time.
fn for_each_step<T: Element>(
    store: &TrajectoryStore,
    steps: &[Step],
    mut step: impl FnMut(&Step, &[&[T]]) -> Result<()>,
) -> Result<()> {
    let read = |s: &Step, set: &mut Vec<Vec<T>>| set_segments(store, s, set).map(|_| ());
    if store.path().is_none() {
        let mut set = Vec::new();
        for s in steps {
            let segs = set_segments(store, s, &mut set)?;
            step(s, &segs)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<Vec<Vec<T>>>>(1);
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<Vec<T>>>();
        (0..2).for_each(|_| drop(free_tx.send(Vec::new())));
        scope.spawn(move || {
            for (i, s) in steps.iter().enumerate() {
                // The step after this one is asked of the disk now (a hint, not a wait): the kernel
                // reads it while this one is copied out, so the disk always has a request queued.
                if let Some(next) = steps.get(i + 1) {
                    next.ckpts.clone().for_each(|ck| store.prefetch(ck, next.offset, next.len));
                }
                let Ok(mut set) = free_rx.recv() else { return };
                let done = read(s, &mut set);
                let failed = done.is_err();
                if full_tx.send(done.map(|()| set)).is_err() || failed {
                    return;
                }
            }
        });
        // Returning (also early, on an error) drops the channels' ends here, which ends the reader.
        for s in steps {
            let stopped = |_| Error::InvalidArgument("the trajectory reader stopped unexpectedly".into());
            let set = full_rx.recv().map_err(stopped)??;
            step(s, &set[..s.ckpts.len()].iter().map(|b| b.as_slice()).collect::<Vec<_>>())?;
            let _ = free_tx.send(set);
        }
        Ok(())
    })
}

/// The segments of step `s` from a memory-backed store (borrowed), or read into `set`.
fn set_segments<'a, T: Element>(
    store: &'a TrajectoryStore,
    s: &Step,
    set: &'a mut Vec<Vec<T>>,
) -> Result<Vec<&'a [T]>> {
    set.resize(s.ckpts.len(), Vec::new());
    set.iter_mut()
        .zip(s.ckpts.clone())
        .map(|(buf, ck)| store.segment::<T>(ck, s.offset, s.len, buf))
        .collect()
}

/// For checkpoint `ck`, with r = x − Σ_j c_j·d_j computed directly (the exact second pass): ⟨r, d_j⟩
/// for each direction and ‖r‖².
fn direct_sums<T: Element>(
    store: &TrajectoryStore,
    ck: usize,
    theta0: &[f64],
    dirs: &[&[f64]],
    coords: &[f64],
    buf: &mut Vec<T>,
) -> Result<Sums> {
    let n = theta0.len();
    let segment = SEGMENT.min(n).max(1);
    let mut total = Sums::ZERO;
    let mut check = store.begin_check(ck)?;
    for offset in (0..n).step_by(segment) {
        let len = segment.min(n - offset);
        let seg = store.segment::<T>(ck, offset, len, buf)?;
        check.update(seg);
        total += sum_chunks(len, |r| {
            let at = offset + r.start;
            let (x, t0) = (&seg[r.clone()], &theta0[at..at + r.len()]);
            let add = |mut s: Sums, (i, (x, t)): (usize, (&T, &f64))| {
                let v = dirs.iter().zip(coords).fold(x.to_f64() - t, |v, (d, c)| v - c * d[at + i]);
                s.dots.iter_mut().zip(dirs).for_each(|(dot, d)| *dot += v * d[at + i]);
                s.sq += v.powi(2);
                s
            };
            x.iter().zip(t0).enumerate().fold(Sums::ZERO, add)
        });
    }
    store.finish_check(check)?;
    Ok(total)
}

/// The fused kernel for `k` directions (1 ≤ k ≤ MAX_DIRECTIONS, checked by the callers).
type Kernel<T> = fn(&[T], &[f64], &[&[f64]], usize) -> Sums;

fn kernel<T: Element>(k: usize) -> Kernel<T> {
    match k {
        1 => dots_and_square::<T, 1>,
        2 => dots_and_square::<T, 2>,
        3 => dots_and_square::<T, 3>,
        4 => dots_and_square::<T, 4>,
        5 => dots_and_square::<T, 5>,
        6 => dots_and_square::<T, 6>,
        7 => dots_and_square::<T, 7>,
        _ => dots_and_square::<T, MAX_DIRECTIONS>,
    }
}

#[allow(clippy::needless_range_loop)] // K directions × 4 lanes: indices keep the lanes visible.
/// (Σ(x−t)·d_j for each of the K directions, Σ(x−t)²), with four independent accumulators each
/// (vectorises; pairwise-like accuracy). `x` pairs with `t0[..x.len()]` and `dirs[j][at..]`.
fn dots_and_square<T: Element, const K: usize>(x: &[T], t0: &[f64], dirs: &[&[f64]], at: usize) -> Sums {
    let n = x.len();
    let t0 = &t0[..n];
    let d: [&[f64]; K] = std::array::from_fn(|j| &dirs[j][at..at + n]);
    let mut dot = [[0.0f64; 4]; K];
    let mut sq = [0.0f64; 4];
    let body = n - n % 4;
    for i in (0..body).step_by(4) {
        for l in 0..4 {
            let v = x[i + l].to_f64() - t0[i + l];
            for j in 0..K {
                dot[j][l] += v * d[j][i + l];
            }
            sq[l] += v * v;
        }
    }
    for i in body..n {
        let v = x[i].to_f64() - t0[i];
        for j in 0..K {
            dot[j][0] += v * d[j][i];
        }
        sq[0] += v * v;
    }
    let mut sums = Sums::ZERO;
    for j in 0..K {
        sums.dots[j] = (dot[j][0] + dot[j][1]) + (dot[j][2] + dot[j][3]);
    }
    sums.sq = (sq[0] + sq[1]) + (sq[2] + sq[3]);
    sums
}

/// Path length, maximum residual and explained fraction; `direction_norm` is ‖d‖.
/// All three are NaN when any point is not finite (a diverged checkpoint): never a plausible number.
pub fn summarize(points: &[PointProjection], direction_norm: f64) -> Summary {
    let finite = |p: &PointProjection| {
        p.coordinate.is_finite() && p.residual.is_finite() && p.displacement.is_finite()
    };
    if !points.iter().all(finite) {
        return Summary { path_length: f64::NAN, max_residual: f64::NAN, explained: f64::NAN };
    }
    let path_length =
        // A fold from +0.0: `sum` of no steps (one checkpoint) would start from, and give, -0.0.
        points.windows(2).map(|w| (w[1].coordinate - w[0].coordinate).abs()).fold(0.0, |a, b| a + b) * direction_norm;
    let max_residual = points.iter().map(|p| p.residual).fold(0.0, f64::max);
    let along: f64 = points.iter().map(|p| (p.coordinate * direction_norm).powi(2)).sum();
    let total: f64 = points.iter().map(|p| p.displacement.powi(2)).sum();
    let explained = if total > 0.0 { along / total } else { 1.0 };
    Summary { path_length, max_residual, explained }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flat::Layout;
    use crate::trajectory::Checkpoint;

    /// A deterministic pseudo-random sequence (splitmix64) mapped to [-1, 1).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f64], t0: &[f64], d: &[f64]) -> (f64, f64) {
        let dd: f64 = d.iter().map(|v| v * v).sum();
        let a = x.iter().zip(t0).zip(d).map(|((x, t), d)| (x - t) * d).sum::<f64>() / dd;
        let r2: f64 = x.iter().zip(t0).zip(d).map(|((x, t), d)| (x - t - a * d).powi(2)).sum();
        (a, r2.sqrt())
    }

    #[test]
    fn matches_the_two_pass_formula_including_points_on_the_line() {
        let n = 3 * CHUNK + 17;
        let layout = Layout::new(vec!["p".into()], vec![vec![n as i64]]).unwrap();
        let mut store = TrajectoryStore::in_memory(layout, Dtype::F64).unwrap();
        let (t0, d) = (noise(1, n), noise(2, n));
        let mut checkpoints: Vec<Vec<f64>> = (0..5).map(|s| noise(10 + s, n)).collect();
        // A point exactly on the line, and one a hair off it: the cancellation cases.
        checkpoints.push(t0.iter().zip(&d).map(|(t, d)| t + 0.7 * d).collect());
        let hair = noise(99, n);
        checkpoints.push(t0.iter().zip(&d).zip(&hair).map(|((t, d), h)| t + 0.3 * d + 1e-7 * h).collect());
        for (i, c) in checkpoints.iter().enumerate() {
            store.append(i as i64, Checkpoint::F64(c.clone())).unwrap();
        }
        let got = project(&store, &t0, &d).unwrap();
        for (c, p) in checkpoints.iter().zip(&got) {
            let (a, r) = reference(c, &t0, &d);
            // Relative 1e-9, plus rounding noise of the data itself (~1e-15 of the displacement)
            // for the point that lies on the line, where r is that noise.
            let noise = 1e-14 * p.displacement;
            assert!((p.coordinate - a).abs() <= 1e-12 * a.abs(), "{} vs {a}", p.coordinate);
            assert!((p.residual - r).abs() <= 1e-9 * r + noise, "{} vs {r}", p.residual);
        }
    }

    #[test]
    fn zero_direction_and_wrong_lengths_are_errors() {
        let layout = Layout::new(vec!["p".into()], vec![vec![4]]).unwrap();
        let store = TrajectoryStore::in_memory(layout, Dtype::F32).unwrap();
        assert!(project(&store, &[0.0; 4], &[0.0; 4]).is_err());
        assert!(project(&store, &[0.0; 3], &[1.0; 3]).is_err());
        assert!(project(&store, &[f64::NAN; 4], &[1.0; 4]).is_err());
    }

    #[test]
    fn summary_follows_the_definitions() {
        let p = |a: f64, r: f64| PointProjection {
            coordinate: a,
            residual: r,
            displacement: (a * a * 4.0 + r * r).sqrt(),
        };
        let pts = [p(0.0, 0.0), p(0.5, 1.0), p(0.25, 2.0), p(1.0, 0.0)];
        let s = summarize(&pts, 2.0);
        assert!((s.path_length - (0.5 + 0.25 + 0.75) * 2.0).abs() < 1e-15);
        assert_eq!(s.max_residual, 2.0);
        let along = 4.0 * (0.25 + 0.0625 + 1.0);
        assert!((s.explained - along / (along + 5.0)).abs() < 1e-15);
    }

    #[test]
    fn non_finite_checkpoints_are_nan_and_so_is_the_summary() {
        let layout = Layout::new(vec!["p".into()], vec![vec![3]]).unwrap();
        let mut store = TrajectoryStore::in_memory(layout, Dtype::F64).unwrap();
        for (i, v) in [[0.0, 0.0, 0.0], [0.5, f64::NAN, 0.0], [0.5, 0.0, f64::INFINITY], [1.0, 0.0, 0.0]]
            .into_iter()
            .enumerate()
        {
            store.append(i as i64, Checkpoint::F64(v.to_vec())).unwrap();
        }
        let got = project(&store, &[0.0; 3], &[1.0, 0.0, 0.0]).unwrap();
        for p in &got[1..3] {
            assert!(p.coordinate.is_nan() && p.residual.is_nan() && p.displacement.is_nan(), "{p:?}");
        }
        assert_eq!((got[3].coordinate, got[3].residual, got[3].displacement), (1.0, 0.0, 1.0));
        let s = summarize(&got, 1.0);
        assert!(s.path_length.is_nan() && s.max_residual.is_nan() && s.explained.is_nan(), "{s:?}");
        let finite = summarize(&[got[0], got[3]], 1.0);
        assert_eq!((finite.path_length, finite.max_residual, finite.explained), (1.0, 0.0, 1.0));
    }

    #[allow(clippy::needless_range_loop)]
    /// Modified Gram–Schmidt (twice) of `dirs`, then c = G⁻¹Dᵀx by Gaussian elimination with
    /// partial pivoting and r = ‖x − QQᵀx‖: an independent float64 reference.
    fn subspace_reference(x: &[f64], t0: &[f64], dirs: &[Vec<f64>]) -> (Vec<f64>, f64) {
        let v: Vec<f64> = x.iter().zip(t0).map(|(x, t)| x - t).collect();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
        let k = dirs.len();
        let mut q: Vec<Vec<f64>> = Vec::new();
        for d in dirs {
            let mut u = d.clone();
            for _ in 0..2 {
                for b in &q {
                    let p = dot(&u, b);
                    u.iter_mut().zip(b).for_each(|(u, b)| *u -= p * b);
                }
            }
            let norm = dot(&u, &u).sqrt();
            q.push(u.iter().map(|u| u / norm).collect());
        }
        let mut off = v.clone();
        for b in &q {
            let p = dot(&off, b);
            off.iter_mut().zip(b).for_each(|(o, b)| *o -= p * b);
        }
        let mut a: Vec<Vec<f64>> = (0..k)
            .map(|i| (0..k).map(|j| dot(&dirs[i], &dirs[j])).chain([dot(&dirs[i], &v)]).collect())
            .collect();
        for c in 0..k {
            let p = (c..k).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            a.swap(c, p);
            for i in c + 1..k {
                let m = a[i][c] / a[c][c];
                for j in c..=k {
                    a[i][j] -= m * a[c][j];
                }
            }
        }
        let mut c = vec![0.0; k];
        for i in (0..k).rev() {
            c[i] = (a[i][k] - (i + 1..k).map(|j| a[i][j] * c[j]).sum::<f64>()) / a[i][i];
        }
        (c, dot(&off, &off).sqrt())
    }

    /// (store, the float64 values it holds, θ0, directions).
    type Case = (TrajectoryStore, Vec<Vec<f64>>, Vec<f64>, Vec<Vec<f64>>);

    /// A store of random checkpoints plus points on (and a hair off) θ0 + D·c.
    fn subspace_case(n: usize, dtype: Dtype, seed: u64, k: usize) -> Case {
        let layout = Layout::new(vec!["p".into()], vec![vec![n as i64]]).unwrap();
        let mut store = TrajectoryStore::in_memory(layout, dtype).unwrap();
        let t0 = noise(seed, n);
        // Non-orthogonal, unnormalised: each direction leans on the first.
        let base = noise(seed + 1, n);
        let dirs: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                noise(seed + 2 + j as u64, n)
                    .iter()
                    .zip(&base)
                    .map(|(v, b)| (j as f64 + 0.5) * (v + 0.8 * b))
                    .collect()
            })
            .collect();
        let mut points: Vec<Vec<f64>> = (0..4).map(|s| noise(seed + 50 + s, n)).collect();
        let on = |c: &[f64], h: f64| -> Vec<f64> {
            let hair = noise(seed + 99, n);
            (0..n).map(|i| t0[i] + (0..k).map(|j| c[j] * dirs[j][i]).sum::<f64>() + h * hair[i]).collect()
        };
        let coeffs: Vec<f64> = (0..k).map(|j| 0.7 - 0.4 * j as f64).collect();
        points.extend([on(&coeffs, 0.0), on(&coeffs, 1e-7)]);
        let mut stored = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let c = match dtype {
                Dtype::F32 => Checkpoint::F32(p.iter().map(|&v| v as f32).collect()),
                Dtype::F64 => Checkpoint::F64(p.clone()),
            };
            stored.push(match &c {
                Checkpoint::F32(v) => v.iter().map(|&v| v as f64).collect(),
                Checkpoint::F64(v) => v.clone(),
            });
            store.append(i as i64, c).unwrap();
        }
        (store, stored, t0, dirs)
    }

    #[test]
    fn subspace_matches_the_reference_including_points_on_the_plane() {
        for (k, dtype, seed) in
            [(2, Dtype::F64, 200), (2, Dtype::F32, 300), (3, Dtype::F64, 400), (8, Dtype::F64, 500)]
        {
            let n = 2 * CHUNK + 13;
            let (store, points, t0, dirs) = subspace_case(n, dtype, seed, k);
            let refs: Vec<&[f64]> = dirs.iter().map(|d| d.as_slice()).collect();
            let got = project_subspace(&store, &t0, &refs).unwrap();
            for (x, p) in points.iter().zip(&got) {
                let (c, r) = subspace_reference(x, &t0, &dirs);
                let disp = x.iter().zip(&t0).map(|(x, t)| (x - t).powi(2)).sum::<f64>().sqrt();
                assert!((p.displacement - disp).abs() <= 1e-12 * disp);
                // On the plane r is the data's own rounding noise (~1e-16 of the displacement).
                assert!((p.residual - r).abs() <= 1e-9 * r + 1e-14 * disp, "k={k}: {} vs {r}", p.residual);
                for (a, b) in p.coords.iter().zip(&c) {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-3), "k={k}: {a} vs {b}");
                }
            }
            // In float32 the stored point is rounded off the plane; in float64 it lies on it.
            assert!(dtype == Dtype::F32 || got[4].residual <= 1e-14 * got[4].displacement, "{:?}", got[4]);
        }
    }

    #[test]
    fn one_direction_agrees_with_the_line() {
        let (store, _, t0, dirs) = subspace_case(CHUNK + 5, Dtype::F32, 600, 1);
        let line = project(&store, &t0, &dirs[0]).unwrap();
        let sub = project_subspace(&store, &t0, &[&dirs[0]]).unwrap();
        for (l, s) in line.iter().zip(&sub) {
            assert!((l.coordinate - s.coords[0]).abs() <= 1e-14 * l.coordinate.abs(), "{l:?} {s:?}");
            assert!((l.residual - s.residual).abs() <= 1e-9 * l.residual + 1e-14 * l.displacement);
            assert_eq!(l.displacement, s.displacement);
        }
    }

    #[test]
    fn subspace_does_not_depend_on_the_thread_count() {
        let (store, _, t0, dirs) = subspace_case(5 * CHUNK + 3, Dtype::F64, 700, 3);
        let refs: Vec<&[f64]> = dirs.iter().map(|d| d.as_slice()).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| project_subspace(&store, &t0, &refs).unwrap())
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn subspace_refuses_bad_directions_with_messages() {
        let layout = Layout::new(vec!["p".into()], vec![vec![4]]).unwrap();
        let store = TrajectoryStore::in_memory(layout, Dtype::F64).unwrap();
        let err = |t0: &[f64], dirs: &[&[f64]]| project_subspace(&store, t0, dirs).unwrap_err().to_string();
        let (a, b) = ([1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.0]);
        assert!(err(&[0.0; 4], &[]).contains("got 0 directions"));
        assert!(err(&[0.0; 4], &[&a[..]; 9]).contains("1 to 8"));
        assert!(err(&[0.0; 3], &[&a]).contains("origin has 3 elements"));
        assert!(err(&[0.0; 4], &[&a, &[1.0; 3]]).contains("directions[1] has 3"));
        assert!(err(&[f64::NAN; 4], &[&a]).contains("origin contains NaN"));
        assert!(err(&[0.0; 4], &[&a, &[0.0, f64::INFINITY, 0.0, 0.0]]).contains("directions[1] contains NaN"));
        assert!(err(&[0.0; 4], &[&a, &[0.0; 4]]).contains("directions[1] is zero"));
        assert!(err(&[0.0; 4], &[&[1e200; 4]]).contains("overflows"));
        let twice = a.map(|v| -2.5 * v);
        assert!(err(&[0.0; 4], &[&a, &twice]).contains("parallel (linearly dependent)"));
        let sum: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a - 3.0 * b).collect();
        assert!(err(&[0.0; 4], &[&a, &b, &sum]).contains("parallel"));
        let nearly: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a + 1e-9 * b).collect();
        assert!(err(&[0.0; 4], &[&a, &nearly]).contains("parallel"));
        let apart: Vec<f64> = a.iter().zip(&b).map(|(a, b)| a + 1e-5 * b).collect();
        assert!(project_subspace(&store, &[0.0; 4], &[&a, &apart]).is_ok());
    }

    #[test]
    fn subspace_gives_nan_for_non_finite_checkpoints() {
        let layout = Layout::new(vec!["p".into()], vec![vec![3]]).unwrap();
        let mut store = TrajectoryStore::in_memory(layout, Dtype::F64).unwrap();
        for (i, v) in [[0.5, f64::NAN, 0.0], [1.0, 2.0, 3.0]].into_iter().enumerate() {
            store.append(i as i64, Checkpoint::F64(v.to_vec())).unwrap();
        }
        let got = project_subspace(&store, &[0.0; 3], &[&[1.0, 0.0, 0.0], &[1.0, 1.0, 0.0]]).unwrap();
        assert!(
            got[0].coords.iter().all(|c| c.is_nan())
                && got[0].residual.is_nan()
                && got[0].displacement.is_nan()
        );
        assert_eq!((got[1].coords.clone(), got[1].residual), (vec![-1.0, 2.0], 3.0));
    }
}
