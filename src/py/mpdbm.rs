//! The `"mpdbm"` kind of `NativeNet`: [`crate::models::mpdbm`] built from a Python config dict
//! (Python wraps it as `linpath.models.MPDBM`).

use crate::models::mpdbm::{Mpdbm, MpdbmConfig};
use crate::models::network::Network;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tch::nn;

/// The config dict, with exactly the names of [`MpdbmConfig`]'s fields.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Config {
    n_visible: i64,
    n_hidden1: i64,
    n_hidden2: i64,
    n_classes: i64,
    mf_steps: i64,
    mask_prob: f64,
    eval_seed: u64,
    eval_rows: i64,
}

impl From<Config> for MpdbmConfig {
    fn from(c: Config) -> Self {
        MpdbmConfig {
            n_visible: c.n_visible,
            n_hidden1: c.n_hidden1,
            n_hidden2: c.n_hidden2,
            n_classes: c.n_classes,
            mf_steps: c.mf_steps,
            mask_prob: c.mask_prob,
            eval_seed: c.eval_seed,
            eval_rows: c.eval_rows,
        }
    }
}

/// Builds the MP-DBM described by `config` under `path`.
pub fn build(config: &Bound<'_, PyDict>, path: &nn::Path) -> PyResult<Box<dyn Network>> {
    let config: MpdbmConfig = config.as_any().extract::<Config>()?.into();
    Ok(Box::new(Mpdbm::new(path, config)?))
}
