//! `NativeMlp`: the binding of `crate::models::mlp` (Python wraps it as `linpath.models.MLP`).

use super::nets::alpha_callback;
use super::tensor::{unpack, wrap};
use crate::error::Result;
use crate::models::mlp_sweep::{sweep_mlp_passes, Pass, Precision};
use crate::models::{Activation, Mlp, MlpConfig};
use pyo3::prelude::*;
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Device};

/// A model and the variable store that owns its tensors.
pub struct MlpState {
    pub vs: nn::VarStore,
    pub mlp: Mlp,
}

/// A LibTorch MLP living in Rust; its parameters are shared with Python without copies.
#[pyclass(frozen, module = "linpath._linpath")]
pub struct NativeMlp {
    /// The configuration, outside the lock: reading it never waits for a running trainer.
    config: MlpConfig,
    // tch tensors are Send but not Sync: a pyclass must be Sync, hence the Mutex.
    state: Mutex<MlpState>,
}

impl NativeMlp {
    /// Exclusive access to the model (for the trainer and the sweep).
    pub fn lock(&self) -> MutexGuard<'_, MlpState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[pymethods]
impl NativeMlp {
    /// A new MLP on the CPU; its variables are zero until Python initialises them.
    #[new]
    #[pyo3(signature = (sizes, activation="relu", pieces=2, input_dropout=0.0, hidden_dropout=0.0))]
    fn new(
        sizes: Vec<i64>,
        activation: &str,
        pieces: i64,
        input_dropout: f64,
        hidden_dropout: f64,
    ) -> PyResult<Self> {
        let config = MlpConfig {
            sizes,
            activation: Activation::parse(activation, pieces)?,
            input_dropout,
            hidden_dropout,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let mlp = tch::no_grad(|| Mlp::new(&vs.root(), config.clone()))?;
        Ok(NativeMlp { config, state: Mutex::new(MlpState { vs, mlp }) })
    }

    /// `(name, tensor)` pairs in PyTorch order; the tensors are the model's own variables.
    fn named_parameters<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        // Without the GIL while waiting: a trainer holding the lock calls back into Python.
        let params = py.detach(|| self.lock().mlp.named_parameters());
        params.into_iter().map(|(name, t)| Ok((name, wrap(py, &t)?))).collect()
    }

    /// The logits for `x` (dropout active when `train`); the GIL is released meanwhile.
    #[pyo3(signature = (x, train=false))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        train: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = unpack(x, "x")?;
        let out = py.detach(move || -> Result<tch::Tensor> { self.lock().mlp.try_forward(&x, train) })?;
        wrap(py, &out)
    }

    /// J along θ0 + α·(θ1 − θ0) on one split, natively (GIL released; the parameters are untouched).
    ///
    /// Returns (mean losses, error rates), one per α. `progress(done, total)` is called after each α
    /// of each block of data (with the GIL); Ctrl-C raises KeyboardInterrupt there.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (theta0, theta1, x, y, alphas, batch_size, precision="float32", progress=None))]
    fn sweep(
        &self,
        py: Python<'_>,
        theta0: &Bound<'_, PyAny>,
        theta1: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        alphas: Vec<f64>,
        batch_size: i64,
        precision: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(Vec<f64>, Vec<f64>)> {
        let passes = vec![(alphas, precision.to_string())];
        let mut sweeps = self.sweep_passes(py, theta0, theta1, x, y, passes, batch_size, progress)?;
        Ok(sweeps.remove(0))
    }

    /// Several passes `[(alphas, precision), ...]` over the same data sharing the first layer's
    /// products (e.g. a bf16 sweep and its float32 check); one (losses, error rates) per pass.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (theta0, theta1, x, y, passes, batch_size, progress=None))]
    fn sweep_passes(
        &self,
        py: Python<'_>,
        theta0: &Bound<'_, PyAny>,
        theta1: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        passes: Vec<(Vec<f64>, String)>,
        batch_size: i64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<(Vec<f64>, Vec<f64>)>> {
        let (t0, t1, x, y) =
            (unpack(theta0, "start")?, unpack(theta1, "end")?, unpack(x, "x")?, unpack(y, "y")?);
        let precisions = passes.iter().map(|(_, p)| Precision::parse(p)).collect::<Result<Vec<_>>>()?;
        let passes: Vec<Pass> = passes
            .iter()
            .zip(precisions)
            .map(|((alphas, _), precision)| Pass { alphas, precision })
            .collect();
        let config = self.config.clone();
        let mut failure: Option<PyErr> = None;
        let mut on_alpha = alpha_callback(&progress, &mut failure);
        let result = py
            .detach(move || sweep_mlp_passes(&config, &t0, &t1, &x, &y, &passes, batch_size, &mut on_alpha));
        match (result, failure) {
            (_, Some(err)) => Err(err),
            (result, None) => Ok(result?.into_iter().map(|s| (s.loss, s.error)).collect()),
        }
    }

    #[getter]
    fn sizes(&self) -> Vec<i64> {
        self.config.sizes.clone()
    }

    #[getter]
    fn activation(&self) -> &'static str {
        match self.config.activation {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Maxout(_) => "maxout",
        }
    }

    #[getter]
    fn pieces(&self) -> i64 {
        self.config.activation.pieces()
    }

    #[getter]
    fn dropout(&self) -> (f64, f64) {
        (self.config.input_dropout, self.config.hidden_dropout)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeMlp>()?;
    Ok(())
}
