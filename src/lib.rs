//! linpath's Rust core: parameter flattening, the linear assignment solver, the subspaces θ0 + Σ c_k·d_k (lines, planes), the
//! trajectory store and the projection of a trajectory onto a line.
//!
//! Everything outside `py` is plain Rust (testable with `cargo test`); `py` is
//! the thin PyO3 layer, compiled with the `python` feature.

pub mod error;
pub mod flat;
pub mod lap;
pub mod models;
pub mod pool;
pub mod project;
pub mod size;
pub mod subspace;
pub mod train;
pub mod trajectory;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _linpath(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    py::register(m)
}
