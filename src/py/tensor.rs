//! torch.Tensor <-> tch::Tensor: both sides share one at::Tensor (zero copy).

use crate::error::Error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use tch::{Kind, Tensor};

/// The tch handle of a Python `torch.Tensor` (same storage; writes are visible in Python).
/// Tensors without data (on the meta device) are refused here, once for every entry point.
pub fn unpack(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    // SAFETY: `obj` is a live Python object for the duration of the call.
    let tensor = unsafe { Tensor::pyobject_unpack(obj.as_ptr().cast()) }.map_err(Error::from)?;
    let tensor = tensor.ok_or_else(|| {
        let ty = obj.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        PyTypeError::new_err(format!("{what} must be a torch.Tensor, got {ty}"))
    })?;
    let layout = obj.getattr("layout")?.str()?.to_string();
    if layout != "torch.strided" {
        return Err(PyValueError::new_err(format!(
            "{what} has layout {layout}; linpath works on dense tensors: convert it with .to_dense()"
        )));
    }
    if obj.getattr("is_meta")?.is_truthy()? {
        return Err(PyValueError::new_err(format!(
            "{what} is on the meta device: it has a shape but no values; materialise it first \
             (e.g. module.to_empty(device='cpu') and load real weights)"
        )));
    }
    Ok(tensor)
}

/// The tch handles of every tensor in a Python sequence.
pub fn unpack_all(seq: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Tensor>> {
    seq.try_iter()?.enumerate().map(|(i, item)| unpack(&item?, &format!("{what}[{i}]"))).collect()
}

/// A Python `torch.Tensor` for `tensor` (same storage).
pub fn wrap<'py>(py: Python<'py>, tensor: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let ptr = tensor.pyobject_wrap().map_err(Error::from)?;
    // SAFETY: `pyobject_wrap` returns a new (owned) reference, or null with a Python error set.
    unsafe { Bound::from_owned_ptr_or_err(py, ptr.cast()) }
}

/// The tch kind for a dtype name such as "float32".
pub fn parse_kind(name: &str) -> PyResult<Kind> {
    match name {
        "float16" => Ok(Kind::Half),
        "bfloat16" => Ok(Kind::BFloat16),
        "float32" => Ok(Kind::Float),
        "float64" => Ok(Kind::Double),
        other => Err(PyTypeError::new_err(format!(
            "dtype must be one of float16, bfloat16, float32, float64; got {other:?}"
        ))),
    }
}
