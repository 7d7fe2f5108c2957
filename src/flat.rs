//! Parameter layout and flattening: a list of tensors <-> one contiguous vector.
//!
//! A [`Layout`] keeps the names and shapes of the tensors, and where each one
//! lives in the flat vector. [`flatten`] concatenates tensors into a fresh 1-D
//! vector; [`assign`] writes a vector back into the tensors *in place*, so the
//! tensors of a PyTorch model (shared with Python, zero copy) take the values.

use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Names and shapes of a list of tensors, and their offsets in the flat vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    offsets: Vec<usize>,
}

impl Layout {
    /// A layout from names and shapes; the offsets follow from the shapes.
    pub fn new(names: Vec<String>, shapes: Vec<Vec<i64>>) -> Result<Self> {
        if names.len() != shapes.len() {
            return Err(Error::InvalidArgument(format!("{} names but {} shapes", names.len(), shapes.len())));
        }
        let mut offsets = Vec::with_capacity(shapes.len() + 1);
        offsets.push(0usize);
        for (name, shape) in names.iter().zip(&shapes) {
            if shape.iter().any(|&s| s < 0) {
                return Err(Error::InvalidArgument(format!(
                    "tensor {name:?} has a negative dimension in shape {shape:?}"
                )));
            }
            let too_big =
                || Error::InvalidArgument(format!("tensor {name:?} of shape {shape:?} is too large"));
            let numel =
                shape.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s as usize)).ok_or_else(too_big)?;
            let end = offsets.last().copied().unwrap_or(0).checked_add(numel).ok_or_else(too_big)?;
            offsets.push(end);
        }
        Ok(Layout { names, shapes, offsets })
    }

    /// The layout of `tensors`, named `names`.
    pub fn of_tensors(names: Vec<String>, tensors: &[Tensor]) -> Result<Self> {
        Layout::new(names, tensors.iter().map(Tensor::size).collect())
    }

    /// Tensor names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Tensor shapes, in order.
    pub fn shapes(&self) -> &[Vec<i64>] {
        &self.shapes
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// True when the layout holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Total number of elements (the length of the flat vector).
    pub fn numel(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Start and length of tensor `i` in the flat vector.
    pub fn span(&self, i: usize) -> (usize, usize) {
        (self.offsets[i], self.offsets[i + 1] - self.offsets[i])
    }

    /// Checks that `tensors` have exactly this layout's shapes, in order.
    pub fn check_tensors(&self, tensors: &[Tensor]) -> Result<()> {
        if tensors.len() != self.len() {
            return Err(Error::Layout(format!("expected {} tensors, got {}", self.len(), tensors.len())));
        }
        for (i, t) in tensors.iter().enumerate() {
            if t.size() != self.shapes[i] {
                return Err(Error::Layout(format!(
                    "tensor {} ({:?}) has shape {:?}, expected {:?}",
                    i,
                    self.names[i],
                    t.size(),
                    self.shapes[i]
                )));
            }
        }
        Ok(())
    }
}

/// Fails unless `kind` is a real floating-point type.
pub fn check_float_kind(kind: Kind, what: &str) -> Result<()> {
    match kind {
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double => Ok(()),
        other => Err(Error::Dtype(format!(
            "{what} has dtype {other:?}; linpath works on floating-point tensors \
             (float16, bfloat16, float32, float64)"
        ))),
    }
}

/// The one device that all `tensors` live on.
pub fn common_device(tensors: &[Tensor]) -> Result<Device> {
    let first = tensors
        .first()
        .ok_or_else(|| Error::InvalidArgument("no tensors given (the model has no parameters?)".into()))?
        .device();
    match tensors.iter().find(|t| t.device() != first) {
        Some(t) => Err(Error::InvalidArgument(format!(
            "tensors live on different devices ({first:?} and {:?}); move the model to one device",
            t.device()
        ))),
        None => Ok(first),
    }
}

/// Concatenates `tensors` into one new contiguous 1-D vector of element type `kind`,
/// on the tensors' device. The result does not share memory with the inputs.
pub fn flatten(tensors: &[Tensor], kind: Kind) -> Result<Tensor> {
    check_float_kind(kind, "the requested vector")?;
    common_device(tensors)?;
    let pieces = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            check_float_kind(t.f_kind()?, &format!("tensor {i}"))?;
            Ok(t.f_detach()?.f_reshape([-1])?.f_to_kind(kind)?)
        })
        .collect::<Result<Vec<Tensor>>>()?;
    Ok(tch::no_grad(|| Tensor::f_cat(&pieces, 0))?.f_contiguous()?)
}

/// Checks that `vec` is a finite-size 1-D floating vector with `numel` elements.
pub fn check_vector(vec: &Tensor, numel: usize, what: &str) -> Result<()> {
    check_float_kind(vec.f_kind()?, what)?;
    if vec.dim() != 1 {
        return Err(Error::InvalidArgument(format!("{what} must be 1-D, got shape {:?}", vec.size())));
    }
    if vec.numel() != numel {
        return Err(Error::Layout(format!(
            "{what} has {} elements but the parameters have {numel}",
            vec.numel()
        )));
    }
    Ok(())
}

/// Fails if `v` holds a NaN or an infinity (`what` names it in the message).
pub fn check_finite(v: &Tensor, what: &str) -> Result<()> {
    let all_finite = v.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0;
    if all_finite {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("{what} contains NaN or infinite values")))
    }
}

/// An owned copy of `v` in `kind`: never shares memory with `v`, even when it already has that
/// kind (a line read from tensors that its own writes change would drift).
pub fn owned_copy(v: &Tensor, kind: Kind) -> Result<Tensor> {
    Ok(v.f_detach()?.f_to_dtype(kind, false, true)?.f_contiguous()?)
}

/// Writes `vec` into `tensors` in place (each tensor takes its slice, cast to its
/// own dtype and copied to its own device). Runs without autograd.
pub fn assign(tensors: &mut [Tensor], vec: &Tensor) -> Result<()> {
    let layout = Layout::of_tensors(vec![String::new(); tensors.len()], tensors)?;
    check_vector(vec, layout.numel(), "the vector")?;
    for (i, t) in tensors.iter().enumerate() {
        check_float_kind(t.f_kind()?, &format!("tensor {i}"))?;
    }
    let _guard = tch::no_grad_guard();
    for (i, t) in tensors.iter_mut().enumerate() {
        let (start, len) = layout.span(i);
        let piece = vec.f_narrow(0, start as i64, len as i64)?.f_view(layout.shapes[i].as_slice())?;
        t.f_copy_(&piece)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(shape: &[i64], kind: Kind) -> Tensor {
        Tensor::f_randn(shape, (kind, Device::Cpu)).unwrap()
    }

    #[test]
    fn flatten_then_assign_round_trips() {
        tch::manual_seed(1);
        let src = vec![randn(&[3, 5], Kind::Float), randn(&[7], Kind::Float), randn(&[2, 1, 4], Kind::Float)];
        let flat = flatten(&src, Kind::Double).unwrap();
        assert_eq!(flat.size(), vec![15 + 7 + 8]);
        let mut dst: Vec<Tensor> = src.iter().map(|t| t.zeros_like()).collect();
        assign(&mut dst, &flat).unwrap();
        for (a, b) in src.iter().zip(&dst) {
            assert!(a.equal(b));
        }
    }

    #[test]
    fn flatten_reads_non_contiguous_tensors_in_logical_order() {
        let t = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]).tr();
        let flat = flatten(std::slice::from_ref(&t), Kind::Float).unwrap();
        let expected = Tensor::from_slice(&[0f32, 3., 1., 4., 2., 5.]);
        assert!(flat.equal(&expected));
    }

    #[test]
    fn assign_writes_into_a_non_contiguous_view() {
        let base = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let mut views = vec![base.tr()];
        assign(&mut views, &Tensor::from_slice(&[1f32, 2., 3., 4., 5., 6.])).unwrap();
        let expected = Tensor::from_slice(&[1f32, 4., 2., 5., 3., 6.]).view([3, 2]);
        assert!(base.equal(&expected));
    }

    #[test]
    fn wrong_sizes_and_kinds_are_errors() {
        let mut ts = vec![randn(&[4], Kind::Float)];
        assert!(matches!(assign(&mut ts, &randn(&[5], Kind::Float)), Err(Error::Layout(_))));
        assert!(matches!(assign(&mut ts, &randn(&[2, 2], Kind::Float)), Err(Error::InvalidArgument(_))));
        let ints = Tensor::zeros([4], (Kind::Int64, Device::Cpu));
        assert!(matches!(assign(&mut ts, &ints), Err(Error::Dtype(_))));
        assert!(matches!(flatten(&[ints], Kind::Float), Err(Error::Dtype(_))));
        assert!(matches!(flatten(&[], Kind::Float), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn layout_offsets_and_checks() {
        let layout = Layout::new(vec!["a".into(), "b".into()], vec![vec![2, 3], vec![]]).unwrap();
        assert_eq!(layout.numel(), 7);
        assert_eq!(layout.span(1), (6, 1));
        assert!(layout.check_tensors(&[randn(&[2, 3], Kind::Float)]).is_err());
        assert!(Layout::new(vec!["a".into()], vec![vec![-1]]).is_err());
    }
}
