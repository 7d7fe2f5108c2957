//! The thin PyO3 layer: one file per Python-facing area, each converting
//! arguments, releasing the GIL around the core's work, and mapping errors.

mod conv_maxout;
mod error;
mod flat;
mod lap;
mod lstm;
mod mlp;
mod mpdbm;
pub mod nets;
mod project;
pub mod subspace;
mod tensor;
mod train;
mod trajectory;

use pyo3::prelude::*;

/// Adds every class and function of the native module `linpath._linpath`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("TRAJECTORY_FORMAT_VERSION", crate::trajectory::FORMAT_VERSION)?;
    flat::register(m)?;
    nets::register(m)?;
    subspace::register(m)?;
    trajectory::register(m)?;
    project::register(m)?;
    train::register(m)?;
    lap::register(m)?;
    Ok(())
}
