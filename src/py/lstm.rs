//! The `"lstm"` kind of `NativeNet`: [`crate::models::lstm`] built from a Python config dict
//! (Python wraps it as `linpath.models.LSTMLanguageModel`).

use crate::models::lstm::{LstmConfig, LstmLanguageModel};
use crate::models::network::Network;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tch::nn;

/// The config dict, with exactly the names of [`LstmConfig`]'s fields.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Config {
    vocab_size: i64,
    embedding_size: i64,
    hidden_size: i64,
    num_layers: i64,
    dropout: f64,
    init_scale: f64,
}

impl From<Config> for LstmConfig {
    fn from(c: Config) -> Self {
        LstmConfig {
            vocab_size: c.vocab_size,
            embedding_size: c.embedding_size,
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            dropout: c.dropout,
            init_scale: c.init_scale,
        }
    }
}

/// Builds the LSTM language model described by `config` under `path`.
pub fn build(config: &Bound<'_, PyDict>, path: &nn::Path) -> PyResult<Box<dyn Network>> {
    let config: LstmConfig = config.as_any().extract::<Config>()?.into();
    Ok(Box::new(LstmLanguageModel::new(path, config)?))
}
