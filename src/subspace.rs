//! The one geometry of the package: the affine subspace θ(c) = θ0 + Σ_k c_k·d_k of parameter
//! space, with k = 1 (a line, d = θ1 − θ0) or k = 2 (a plane).
//!
//! Every engine takes its points from here: the generic native sweep and the module engine
//! write [`Subspace::write_point`] into a model, the MLP sweep cuts the subspace into per-layer
//! pieces ([`Subspace::slice`]) and its first-layer shortcut combines activations with
//! [`combine`], the module engine's input-layer cache combines z0 + Σ c_k·dz_k with a subspace of
//! activations. A point is always computed from θ0 and the directions directly (never by adding a
//! step repeatedly, which drifts), in the subspace's own precision (float64 for parameters), and
//! rounded once into its target. [`combine`] is the one expression that builds a point.

use crate::error::{Error, Result};
use crate::flat::{assign, check_finite, check_float_kind, check_vector, owned_copy};
use crate::pool::{for_each_chunk_mut, uses_openmp};
use std::ops::{Add, Mul};
use tch::{Device, Kind, Tensor};

/// Most directions a subspace may have.
pub const MAX_DIM: usize = 8;

/// `out[i] = cast(origin[i] + Σ_k c_k·d_k[i])`: the expression of a point, in `S` arithmetic,
/// terms added in order (a line is exactly `origin + c·d`).
#[inline(always)]
pub fn combine<S, O>(out: &mut [O], origin: &[S], terms: &[(&[S], S)], cast: impl Fn(S) -> O)
where
    S: Copy + Add<Output = S> + Mul<Output = S>,
{
    match terms {
        [] => out.iter_mut().zip(origin).for_each(|(o, &x)| *o = cast(x)),
        [(d, c)] => {
            for ((o, &x), &y) in out.iter_mut().zip(origin).zip(d.iter()) {
                *o = cast(x + *c * y);
            }
        }
        [(d1, c1), (d2, c2)] => {
            for (((o, &x), &y1), &y2) in out.iter_mut().zip(origin).zip(d1.iter()).zip(d2.iter()) {
                *o = cast(x + *c1 * y1 + *c2 * y2);
            }
        }
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = cast(terms.iter().fold(origin[i], |acc, (d, c)| acc + *c * d[i]));
            }
        }
    }
}

/// Checks a list of coordinates: at least one value, all finite (`what` names it, e.g. "alpha").
pub fn check_coordinates(values: &[f64], what: &str) -> Result<()> {
    if values.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the {what} grid is empty; pass at least one value, e.g. numpy.linspace(0, 1, 51)"
        )));
    }
    if let Some((i, a)) = values.iter().enumerate().find(|(_, a)| !a.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "{what}[{i}] = {a} is not finite; every {what} must be a finite real number"
        )));
    }
    Ok(())
}

/// Checks an α grid of a line: at least one value, all finite.
pub fn check_alphas(alphas: &[f64]) -> Result<()> {
    check_coordinates(alphas, "alpha")
}

/// An affine subspace θ0 + Σ c_k·d_k held on one device in one floating kind.
pub struct Subspace {
    origin: Tensor,
    directions: Vec<Tensor>,
    /// Whether fused fills run in parallel ([`crate::pool`]). Activations do only on libtorch's
    /// own OpenMP threads: their points are computed between libtorch ops, whose threads are still
    /// spinning then, and a second pool (rayon's) fights them (a fill took 4x as long); a
    /// one-thread pass there is as fast as libtorch's own add.
    parallel: bool,
}

impl Subspace {
    /// The subspace through `origin` spanned by `directions` (1 to [`MAX_DIM`]), held in `kind`.
    /// Vectors are copied (the origin may share memory with the tensors points are written into).
    pub fn new(origin: &Tensor, directions: &[Tensor], kind: Kind) -> Result<Self> {
        check_float_kind(kind, "the subspace's precision")?;
        if directions.is_empty() || directions.len() > MAX_DIM {
            return Err(Error::InvalidArgument(format!(
                "a subspace needs 1 to {MAX_DIM} directions, got {}",
                directions.len()
            )));
        }
        let n = origin.numel();
        check_vector(origin, n, "the origin")?;
        let _guard = tch::no_grad_guard();
        let origin = owned_copy(origin, kind)?;
        check_finite(&origin, "the origin")?;
        let directions = directions
            .iter()
            .enumerate()
            .map(|(k, d)| Self::direction(d, n, origin.device(), kind, k))
            .collect::<Result<Vec<_>>>()?;
        Ok(Subspace { origin, directions, parallel: true })
    }

    fn direction(d: &Tensor, n: usize, device: Device, kind: Kind, k: usize) -> Result<Tensor> {
        let what = format!("direction {k}");
        check_vector(d, n, &what)?;
        if d.device() != device {
            return Err(Error::InvalidArgument(format!(
                "the origin is on {device:?} but {what} is on {:?}",
                d.device()
            )));
        }
        let d = owned_copy(d, kind)?;
        check_finite(&d, &what)?;
        Ok(d)
    }

    /// The line through `theta0` (α = 0) and `theta1` (α = 1): direction θ1 − θ0 taken in `kind`.
    pub fn line(theta0: &Tensor, theta1: &Tensor, kind: Kind) -> Result<Self> {
        check_float_kind(kind, "the line's precision")?;
        check_vector(theta0, theta0.numel(), "start")?;
        check_vector(theta1, theta0.numel(), "end")?;
        if theta0.device() != theta1.device() {
            return Err(Error::InvalidArgument(format!(
                "start is on {:?} but end is on {:?}",
                theta0.device(),
                theta1.device()
            )));
        }
        let _guard = tch::no_grad_guard();
        let start = owned_copy(theta0, kind)?;
        let end = theta1.f_detach()?.f_to_kind(kind)?;
        check_finite(&start, "start")?;
        check_finite(&end, "end")?;
        let direction = end.f_sub(&start)?;
        check_finite(&direction, "end - start (the direction overflows)")?;
        Ok(Subspace { origin: start, directions: vec![direction], parallel: true })
    }

    /// The subspace of activations `origin + Σ c_k·directions[k]` (e.g. a layer's outputs z0 and
    /// their slopes dz_k), sharing their memory: no copy, no checks beyond the shapes. For tensors
    /// that nothing writes while the subspace is in use.
    pub fn of_activations(origin: &Tensor, directions: &[Tensor]) -> Result<Subspace> {
        if directions.iter().any(|d| d.size() != origin.size()) {
            return Err(Error::InvalidArgument(
                "the activations' directions differ in shape from the origin".into(),
            ));
        }
        let view = |t: &Tensor| t.shallow_clone();
        Ok(Subspace {
            origin: view(origin),
            directions: directions.iter().map(view).collect(),
            parallel: false,
        })
    }

    /// Number of elements of a point.
    pub fn numel(&self) -> usize {
        self.origin.numel()
    }

    /// Number of directions (1 for a line, 2 for a plane).
    pub fn dim(&self) -> usize {
        self.directions.len()
    }

    /// The device the subspace lives on.
    pub fn device(&self) -> Device {
        self.origin.device()
    }

    /// The origin θ0.
    pub fn origin(&self) -> &Tensor {
        &self.origin
    }

    /// The directions d_k.
    pub fn directions(&self) -> &[Tensor] {
        &self.directions
    }

    /// Fails unless `coords` has one finite value per direction.
    pub fn check_point(&self, coords: &[f64]) -> Result<()> {
        if coords.len() != self.dim() {
            return Err(Error::InvalidArgument(format!(
                "a point of this subspace has {} coordinates, got {}",
                self.dim(),
                coords.len()
            )));
        }
        check_coordinates(coords, "coordinate")
    }

    /// The same points with coordinates of moderate size: where some point's |c_k| exceeds `limit`
    /// (e.g. c = 1e39 along a direction of 1e-300), d_k becomes s_k·d_k and c_k becomes c_k / s_k,
    /// with s_k a power of two (both exact, so θ(c) is the same point). Returns the rescaled
    /// subspace and the scales s_k, or None when every coordinate is within `limit` already.
    /// Kernels that take coordinates in float32 (the MLP's first layer) need this.
    pub fn with_moderate_coordinates(
        &self,
        points: &[&[Vec<f64>]],
        limit: f64,
    ) -> Result<Option<(Subspace, Vec<f64>)>> {
        let mut peak = vec![0f64; self.dim()];
        for point in points.iter().flat_map(|p| p.iter()) {
            for (m, c) in peak.iter_mut().zip(point) {
                *m = m.max(c.abs());
            }
        }
        if peak.iter().all(|&m| m <= limit) {
            return Ok(None);
        }
        // 2^e with m < 2^e: c / s lies in (-1, 1); s = 1 where the coordinates are moderate already.
        let scales: Vec<f64> =
            peak.iter().map(|&m| if m <= limit { 1.0 } else { 2f64.powi(exponent_above(m)) }).collect();
        let _guard = tch::no_grad_guard();
        let directions = self
            .directions
            .iter()
            .zip(&scales)
            .map(|(d, &s)| Ok(d.f_mul_scalar(s)?))
            .collect::<Result<Vec<_>>>()?;
        for (k, d) in directions.iter().enumerate() {
            check_finite(d, &format!("direction {k} scaled for coordinates beyond float32"))?;
        }
        let origin = self.origin.shallow_clone();
        Ok(Some((Subspace { origin, directions, parallel: self.parallel }, scales)))
    }

    /// The elements `offset..offset + len` of the subspace, shaped `shape` (views, no copy): the
    /// subspace of one tensor of a flat layout.
    pub fn slice(&self, offset: usize, len: usize, shape: &[i64]) -> Result<Subspace> {
        if offset.checked_add(len).is_none_or(|end| end > self.numel()) {
            return Err(Error::Layout(format!(
                "elements {offset}..{offset}+{len} lie outside a subspace of {} elements",
                self.numel()
            )));
        }
        let cut =
            |v: &Tensor| -> Result<Tensor> { Ok(v.f_narrow(0, offset as i64, len as i64)?.f_view(shape)?) };
        Ok(Subspace {
            parallel: self.parallel,
            origin: cut(&self.origin)?,
            directions: self.directions.iter().map(cut).collect::<Result<_>>()?,
        })
    }

    /// θ(c) as a new tensor of the subspace's kind and shape.
    pub fn point(&self, coords: &[f64]) -> Result<Tensor> {
        self.check_point(coords)?;
        let out = self.origin.f_empty_like()?;
        self.write_point(&mut [out.shallow_clone()], coords)?;
        Ok(out)
    }

    /// Writes θ(c) into `tensors` in place, each tensor taking its piece of the flat point in its
    /// own dtype (see [`crate::flat::assign`]). Contiguous float32/float64/bfloat16 CPU targets of a float32
    /// or float64 CPU subspace take one fused pass ([`combine`], rounded once); others go through
    /// tensor ops in the subspace's kind.
    pub fn write_point(&self, tensors: &mut [Tensor], coords: &[f64]) -> Result<()> {
        self.check_point(coords)?;
        let _guard = tch::no_grad_guard();
        if self.write_direct(tensors, coords)? {
            return Ok(());
        }
        let mut point = self.origin.f_reshape([-1])?.f_detach_copy()?;
        for (d, &c) in self.directions.iter().zip(coords) {
            point = point.f_add(&d.f_reshape([-1])?.f_mul_scalar(c)?)?;
        }
        assign(tensors, &point)
    }

    /// The fused CPU path of [`write_point`](Self::write_point); false when it does not apply.
    fn write_direct(&self, tensors: &mut [Tensor], coords: &[f64]) -> Result<bool> {
        let cpu_contiguous = |t: &Tensor| t.device() == Device::Cpu && t.is_contiguous();
        let storage = |t: &Tensor| matches!(t.f_kind(), Ok(Kind::Float | Kind::Double));
        let target = |t: &Tensor| matches!(t.f_kind(), Ok(Kind::Float | Kind::Double | Kind::BFloat16));
        let own = std::iter::once(&self.origin).chain(&self.directions);
        let own_ok = own.clone().all(|t| cpu_contiguous(t) && t.f_kind().ok() == self.origin.f_kind().ok());
        let sizes_ok = tensors.iter().map(Tensor::numel).sum::<usize>() == self.numel();
        if !(own_ok
            && storage(&self.origin)
            && sizes_ok
            && tensors.iter().all(|t| cpu_contiguous(t) && target(t)))
        {
            return Ok(false);
        }
        match self.origin.f_kind()? {
            Kind::Double => self.fill_all::<f64>(tensors, coords)?,
            _ => self.fill_all::<f32>(tensors, coords)?,
        }
        Ok(true)
    }

    fn fill_all<S: Element>(&self, tensors: &[Tensor], coords: &[f64]) -> Result<()> {
        // SAFETY: origin and directions are contiguous CPU tensors of element type S (checked by
        // write_direct) owned by the subspace, each of `numel` elements.
        let origin = unsafe { as_slice::<S>(&self.origin) };
        let dirs: Vec<&[S]> = self.directions.iter().map(|d| unsafe { as_slice::<S>(d) }).collect();
        let cs: Vec<S> = coords.iter().map(|&c| S::from_f64(c)).collect();
        let mut offset = 0;
        for t in tensors {
            let n = t.numel();
            let terms: Vec<(&[S], S)> =
                dirs.iter().zip(&cs).map(|(d, &c)| (&d[offset..offset + n], c)).collect();
            let origin = &origin[offset..offset + n];
            // SAFETY: `t` is a contiguous CPU tensor of this element type with `n` elements; like
            // `copy_`, this writes its storage in place.
            match t.f_kind()? {
                Kind::Float => {
                    fill(unsafe { as_slice_mut::<f32>(t) }, origin, &terms, self.parallel, |v: S| v.to_f32())
                }
                Kind::BFloat16 => {
                    fill(unsafe { as_slice_mut::<u16>(t) }, origin, &terms, self.parallel, |v: S| {
                        bf16_bits(v.to_f32())
                    })
                }
                _ => {
                    fill(unsafe { as_slice_mut::<f64>(t) }, origin, &terms, self.parallel, |v: S| v.to_f64())
                }
            }
            offset += n;
        }
        Ok(())
    }
}

/// The storage element of a subspace: float32 or float64.
pub trait Element: Copy + Send + Sync + Add<Output = Self> + Mul<Output = Self> {
    fn from_f64(v: f64) -> Self;
    fn to_f32(self) -> f32;
    fn to_f64(self) -> f64;
}

impl Element for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Element for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// The bfloat16 nearest to `v` (ties to even, as torch rounds), as its 16 bits.
#[inline(always)]
fn bf16_bits(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let bits = v.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// # Safety
/// `t` must be a contiguous CPU tensor whose elements have the layout of `T`.
unsafe fn as_slice<T>(t: &Tensor) -> &[T] {
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const T, t.numel()) }
}

/// # Safety
/// As [`as_slice`], and nothing else may read or write `t` while the slice is alive.
#[allow(clippy::mut_from_ref)]
unsafe fn as_slice_mut<T>(t: &Tensor) -> &mut [T] {
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, t.numel()) }
}

/// The exponent e of the power of two just above |m| (m finite, non-zero): m < 2^e.
fn exponent_above(m: f64) -> i32 {
    // f64 bits: the biased exponent gives floor(log2 m) for normal numbers.
    let e = ((m.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    e + 1
}

/// [`combine`] in parallel chunks.
fn fill<S: Element, O: Send>(
    out: &mut [O],
    origin: &[S],
    terms: &[(&[S], S)],
    parallel: bool,
    cast: impl Fn(S) -> O + Sync,
) {
    const CHUNK: usize = 1 << 15;
    let chunk = |(i, o): (usize, &mut [O])| {
        let start = i * CHUNK;
        let range = start..start + o.len();
        let local: Vec<(&[S], S)> = terms.iter().map(|(d, c)| (&d[range.clone()], *c)).collect();
        combine(o, &origin[range], &local, &cast);
    };
    if parallel || uses_openmp() {
        for_each_chunk_mut(out, CHUNK, |i, o| chunk((i, o)));
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

    fn line(t0: &Tensor, t1: &Tensor) -> Subspace {
        Subspace::line(t0, t1, Kind::Double).unwrap()
    }

    #[test]
    fn points_match_the_formula_in_float64_including_extrapolation() {
        tch::manual_seed(3);
        let t0 = Tensor::randn([1000], (Kind::Float, Device::Cpu));
        let t1 = Tensor::randn([1000], (Kind::Float, Device::Cpu));
        let l = line(&t0, &t1);
        let (a, b) = (t0.to_kind(Kind::Double), t1.to_kind(Kind::Double));
        for alpha in [-0.5, 0.0, 0.3, 1.0, 1.5, 7.25] {
            let expected = &a * (1.0 - alpha) + &b * alpha;
            let err = (l.point(&[alpha]).unwrap() - &expected).abs().max().double_value(&[]);
            assert!(err < 1e-12 * (1.0 + alpha.abs()), "alpha {alpha}: {err}");
        }
        assert!(l.point(&[0.0]).unwrap().equal(&a));
    }

    #[test]
    fn plane_points_match_the_formula_on_every_path() {
        tch::manual_seed(4);
        let (o, d1, d2) = (Tensor::randn([777], F64), Tensor::randn([777], F64), Tensor::randn([777], F64));
        let plane = Subspace::new(&o, &[d1.shallow_clone(), d2.shallow_clone()], Kind::Double).unwrap();
        for (a, b) in [(0.0, 0.0), (-1.5, 0.25), (2.0, -3.0)] {
            let expected = &o + &d1 * a + &d2 * b;
            assert!(plane.point(&[a, b]).unwrap().allclose(&expected, 1e-15, 1e-15, false));
            // The fused path into float32 targets and the tensor path (a strided target) agree.
            let mut fused = vec![Tensor::zeros([700], (Kind::Float, Device::Cpu)), Tensor::zeros([77], F64)];
            plane.write_point(&mut fused, &[a, b]).unwrap();
            let strided = Tensor::zeros([777, 2], (Kind::Float, Device::Cpu)).select(1, 0);
            plane.write_point(&mut [strided.shallow_clone()], &[a, b]).unwrap();
            let flat = Tensor::cat(&[fused[0].to_kind(Kind::Double), fused[1].shallow_clone()], 0);
            assert!(flat
                .narrow(0, 0, 700)
                .to_kind(Kind::Float)
                .equal(&expected.narrow(0, 0, 700).to_kind(Kind::Float)));
            assert!(flat.narrow(0, 700, 77).equal(&expected.narrow(0, 700, 77)));
            assert!(strided.equal(&expected.to_kind(Kind::Float)));
        }
    }

    #[test]
    fn slices_are_the_subspaces_of_their_tensors() {
        tch::manual_seed(5);
        let (o, d1, d2) = (Tensor::randn([60], F64), Tensor::randn([60], F64), Tensor::randn([60], F64));
        let plane = Subspace::new(&o, &[d1, d2], Kind::Double).unwrap();
        let piece = plane.slice(12, 24, &[4, 6]).unwrap();
        let whole = plane.point(&[0.7, -0.2]).unwrap();
        assert!(piece.point(&[0.7, -0.2]).unwrap().equal(&whole.narrow(0, 12, 24).view([4, 6])));
        assert!(plane.slice(50, 11, &[11]).is_err());
    }

    #[test]
    fn bfloat16_targets_get_the_point_rounded_as_torch_rounds() {
        tch::manual_seed(6);
        let (o, d) = (Tensor::randn([5000], F64) * 1e3, Tensor::randn([5000], F64));
        let plane = Subspace::new(&o, &[d.shallow_clone()], Kind::Double).unwrap();
        let target = Tensor::zeros([5000], (Kind::BFloat16, Device::Cpu));
        plane.write_point(&mut [target.shallow_clone()], &[0.37]).unwrap();
        let want = (&o + &d * 0.37).to_kind(Kind::Float).to_kind(Kind::BFloat16);
        assert!(target.equal(&want));
        // Taken by the fused pass, not by the tensor-op fallback (which gives the same numbers).
        assert!(plane.write_direct(&mut [target.shallow_clone()], &[0.37]).unwrap());
    }

    #[test]
    fn the_fused_pass_takes_every_storage_kind_it_fills() {
        let f32s =
            Subspace::new(&Tensor::randn([70], F64), &[Tensor::randn([70], F64)], Kind::Float).unwrap();
        for (kind, fused) in
            [(Kind::Float, true), (Kind::Double, true), (Kind::BFloat16, true), (Kind::Half, false)]
        {
            let target = Tensor::zeros([70], (kind, Device::Cpu));
            assert_eq!(f32s.write_direct(&mut [target.shallow_clone()], &[0.5]).unwrap(), fused, "{kind:?}");
            f32s.write_point(&mut [target.shallow_clone()], &[0.5]).unwrap();
            let want = f32s.point(&[0.5]).unwrap().to_kind(kind);
            assert!(target.equal(&want), "{kind:?}");
        }
    }

    #[test]
    fn points_do_not_drift_over_many_evaluations() {
        let t0 = Tensor::from_slice(&[0.1f64, -2.0, 3.3]);
        let t1 = Tensor::from_slice(&[1.7f64, 0.2, -0.9]);
        let l = line(&t0, &t1);
        for i in 0..10_000 {
            let _ = l.point(&[i as f64 * 1e-4]).unwrap();
        }
        assert!((l.point(&[1.0]).unwrap() - &t1).abs().max().double_value(&[]) < 1e-15);
    }

    #[test]
    fn write_point_fills_tensors_of_other_dtypes() {
        let l = line(
            &Tensor::zeros([6], (Kind::Float, Device::Cpu)),
            &Tensor::ones([6], (Kind::Float, Device::Cpu)),
        );
        let mut targets = vec![Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)), Tensor::zeros([2], F64)];
        l.write_point(&mut targets, &[0.25]).unwrap();
        assert_eq!(targets[0].sum(Kind::Double).double_value(&[]), 1.0);
        assert_eq!(targets[1].sum(Kind::Double).double_value(&[]), 0.5);
        let mut half = vec![Tensor::zeros([6], (Kind::BFloat16, Device::Cpu))];
        l.write_point(&mut half, &[0.5]).unwrap();
        assert_eq!(half[0].sum(Kind::Double).double_value(&[]), 3.0);
    }

    #[test]
    fn a_start_that_shares_memory_with_the_targets_does_not_drift() {
        let params = Tensor::from_slice(&[0.5f64, -1.0, 2.0, 4.0]);
        let end = Tensor::from_slice(&[1.5f64, 1.0, -2.0, 0.0]);
        let expected = |a: f64| &params.copy() * (1.0 - a) + &end * a;
        let wanted: Vec<Tensor> = [0.25, 0.5, 0.75, 1.0].iter().map(|&a| expected(a)).collect();
        let l = line(&params, &end);
        let mut targets = vec![params.shallow_clone()];
        for (a, want) in [0.25, 0.5, 0.75, 1.0].into_iter().zip(&wanted) {
            l.write_point(&mut targets, &[a]).unwrap();
            assert!(params.allclose(want, 0.0, 1e-15, false), "alpha {a}");
        }
    }

    #[test]
    fn an_overflowing_direction_is_an_error() {
        let t0 = Tensor::from_slice(&[-3e38f32]);
        let t1 = Tensor::from_slice(&[3e38f32]);
        assert!(Subspace::line(&t0, &t1, Kind::Float).is_err());
        assert!(Subspace::line(&t0, &t1, Kind::Double).is_ok());
    }

    #[test]
    fn bad_coordinates_vectors_and_dimensions_are_errors() {
        assert!(check_alphas(&[]).is_err());
        assert!(check_alphas(&[0.0, f64::NAN]).is_err());
        assert!(check_alphas(&[f64::INFINITY]).is_err());
        let t0 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let nan = Tensor::from_slice(&[0f32, f32::NAN, 1.0]);
        assert!(Subspace::line(&t0, &nan, Kind::Double).is_err());
        assert!(Subspace::line(&t0, &Tensor::zeros([4], (Kind::Float, Device::Cpu)), Kind::Double).is_err());
        assert!(Subspace::new(&t0, &[], Kind::Double).is_err());
        assert!(Subspace::new(&t0, &[nan.shallow_clone()], Kind::Double).is_err());
        let l = line(&t0, &t0);
        assert!(l.point(&[f64::NAN]).is_err());
        assert!(l.point(&[0.5, 0.5]).is_err());
        assert!(Subspace::new(&t0, &[Tensor::zeros([3], (Kind::Int64, Device::Cpu))], Kind::Double).is_err());
    }

    #[test]
    fn combine_is_exactly_the_line_expression_for_one_term() {
        let (x, y) = ([0.1f64, 1e300, -3.0], [2.5f64, -1e300, 7.0]);
        let mut out = [0.0; 3];
        combine(&mut out, &x, &[(&y, 0.3)], |v| v);
        for i in 0..3 {
            assert_eq!(out[i], x[i] + 0.3 * y[i]);
        }
    }
}
