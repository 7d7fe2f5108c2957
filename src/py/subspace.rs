//! `Subspace` and `check_alphas`: the bindings of `crate::subspace`.

use super::tensor::{parse_kind, unpack, unpack_all, wrap};
use crate::subspace;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use std::sync::{Mutex, MutexGuard};

/// The affine subspace θ0 + Σ c_k·d_k (a line: one direction; a plane: two), held on the origin's
/// device in `dtype`; every point any engine evaluates is computed here.
#[pyclass(frozen, module = "linpath._linpath")]
pub struct Subspace {
    // tch::Tensor is Send but not Sync: a pyclass must be Sync, hence the Mutex.
    inner: Mutex<subspace::Subspace>,
}

impl Subspace {
    /// The subspace, for the engines' bindings.
    pub fn lock(&self) -> MutexGuard<'_, subspace::Subspace> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl Subspace {
    /// The subspace through `origin` spanned by `directions` (a sequence of 1-D tensors).
    #[new]
    #[pyo3(signature = (origin, directions, dtype="float64"))]
    fn new(
        py: Python<'_>,
        origin: &Bound<'_, PyAny>,
        directions: &Bound<'_, PyAny>,
        dtype: &str,
    ) -> PyResult<Self> {
        let (origin, directions, kind) =
            (unpack(origin, "origin")?, unpack_all(directions, "directions")?, parse_kind(dtype)?);
        let sub = py.detach(move || subspace::Subspace::new(&origin, &directions, kind))?;
        Ok(Subspace { inner: Mutex::new(sub) })
    }

    /// The line through `theta0` (α = 0) and `theta1` (α = 1): direction θ1 − θ0.
    #[staticmethod]
    #[pyo3(signature = (theta0, theta1, dtype="float64"))]
    fn line(
        py: Python<'_>,
        theta0: &Bound<'_, PyAny>,
        theta1: &Bound<'_, PyAny>,
        dtype: &str,
    ) -> PyResult<Self> {
        let (t0, t1, kind) = (unpack(theta0, "start")?, unpack(theta1, "end")?, parse_kind(dtype)?);
        let sub = py.detach(move || subspace::Subspace::line(&t0, &t1, kind))?;
        Ok(Subspace { inner: Mutex::new(sub) })
    }

    /// The subspace of activations `origin + Σ c_k·directions[k]` (same-shaped tensors of one
    /// dtype, e.g. a layer's outputs and their slopes), sharing their memory: nothing is copied or
    /// checked for finiteness (NaN activations propagate into the points, as the layer would).
    #[staticmethod]
    fn of_activations(origin: &Bound<'_, PyAny>, directions: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (origin, directions) = (unpack(origin, "origin")?, unpack_all(directions, "directions")?);
        let sub = subspace::Subspace::of_activations(&origin, &directions)?;
        Ok(Subspace { inner: Mutex::new(sub) })
    }

    /// Writes θ(coords) into `tensors` (a sequence of tensors, in place, each in its own dtype).
    fn write(&self, py: Python<'_>, tensors: &Bound<'_, PyAny>, coords: Vec<f64>) -> PyResult<()> {
        let mut tensors = unpack_all(tensors, "tensors")?;
        py.detach(|| self.lock().write_point(&mut tensors, &coords))?;
        Ok(())
    }

    /// A new tensor holding θ(coords), in the subspace's dtype and shape.
    fn point<'py>(&self, py: Python<'py>, coords: Vec<f64>) -> PyResult<Bound<'py, PyAny>> {
        let point = py.detach(|| self.lock().point(&coords))?;
        wrap(py, &point)
    }

    /// Number of elements of a point.
    #[getter]
    fn numel(&self) -> usize {
        self.lock().numel()
    }

    /// Number of directions (1 for a line, 2 for a plane).
    #[getter]
    fn dim(&self) -> usize {
        self.lock().dim()
    }
}

/// Raises ValueError unless `alphas` is a non-empty grid of finite values.
#[pyfunction]
fn check_alphas(alphas: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
    let alphas = alphas.as_array().to_vec();
    Ok(subspace::check_alphas(&alphas)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Subspace>()?;
    m.add_function(wrap_pyfunction!(check_alphas, m)?)?;
    Ok(())
}
