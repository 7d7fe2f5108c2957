//! `train_native`: the binding of `crate::train` (Python wraps it as `linpath.train`).

use super::nets::NativeNet;
use super::tensor::{unpack, wrap};
use super::trajectory::TrajectoryStore as PyStore;
use crate::error::Result;
use crate::flat::Layout;
use crate::models::Network;
use crate::train::{self, Data, Observer, Outcome, Progress, Schedule, Split, TrainConfig};
use crate::trajectory::{Checkpoint, Dtype, TrajectoryStore as Store};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The hyper-parameters, read from a dict with exactly the names of [`TrainConfig`].
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Config {
    epochs: i64,
    batch_size: i64,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    max_norm: Option<f64>,
    max_norms: BTreeMap<String, f64>,
    lr_scale: BTreeMap<String, f64>,
    /// (final momentum, start, saturate).
    momentum_schedule: Option<(f64, i64, i64)>,
    /// (decay factor, start, saturate).
    lr_schedule: Option<(f64, i64, i64)>,
    clip_norm: Option<f64>,
    lr_decay: Option<f64>,
    early_stopping: Option<i64>,
    seed: u64,
    record_every: Option<i64>,
    eval_train: bool,
}

/// A `(target, start, saturate)` triple as a [`Schedule`].
fn schedule((target, start, saturate): (f64, i64, i64)) -> Schedule {
    Schedule { target, start, saturate }
}

impl From<Config> for TrainConfig {
    fn from(c: Config) -> Self {
        TrainConfig {
            epochs: c.epochs,
            batch_size: c.batch_size,
            lr: c.lr,
            momentum: c.momentum,
            weight_decay: c.weight_decay,
            max_norm: c.max_norm,
            max_norms: c.max_norms,
            lr_scale: c.lr_scale,
            momentum_schedule: c.momentum_schedule.map(schedule),
            lr_schedule: c.lr_schedule.map(schedule),
            clip_norm: c.clip_norm,
            lr_decay: c.lr_decay,
            early_stopping: c.early_stopping,
            seed: c.seed,
            record_every: c.record_every,
            eval_train: c.eval_train,
        }
    }
}

/// Appends checkpoints to the store; on progress re-takes the GIL, checks for Ctrl-C and calls
/// the Python callback. The first Python error stops the run and is kept for the caller.
struct PyObserver<'a> {
    store: &'a mut Store,
    callback: Option<Py<PyAny>>,
    failure: Option<PyErr>,
}

impl Observer for PyObserver<'_> {
    fn checkpoint(&mut self, step: i64, values: Checkpoint) -> Result<()> {
        self.store.append(step, values)
    }

    fn progress(&mut self, p: &Progress) -> bool {
        Python::attach(|py| {
            let outcome = py.check_signals().and_then(|()| match &self.callback {
                Some(callback) => callback.call1(py, (p.step, p.total_steps, p.epoch, p.loss)).map(drop),
                None => Ok(()),
            });
            outcome.map_err(|e| self.failure = Some(e)).is_ok()
        })
    }
}

/// A new store (in memory, or a new file at `path`) for the parameters of `net`, in float32;
/// in memory only when every checkpoint the run may record fits there.
fn new_store(net: &dyn Network, path: Option<&PathBuf>, data: &Data, config: &TrainConfig) -> Result<Store> {
    let (names, tensors): (Vec<String>, Vec<tch::Tensor>) = net.named_parameters().into_iter().unzip();
    let layout = Layout::of_tensors(names, &tensors)?;
    match path {
        Some(path) => Store::create(path, layout, Dtype::F32),
        None => {
            train::check_in_memory_trajectory(layout.numel(), data.train.len(), config)?;
            Store::in_memory(layout, Dtype::F32)
        }
    }
}

/// Checks everything, creates the store, then trains (the caller has released the GIL).
fn run(
    native: &NativeNet,
    data: &Data,
    config: &TrainConfig,
    path: Option<&PathBuf>,
    callback: Option<Py<PyAny>>,
) -> (Result<(Store, Outcome)>, Option<PyErr>) {
    let state = native.lock();
    let net: &dyn Network = state.net.as_ref();
    let mut store = match train::check(net, data, config).and_then(|()| new_store(net, path, data, config)) {
        Ok(store) => store,
        Err(e) => return (Err(e), None),
    };
    let mut observer = PyObserver { store: &mut store, callback, failure: None };
    let outcome = train::train(net, data, config, &mut observer);
    let failure = observer.failure.take();
    (outcome.map(|o| (store, o)), failure)
}

/// True when `failure` is a Ctrl-C (KeyboardInterrupt); any other error is returned.
fn interrupted_by(py: Python<'_>, failure: Option<PyErr>) -> PyResult<bool> {
    match failure {
        None => Ok(false),
        Some(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => Ok(true),
        Some(e) => Err(e),
    }
}

/// The outcome as a dict: history (a dict of lists), initial, final, best (flat float32
/// tensors; best None without validation data), best_epoch, interrupted, epochs_run, steps, store.
fn to_dict<'py>(
    py: Python<'py>,
    store: Store,
    o: Outcome,
    interrupted: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let h = &o.history;
    let history = PyDict::new(py);
    history.set_item("epoch", &h.epoch)?;
    for (key, values) in [
        ("train_loss", &h.train_loss),
        ("train_error", &h.train_error),
        ("valid_loss", &h.valid_loss),
        ("valid_error", &h.valid_error),
        ("step_loss", &h.step_loss),
        ("lr", &h.lr),
        ("momentum", &h.momentum),
    ] {
        history.set_item(key, values)?;
    }
    let out = PyDict::new(py);
    out.set_item("history", history)?;
    out.set_item("initial", wrap(py, &o.initial)?)?;
    out.set_item("final", wrap(py, &o.final_params)?)?;
    out.set_item("best", o.best.as_ref().map(|b| wrap(py, &b.params)).transpose()?)?;
    out.set_item("best_epoch", o.best.as_ref().map(|b| b.epoch))?;
    out.set_item("interrupted", o.interrupted || interrupted)?;
    out.set_item("epochs_run", o.epochs_run)?;
    out.set_item("steps", o.steps)?;
    out.set_item("store", Py::new(py, PyStore::wrap_store(store))?)?;
    Ok(out)
}

/// Trains a `NativeNet` with minibatch SGD (see `crate::train`); the GIL is released meanwhile.
///
/// `train` and `valid` are `(X, Y)` pairs of CPU tensors (float32 inputs, int64 targets);
/// `config` is a dict of the `TrainConfig` fields; checkpoints go to a new file at `path`, or
/// memory. `progress(step, total_steps, epoch, loss)` is called every few steps. Ctrl-C stops
/// the run after the current step and sets `interrupted`; other errors are raised.
#[pyfunction]
#[pyo3(signature = (model, train, valid, config, path=None, progress=None))]
fn train_native<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    train: (Bound<'py, PyAny>, Bound<'py, PyAny>),
    valid: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    config: Config,
    path: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let split = |(x, y): (Bound<'py, PyAny>, Bound<'py, PyAny>)| -> PyResult<Split> {
        Ok(Split { x: unpack(&x, "X")?, y: unpack(&y, "Y")? })
    };
    let data = Data { train: split(train)?, valid: valid.map(split).transpose()? };
    let config = TrainConfig::from(config);
    let native = model
        .cast::<NativeNet>()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("model must be a linpath NativeNet"))?
        .get();
    let (result, failure) = py.detach(move || run(native, &data, &config, path.as_ref(), progress));
    let (store, outcome) = result?;
    let mut interrupted = interrupted_by(py, failure)?;
    // A Ctrl-C that arrived after the last check still belongs to this run.
    interrupted |= interrupted_by(py, py.check_signals().err())?;
    to_dict(py, store, outcome, interrupted)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(train_native, m)?)?;
    Ok(())
}
