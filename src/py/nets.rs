//! `NativeNet`: one binding for every model behind [`Network`] (the MLP, the conv maxout net, the
//! MP-DBM, the LSTM language model); Python wraps it in `linpath.models`' classes. Each model's file in
//! this folder turns a Python config dict into its Rust config and builds the model.

use super::subspace::Subspace;
use super::tensor::{unpack, wrap};
use crate::error::Result;
use crate::models::network::{self, Measure, Network, Pass, Precision, METRICS};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::sync::{Mutex, MutexGuard};
use tch::{nn, Device, Tensor};

/// The model kinds `NativeNet` builds (the `kind` argument).
pub const KINDS: &[&str] = &["conv_maxout", "lstm", "mlp", "mpdbm"];

/// A model and the variable store that owns its tensors.
pub struct NetState {
    pub vs: nn::VarStore,
    pub net: Box<dyn Network>,
}

/// Builds the model `kind` from its config dict under `path`.
fn build(kind: &str, config: &Bound<'_, PyDict>, path: &nn::Path) -> PyResult<Box<dyn Network>> {
    match kind {
        "conv_maxout" => super::conv_maxout::build(config, path),
        "lstm" => super::lstm::build(config, path),
        "mlp" => super::mlp::build(config, path),
        "mpdbm" => super::mpdbm::build(config, path),
        other => Err(PyValueError::new_err(format!("unknown model kind {other:?}; use one of {KINDS:?}"))),
    }
}

/// A LibTorch model living in Rust; its parameters are shared with Python without copies.
#[pyclass(frozen, module = "linpath._linpath")]
pub struct NativeNet {
    kind: String,
    // tch tensors are Send but not Sync: a pyclass must be Sync, hence the Mutex.
    state: Mutex<NetState>,
}

impl NativeNet {
    /// Exclusive access to the model (for the trainer and the sweep).
    pub fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One pass's values by metric name, in [`METRICS`] order.
type Values = Vec<(&'static str, Vec<f64>)>;

/// `[(metric, [value per point])]` from one [`Measure`] per point.
fn by_metric(measures: &[Measure]) -> Values {
    METRICS
        .iter()
        .enumerate()
        .map(|(k, &name)| (name, measures.iter().map(|m| m.metrics()[k].1).collect()))
        .collect()
}

/// A progress callback for the core's `on_alpha(done, total) -> go on`: it re-takes the GIL,
/// checks for Ctrl-C and calls `progress(done, total)`; the first Python error stops the work
/// and is kept in `failure`.
pub fn alpha_callback<'a>(
    progress: &'a Option<Py<PyAny>>,
    failure: &'a mut Option<PyErr>,
) -> impl FnMut(usize, usize) -> bool + 'a {
    move |done, total| {
        Python::attach(|py| {
            let step = py.check_signals().and_then(|_| match progress {
                Some(callback) => callback.call1(py, (done, total)).map(|_| ()),
                None => Ok(()),
            });
            step.map_err(|e| *failure = Some(e)).is_ok()
        })
    }
}

#[pymethods]
impl NativeNet {
    /// A new model of `kind` on the CPU from its config dict; Python initialises the variables.
    #[new]
    fn new(kind: &str, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = tch::no_grad(|| build(kind, config, &vs.root()))?;
        Ok(NativeNet { kind: kind.to_string(), state: Mutex::new(NetState { vs, net }) })
    }

    /// `(name, tensor)` pairs in PyTorch order; the tensors are the model's own variables.
    fn named_parameters<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyAny>)>> {
        let params = py.detach(|| self.lock().net.named_parameters());
        params.into_iter().map(|(name, t)| Ok((name, wrap(py, &t)?))).collect()
    }

    /// The model's output for `x` (training-time noise when `train`); the GIL is released.
    #[pyo3(signature = (x, train=false))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        train: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = unpack(x, "x")?;
        let out = py.detach(move || -> Result<Tensor> {
            let _guard = tch::no_grad_guard();
            self.lock().net.try_forward(&x, train)
        })?;
        wrap(py, &out)
    }

    /// `(mean loss, error rate)` on a whole split (deterministic, no autograd, GIL released).
    fn evaluate(&self, py: Python<'_>, x: &Bound<'_, PyAny>, y: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
        let (x, y) = (unpack(x, "x")?, unpack(y, "y")?);
        Ok(py.detach(move || -> Result<(f64, f64)> {
            let state = self.lock();
            network::check_data(state.net.as_ref(), &x, &y, "data")?;
            network::evaluate(state.net.as_ref(), &x, &y)
        })?)
    }

    /// The metrics at every point of each pass `[(points, precision), ...]` (`points`: one list
    /// of coordinates per point of `subspace`) on the split `(x, y)`, natively (GIL released; the
    /// model's parameters are as before afterwards). One `{metric: [value per point]}` per pass.
    /// `batch_size` bounds the per-point memory where the model uses it (the MLP); `bf16` runs only
    /// where the model has it. `progress(done, total)` is called as points finish; Ctrl-C raises
    /// KeyboardInterrupt there.
    #[pyo3(signature = (subspace, x, y, passes, batch_size=1024, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn sweep(
        &self,
        py: Python<'_>,
        subspace: &Bound<'_, Subspace>,
        x: &Bound<'_, PyAny>,
        y: &Bound<'_, PyAny>,
        passes: Vec<(Vec<Vec<f64>>, String)>,
        batch_size: i64,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Vec<Values>> {
        let precisions = passes.iter().map(|(_, p)| Precision::parse(p)).collect::<Result<Vec<_>>>()?;
        let passes: Vec<Pass> = passes
            .iter()
            .zip(precisions)
            .map(|((points, _), precision)| Pass { points, precision })
            .collect();
        let (x, y, subspace) = (unpack(x, "x")?, unpack(y, "y")?, subspace.get());
        let mut failure: Option<PyErr> = None;
        let mut on_point = alpha_callback(&progress, &mut failure);
        let result = py.detach(move || {
            let state = self.lock();
            state.net.sweep(&subspace.lock(), (&x, &y), &passes, batch_size, &mut on_point)
        });
        match failure {
            Some(err) => Err(err),
            None => Ok(result?.iter().map(|measures| by_metric(measures)).collect()),
        }
    }

    /// The model kind (one of `KINDS`).
    #[getter]
    fn kind(&self) -> &str {
        &self.kind
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeNet>()?;
    m.add("NATIVE_NET_KINDS", KINDS.to_vec())?;
    m.add("METRICS", METRICS.to_vec())?;
    Ok(())
}
