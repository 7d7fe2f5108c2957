//! `Line` and `check_alphas`: the bindings of `crate::sweep`.

use super::tensor::{parse_kind, unpack, unpack_all, wrap};
use crate::sweep;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use std::sync::Mutex;

/// The line θ0 + α·d (d = θ1 − θ0), held on the endpoints' device in `dtype`.
#[pyclass(frozen, module = "linpath._linpath")]
struct Line {
    // tch::Tensor is Send but not Sync: a pyclass must be Sync, hence the Mutex.
    inner: Mutex<sweep::Line>,
}

impl Line {
    fn lock(&self) -> std::sync::MutexGuard<'_, sweep::Line> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl Line {
    #[new]
    #[pyo3(signature = (theta0, theta1, dtype="float64"))]
    fn new(
        py: Python<'_>,
        theta0: &Bound<'_, PyAny>,
        theta1: &Bound<'_, PyAny>,
        dtype: &str,
    ) -> PyResult<Self> {
        let (t0, t1, kind) = (unpack(theta0, "start")?, unpack(theta1, "end")?, parse_kind(dtype)?);
        let line = py.detach(move || sweep::Line::new(&t0, &t1, kind))?;
        Ok(Line { inner: Mutex::new(line) })
    }

    /// Writes θ(α) into `tensors` (a sequence of tensors, in place).
    fn write(&self, py: Python<'_>, tensors: &Bound<'_, PyAny>, alpha: f64) -> PyResult<()> {
        let mut tensors = unpack_all(tensors, "tensors")?;
        py.detach(|| self.lock().write_point(&mut tensors, alpha))?;
        Ok(())
    }

    /// A new tensor holding θ(α).
    fn point<'py>(&self, py: Python<'py>, alpha: f64) -> PyResult<Bound<'py, PyAny>> {
        let point = py.detach(|| -> crate::error::Result<tch::Tensor> {
            Ok(self.lock().point(alpha)?.f_detach_copy()?)
        })?;
        wrap(py, &point)
    }

    /// Number of elements of a point.
    #[getter]
    fn numel(&self) -> usize {
        self.lock().numel()
    }
}

/// Raises ValueError unless `alphas` is a non-empty grid of finite values.
#[pyfunction]
fn check_alphas(alphas: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
    let alphas = alphas.as_array().to_vec();
    Ok(sweep::check_alphas(&alphas)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Line>()?;
    m.add_function(wrap_pyfunction!(check_alphas, m)?)?;
    Ok(())
}
