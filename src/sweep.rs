//! The line θ(α) = θ0 + α·d through parameter space, d = θ1 − θ0.
//!
//! Every point is computed from θ0 and d directly (never by adding a step
//! repeatedly, which drifts), in the line's own precision (float64 by default),
//! and then written into the target tensors, each cast to its own dtype.

use crate::error::{Error, Result};
use crate::flat::{assign, check_finite, check_float_kind, check_vector, owned_copy};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Checks an α grid: at least one value, all finite.
pub fn check_alphas(alphas: &[f64]) -> Result<()> {
    if alphas.is_empty() {
        return Err(Error::InvalidArgument(
            "the alpha grid is empty; pass at least one value, e.g. numpy.linspace(0, 1, 51)".into(),
        ));
    }
    if let Some((i, a)) = alphas.iter().enumerate().find(|(_, a)| !a.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "alpha[{i}] = {a} is not finite; every alpha must be a finite real number"
        )));
    }
    Ok(())
}

/// A line θ0 + α·d held on one device, with a scratch buffer for the current point.
pub struct Line {
    theta0: Tensor,
    direction: Tensor,
    point: Tensor,
}

impl Line {
    /// The line through `theta0` (α = 0) and `theta1` (α = 1), held in `kind`.
    pub fn new(theta0: &Tensor, theta1: &Tensor, kind: Kind) -> Result<Self> {
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
        // Owned copies: θ0 may share memory with the very tensors the line is written into.
        let theta0 = owned_copy(theta0, kind)?;
        let theta1 = theta1.f_detach()?.f_to_kind(kind)?;
        check_finite(&theta0, "start")?;
        check_finite(&theta1, "end")?;
        let direction = theta1.f_sub(&theta0)?;
        check_finite(&direction, "end - start (the direction overflows)")?;
        let point = theta0.f_empty_like()?;
        Ok(Line { theta0, direction, point })
    }

    /// Number of elements of a point.
    pub fn numel(&self) -> usize {
        self.theta0.numel()
    }

    /// θ0 + α·d, in the scratch buffer (valid until the next call).
    pub fn point(&mut self, alpha: f64) -> Result<&Tensor> {
        check_alphas(&[alpha])?;
        let _guard = tch::no_grad_guard();
        let _ = self.direction.f_mul_scalar_out(&self.point, alpha)?;
        let _ = self.point.f_add_(&self.theta0)?;
        Ok(&self.point)
    }

    /// Writes θ(α) into `tensors` in place (see [`crate::flat::assign`]). Contiguous float32 or
    /// float64 CPU tensors take one fused pass (θ0 + α·d computed in float64, rounded once);
    /// others go through the general path.
    pub fn write_point(&mut self, tensors: &mut [Tensor], alpha: f64) -> Result<()> {
        check_alphas(&[alpha])?;
        if !self.write_direct(tensors, alpha)? {
            self.point(alpha)?;
            assign(tensors, &self.point)?;
        }
        Ok(())
    }

    /// The fused CPU path of [`write_point`](Self::write_point); false when it does not apply.
    fn write_direct(&self, tensors: &mut [Tensor], alpha: f64) -> Result<bool> {
        let cpu_contiguous = |t: &Tensor| t.device() == Device::Cpu && t.is_contiguous();
        let line_ok = self.theta0.f_kind()? == Kind::Double && cpu_contiguous(&self.theta0);
        let sizes_ok = tensors.iter().map(Tensor::numel).sum::<usize>() == self.numel();
        let kinds_ok =
            tensors.iter().all(|t| cpu_contiguous(t) && matches!(t.f_kind(), Ok(Kind::Float | Kind::Double)));
        if !(line_ok && sizes_ok && kinds_ok && cpu_contiguous(&self.direction)) {
            return Ok(false);
        }
        // SAFETY: θ0 and d are contiguous float64 CPU tensors of `numel` elements owned by the line.
        let (t0, d) = unsafe { (f64_slice(&self.theta0), f64_slice(&self.direction)) };
        let mut offset = 0;
        for t in tensors.iter() {
            let n = t.numel();
            let (a, b) = (&t0[offset..offset + n], &d[offset..offset + n]);
            // SAFETY: `t` is a contiguous CPU tensor of this element type with `n` elements; like
            // `copy_`, this writes its storage in place.
            match t.f_kind()? {
                Kind::Float => fill(
                    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) },
                    a,
                    b,
                    alpha,
                    |v| v as f32,
                ),
                _ => fill(
                    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f64, n) },
                    a,
                    b,
                    alpha,
                    |v| v,
                ),
            }
            offset += n;
        }
        Ok(true)
    }
}

/// # Safety
/// `t` must be a contiguous float64 CPU tensor.
unsafe fn f64_slice(t: &Tensor) -> &[f64] {
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f64, t.numel()) }
}

/// `out[i] = cast(a[i] + α·b[i])`, in parallel chunks.
fn fill<T: Send>(out: &mut [T], a: &[f64], b: &[f64], alpha: f64, cast: impl Fn(f64) -> T + Sync) {
    const CHUNK: usize = 1 << 15;
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = cast(x + alpha * y);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn points_match_the_formula_in_float64_including_extrapolation() {
        tch::manual_seed(3);
        let t0 = Tensor::randn([1000], (Kind::Float, Device::Cpu));
        let t1 = Tensor::randn([1000], (Kind::Float, Device::Cpu));
        let mut line = Line::new(&t0, &t1, Kind::Double).unwrap();
        let (a, b) = (t0.to_kind(Kind::Double), t1.to_kind(Kind::Double));
        for alpha in [-0.5, 0.0, 0.3, 1.0, 1.5, 7.25] {
            let expected = &a * (1.0 - alpha) + &b * alpha;
            let got = line.point(alpha).unwrap();
            let err = (got - &expected).abs().max().double_value(&[]);
            assert!(err < 1e-12 * (1.0 + alpha.abs()), "alpha {alpha}: {err}");
        }
        assert!(line.point(0.0).unwrap().equal(&a));
    }

    #[test]
    fn points_do_not_drift_over_many_evaluations() {
        let t0 = Tensor::from_slice(&[0.1f64, -2.0, 3.3]);
        let t1 = Tensor::from_slice(&[1.7f64, 0.2, -0.9]);
        let mut line = Line::new(&t0, &t1, Kind::Double).unwrap();
        for i in 0..10_000 {
            line.point(i as f64 * 1e-4).unwrap();
        }
        let end = line.point(1.0).unwrap();
        assert!((end - &t1).abs().max().double_value(&[]) < 1e-15);
    }

    #[test]
    fn write_point_fills_tensors_of_other_dtypes() {
        let t0 = Tensor::zeros([6], (Kind::Float, Device::Cpu));
        let t1 = Tensor::ones([6], (Kind::Float, Device::Cpu));
        let mut line = Line::new(&t0, &t1, Kind::Double).unwrap();
        let mut targets = vec![
            Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
            Tensor::zeros([2], (Kind::Double, Device::Cpu)),
        ];
        line.write_point(&mut targets, 0.25).unwrap();
        assert_eq!(targets[0].sum(Kind::Double).double_value(&[]), 1.0);
        assert_eq!(targets[1].sum(Kind::Double).double_value(&[]), 0.5);
    }

    #[test]
    fn a_start_that_shares_memory_with_the_targets_does_not_drift() {
        // θ0 is the very tensor the points are written into (a flat float64 view of a model).
        let params = Tensor::from_slice(&[0.5f64, -1.0, 2.0, 4.0]);
        let end = Tensor::from_slice(&[1.5f64, 1.0, -2.0, 0.0]);
        let expected = |a: f64| &params.copy() * (1.0 - a) + &end * a;
        let wanted: Vec<Tensor> = [0.25, 0.5, 0.75, 1.0].iter().map(|&a| expected(a)).collect();
        let mut line = Line::new(&params, &end, Kind::Double).unwrap();
        let mut targets = vec![params.shallow_clone()];
        for (a, want) in [0.25, 0.5, 0.75, 1.0].into_iter().zip(&wanted) {
            line.write_point(&mut targets, a).unwrap();
            assert!(params.allclose(want, 0.0, 1e-15, false), "alpha {a}");
        }
    }

    #[test]
    fn an_overflowing_direction_is_an_error() {
        let t0 = Tensor::from_slice(&[-3e38f32]);
        let t1 = Tensor::from_slice(&[3e38f32]);
        assert!(Line::new(&t0, &t1, Kind::Float).is_err());
        assert!(Line::new(&t0, &t1, Kind::Double).is_ok());
    }

    #[test]
    fn bad_alphas_and_endpoints_are_errors() {
        assert!(check_alphas(&[]).is_err());
        assert!(check_alphas(&[0.0, f64::NAN]).is_err());
        assert!(check_alphas(&[f64::INFINITY]).is_err());
        let t0 = Tensor::zeros([3], (Kind::Float, Device::Cpu));
        let nan = Tensor::from_slice(&[0f32, f32::NAN, 1.0]);
        assert!(Line::new(&t0, &nan, Kind::Double).is_err());
        assert!(Line::new(&t0, &Tensor::zeros([4], (Kind::Float, Device::Cpu)), Kind::Double).is_err());
        let mut line = Line::new(&t0, &t0, Kind::Double).unwrap();
        assert!(line.point(f64::NAN).is_err());
    }
}
