//! `project_store`, `project_store_subspace` and `summarize`: the bindings of `crate::project`.

use super::trajectory::TrajectoryStore;
use crate::project::{self, PointProjection, SubspaceProjection};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

type Columns<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);
type SubspaceColumns<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// Projects every checkpoint of `store` onto θ0 + α·d; returns (coordinate, residual, displacement) arrays.
#[pyfunction]
fn project_store<'py>(
    py: Python<'py>,
    store: &Bound<'py, TrajectoryStore>,
    theta0: PyReadonlyArray1<'py, f64>,
    direction: PyReadonlyArray1<'py, f64>,
) -> PyResult<Columns<'py>> {
    let (theta0, direction) = (theta0.as_slice()?, direction.as_slice()?);
    let store = store.get();
    let points = py.detach(|| project::project(&store.read(), theta0, direction))?;
    let column = |f: fn(&PointProjection) -> f64| PyArray1::from_iter(py, points.iter().map(f));
    Ok((column(|p| p.coordinate), column(|p| p.residual), column(|p| p.displacement)))
}

/// Projects every checkpoint of `store` onto θ0 + D·c, D's rows being the k directions (a C-contiguous
/// [k, n] array); returns (coords [T, k], residuals [T], displacements [T]).
#[pyfunction]
fn project_store_subspace<'py>(
    py: Python<'py>,
    store: &Bound<'py, TrajectoryStore>,
    theta0: PyReadonlyArray1<'py, f64>,
    directions: PyReadonlyArray2<'py, f64>,
) -> PyResult<SubspaceColumns<'py>> {
    let (k, n) = (directions.shape()[0], directions.shape()[1]);
    let (theta0, flat) = (theta0.as_slice()?, directions.as_slice()?);
    let rows: Vec<&[f64]> = (0..k).map(|j| &flat[j * n..(j + 1) * n]).collect();
    let store = store.get();
    let points = py.detach(|| project::project_subspace(&store.read(), theta0, &rows))?;
    let coords: Vec<f64> = points.iter().flat_map(|p| p.coords.iter().copied()).collect();
    let coords = PyArray1::from_vec(py, coords).reshape([points.len(), k])?;
    let column = |f: fn(&SubspaceProjection) -> f64| PyArray1::from_iter(py, points.iter().map(f));
    Ok((coords, column(|p| p.residual), column(|p| p.displacement)))
}

/// (path_length, max_residual, explained) from projected points and ‖d‖.
#[pyfunction]
fn summarize(
    coordinate: PyReadonlyArray1<'_, f64>,
    residual: PyReadonlyArray1<'_, f64>,
    displacement: PyReadonlyArray1<'_, f64>,
    direction_norm: f64,
) -> PyResult<(f64, f64, f64)> {
    let (a, r, x) = (coordinate.as_array(), residual.as_array(), displacement.as_array());
    if a.len() != r.len() || a.len() != x.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "coordinate, residual and displacement differ in length",
        ));
    }
    let points: Vec<PointProjection> = (0..a.len())
        .map(|i| PointProjection { coordinate: a[i], residual: r[i], displacement: x[i] })
        .collect();
    let s = project::summarize(&points, direction_norm);
    Ok((s.path_length, s.max_residual, s.explained))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(project_store, m)?)?;
    m.add_function(wrap_pyfunction!(project_store_subspace, m)?)?;
    m.add_function(wrap_pyfunction!(summarize, m)?)?;
    Ok(())
}
