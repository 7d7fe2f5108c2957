//! `flatten_tensors` and `assign_tensors`: the bindings of `crate::flat`.

use super::tensor::{parse_kind, unpack, unpack_all, wrap};
use crate::flat;
use pyo3::prelude::*;

/// Concatenates a sequence of tensors into a new contiguous 1-D tensor of `dtype`.
#[pyfunction]
fn flatten_tensors<'py>(
    py: Python<'py>,
    tensors: &Bound<'py, PyAny>,
    dtype: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let tensors = unpack_all(tensors, "tensors")?;
    let kind = parse_kind(dtype)?;
    let vec = py.detach(move || flat::flatten(&tensors, kind))?;
    wrap(py, &vec)
}

/// Writes the 1-D tensor `vec` into `tensors` in place, slice by slice.
#[pyfunction]
fn assign_tensors(py: Python<'_>, tensors: &Bound<'_, PyAny>, vec: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut tensors = unpack_all(tensors, "tensors")?;
    let vec = unpack(vec, "vec")?;
    py.detach(move || flat::assign(&mut tensors, &vec))?;
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(flatten_tensors, m)?)?;
    m.add_function(wrap_pyfunction!(assign_tensors, m)?)?;
    Ok(())
}
