//! Projection of a trajectory onto the line θ0 + α·d.
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

use crate::error::{Error, Result};
use crate::trajectory::{Dtype, Element, TrajectoryStore};
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
    let dd = sum_chunks(n, |r| dot_and_square(&direction[r.clone()], &ZEROS[..r.len()], &direction[r]).0);
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

/// Sums `f` over CHUNK-sized ranges of 0..n in parallel, combining in index order.
fn sum_chunks(n: usize, f: impl Fn(std::ops::Range<usize>) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> =
        (0..n.div_ceil(CHUNK)).into_par_iter().map(|c| f(c * CHUNK..((c + 1) * CHUNK).min(n))).collect();
    parts.iter().sum()
}

fn project_typed<T: Element>(
    store: &TrajectoryStore,
    theta0: &[f64],
    direction: &[f64],
    dd: f64,
) -> Result<Vec<PointProjection>> {
    let n = theta0.len();
    let segment = SEGMENT.min(n);
    let group = (GROUP_BYTES / (segment * std::mem::size_of::<T>())).clamp(1, 4096);
    let mut out = Vec::with_capacity(store.len());
    let mut bufs: Vec<Vec<T>> = vec![Vec::new(); group.min(store.len())];
    for first in (0..store.len()).step_by(group) {
        let ckpts: Vec<usize> = (first..(first + group).min(store.len())).collect();
        let sums = fused_sums(store, &ckpts, theta0, direction, segment, &mut bufs)?;
        for (&ck, &(dot, sq)) in ckpts.iter().zip(&sums) {
            if !(dot.is_finite() && sq.is_finite()) {
                out.push(PointProjection {
                    coordinate: f64::NAN,
                    residual: f64::NAN,
                    displacement: f64::NAN,
                });
                continue;
            }
            let coordinate = dot / dd;
            let mut r2 = sq - dot * dot / dd;
            if r2 < CANCELLATION_RATIO * sq {
                r2 = direct_residual_sq(store, ck, theta0, direction, coordinate, segment, &mut bufs[0])?;
            }
            // NaN must never become "on the line": f64::max drops NaN.
            let residual = if r2.is_nan() { f64::NAN } else { r2.max(0.0).sqrt() };
            out.push(PointProjection { coordinate, residual, displacement: sq.sqrt() });
        }
    }
    Ok(out)
}

/// (⟨x_t, d⟩, ‖x_t‖²) for each checkpoint in `ckpts`, reading `segment` elements at a time
/// and checking each checkpoint against its CRC.
fn fused_sums<T: Element>(
    store: &TrajectoryStore,
    ckpts: &[usize],
    theta0: &[f64],
    direction: &[f64],
    segment: usize,
    bufs: &mut [Vec<T>],
) -> Result<Vec<(f64, f64)>> {
    let n = theta0.len();
    let mut totals = vec![(0.0, 0.0); ckpts.len()];
    let mut checks = ckpts.iter().map(|&ck| store.begin_check(ck)).collect::<Result<Vec<_>>>()?;
    for offset in (0..n).step_by(segment) {
        let len = segment.min(n - offset);
        let segs = bufs
            .iter_mut()
            .zip(ckpts)
            .map(|(buf, &ck)| store.segment::<T>(ck, offset, len, buf))
            .collect::<Result<Vec<&[T]>>>()?;
        let (t0, d) = (&theta0[offset..offset + len], &direction[offset..offset + len]);
        let chunks = len.div_ceil(CHUNK);
        // Chunk-major task order: neighbouring tasks share the same slice of θ0 and d in cache.
        let sums = || -> Vec<(f64, f64)> {
            (0..chunks * segs.len())
                .into_par_iter()
                .map(|task| {
                    let (c, g) = (task / segs.len(), task % segs.len());
                    let r = c * CHUNK..((c + 1) * CHUNK).min(len);
                    dot_and_square(&segs[g][r.clone()], &t0[r.clone()], &d[r])
                })
                .collect()
        };
        let crcs = || checks.par_iter_mut().zip(&segs).for_each(|(check, seg)| check.update(seg));
        let (parts, ()) = rayon::join(sums, crcs);
        for (task, (dot, sq)) in parts.into_iter().enumerate() {
            let total = &mut totals[task % segs.len()];
            total.0 += dot;
            total.1 += sq;
        }
    }
    checks.into_iter().try_for_each(|check| store.finish_check(check))?;
    Ok(totals)
}

/// ‖x − a·d‖² for checkpoint `ck`, directly (the exact second pass).
fn direct_residual_sq<T: Element>(
    store: &TrajectoryStore,
    ck: usize,
    theta0: &[f64],
    direction: &[f64],
    coordinate: f64,
    segment: usize,
    buf: &mut Vec<T>,
) -> Result<f64> {
    let n = theta0.len();
    let mut total = 0.0;
    let mut check = store.begin_check(ck)?;
    for offset in (0..n).step_by(segment) {
        let len = segment.min(n - offset);
        let seg = store.segment::<T>(ck, offset, len, buf)?;
        check.update(seg);
        total += sum_chunks(len, |r| {
            let (x, t0, d) = (&seg[r.clone()], &theta0[offset..][r.clone()], &direction[offset..][r]);
            x.iter().zip(t0).zip(d).map(|((&x, &t), &d)| (x.to_f64() - t - coordinate * d).powi(2)).sum()
        });
    }
    store.finish_check(check)?;
    Ok(total)
}

/// (Σ(x−t)·d, Σ(x−t)²) with four independent accumulators (vectorises; pairwise-like accuracy).
fn dot_and_square<T: Element>(x: &[T], t0: &[f64], d: &[f64]) -> (f64, f64) {
    let mut dot = [0.0f64; 4];
    let mut sq = [0.0f64; 4];
    let (xc, t0c, dc) = (x.chunks_exact(4), t0.chunks_exact(4), d.chunks_exact(4));
    let (xr, t0r, dr) = (xc.remainder(), t0c.remainder(), dc.remainder());
    for ((x, t), d) in xc.zip(t0c).zip(dc) {
        for k in 0..4 {
            let v = x[k].to_f64() - t[k];
            dot[k] += v * d[k];
            sq[k] += v * v;
        }
    }
    for ((x, t), d) in xr.iter().zip(t0r).zip(dr) {
        let v = x.to_f64() - t;
        dot[0] += v * d;
        sq[0] += v * v;
    }
    ((dot[0] + dot[1]) + (dot[2] + dot[3]), (sq[0] + sq[1]) + (sq[2] + sq[3]))
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
}
