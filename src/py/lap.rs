//! `linear_sum_assignment`: the binding of `crate::lap`.

use crate::lap;
use numpy::{PyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

type Pairs<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// The optimal assignment of a float64 cost matrix (any memory layout): (rows, cols) as int64 arrays.
#[pyfunction]
#[pyo3(signature = (cost, maximize=false))]
fn linear_sum_assignment<'py>(
    py: Python<'py>,
    cost: PyReadonlyArray2<'py, f64>,
    maximize: bool,
) -> PyResult<Pairs<'py>> {
    let (n_rows, n_cols) = (cost.shape()[0], cost.shape()[1]);
    let copy;
    let flat = match cost.as_slice() {
        Ok(flat) => flat,
        Err(_) => {
            copy = cost.as_array().iter().copied().collect::<Vec<f64>>();
            &copy[..]
        }
    };
    let a = py.detach(|| lap::linear_sum_assignment(flat, n_rows, n_cols, maximize))?;
    // Indices are below the matrix's dimensions, which numpy keeps below 2^63.
    let column = |v: &[usize]| PyArray1::from_iter(py, v.iter().map(|&x| x as i64));
    Ok((column(&a.rows), column(&a.cols)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linear_sum_assignment, m)?)?;
    Ok(())
}
