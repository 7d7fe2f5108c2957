//! The `"mlp"` kind of `NativeNet`: [`crate::models::mlp`] built from a Python config dict
//! (Python wraps it as `linpath.models.MLP`).

use crate::models::mlp::{Activation, Mlp, MlpConfig};
use crate::models::network::Network;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tch::nn;

/// The config dict: `sizes`, `activation` ("relu", "sigmoid", "tanh", "maxout"), `pieces`,
/// `input_dropout`, `hidden_dropout`.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Config {
    sizes: Vec<i64>,
    activation: String,
    pieces: i64,
    input_dropout: f64,
    hidden_dropout: f64,
}

/// Builds the MLP described by `config` under `path`.
pub fn build(config: &Bound<'_, PyDict>, path: &nn::Path) -> PyResult<Box<dyn Network>> {
    let c: Config = config.as_any().extract()?;
    let config = MlpConfig {
        sizes: c.sizes,
        activation: Activation::parse(&c.activation, c.pieces)?,
        input_dropout: c.input_dropout,
        hidden_dropout: c.hidden_dropout,
    };
    Ok(Box::new(Mlp::new(path, config)?))
}
