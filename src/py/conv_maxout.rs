//! The `"conv_maxout"` kind of `NativeNet`: [`crate::models::conv_maxout`] built from a Python
//! config dict (Python wraps it as `linpath.models.ConvMaxout`).

use crate::models::conv_maxout::{ConvMaxout, ConvMaxoutConfig};
use crate::models::network::Network;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tch::nn;

/// The config dict, with exactly the names of [`ConvMaxoutConfig`]'s fields.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Config {
    input_shape: [i64; 3],
    channels: Vec<i64>,
    kernels: Vec<i64>,
    paddings: Vec<i64>,
    pools: Vec<i64>,
    pool_strides: Vec<i64>,
    pieces: i64,
    fc_units: i64,
    fc_pieces: i64,
    classes: i64,
    input_dropout: f64,
    hidden_dropout: f64,
}

impl From<Config> for ConvMaxoutConfig {
    fn from(c: Config) -> Self {
        ConvMaxoutConfig {
            input_shape: c.input_shape,
            channels: c.channels,
            kernels: c.kernels,
            paddings: c.paddings,
            pools: c.pools,
            pool_strides: c.pool_strides,
            pieces: c.pieces,
            fc_units: c.fc_units,
            fc_pieces: c.fc_pieces,
            classes: c.classes,
            input_dropout: c.input_dropout,
            hidden_dropout: c.hidden_dropout,
        }
    }
}

/// Builds the convolutional maxout network described by `config` under `path`.
pub fn build(config: &Bound<'_, PyDict>, path: &nn::Path) -> PyResult<Box<dyn Network>> {
    let config: ConvMaxoutConfig = config.as_any().extract::<Config>()?.into();
    Ok(Box::new(ConvMaxout::new(path, config)?))
}
