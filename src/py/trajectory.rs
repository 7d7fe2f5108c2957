//! `TrajectoryStore`: the binding of `crate::trajectory`.

use super::tensor::{unpack, wrap};
use crate::error::Result;
use crate::flat::Layout;
use crate::trajectory::{Checkpoint, Dtype, TrajectoryStore as Store};
use numpy::PyArray1;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};
use tch::{Device, Kind, Tensor};

/// Checkpoints of one parameter layout, in memory or in an append-only file.
#[pyclass(frozen, module = "linpath._linpath")]
pub struct TrajectoryStore {
    inner: RwLock<Store>,
}

impl TrajectoryStore {
    pub fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The Python object for a core store (used by the trainer, which creates its own).
    pub fn wrap_store(store: Store) -> Self {
        TrajectoryStore { inner: RwLock::new(store) }
    }
}

/// A CPU copy of `tensor` as a checkpoint of `dtype` (any device, any float dtype in).
fn to_checkpoint(tensor: &Tensor, dtype: Dtype) -> Result<Checkpoint> {
    crate::flat::check_vector(tensor, tensor.numel(), "the checkpoint")?;
    let _guard = tch::no_grad_guard();
    let numel = tensor.numel();
    Ok(match dtype {
        Dtype::F32 => {
            let cpu = tensor.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
            let mut v = vec![0f32; numel];
            cpu.f_copy_data(&mut v, numel)?;
            Checkpoint::F32(v)
        }
        Dtype::F64 => {
            let cpu = tensor.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?;
            let mut v = vec![0f64; numel];
            cpu.f_copy_data(&mut v, numel)?;
            Checkpoint::F64(v)
        }
    })
}

fn to_tensor(c: &Checkpoint) -> Result<Tensor> {
    Ok(match c {
        Checkpoint::F32(v) => Tensor::f_from_slice(v)?,
        Checkpoint::F64(v) => Tensor::f_from_slice(v)?,
    })
}

#[pymethods]
impl TrajectoryStore {
    /// An empty in-memory store for tensors named `names` with shapes `shapes`.
    #[staticmethod]
    fn in_memory(names: Vec<String>, shapes: Vec<Vec<i64>>, dtype: &str) -> PyResult<Self> {
        let store = Store::in_memory(Layout::new(names, shapes)?, Dtype::parse(dtype)?)?;
        Ok(Self::wrap_store(store))
    }

    /// A new, empty trajectory file at `path` (never replaces an existing file).
    #[staticmethod]
    fn create(path: PathBuf, names: Vec<String>, shapes: Vec<Vec<i64>>, dtype: &str) -> PyResult<Self> {
        let store = Store::create(&path, Layout::new(names, shapes)?, Dtype::parse(dtype)?)?;
        Ok(Self::wrap_store(store))
    }

    /// Opens an existing trajectory file (see the core's `TrajectoryStore::open`).
    #[staticmethod]
    #[pyo3(signature = (path, allow_partial=false, writable=false))]
    fn open(py: Python<'_>, path: PathBuf, allow_partial: bool, writable: bool) -> PyResult<Self> {
        let store = py.detach(|| Store::open(&path, allow_partial, writable))?;
        Ok(Self::wrap_store(store))
    }

    /// Appends `tensor` (a 1-D tensor with the store's element count) as checkpoint `step`.
    fn append(&self, py: Python<'_>, step: i64, tensor: &Bound<'_, PyAny>) -> PyResult<()> {
        let tensor = unpack(tensor, "the checkpoint")?;
        py.detach(move || -> Result<()> {
            let dtype = self.read().dtype();
            let values = to_checkpoint(&tensor, dtype)?;
            let mut store = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            store.append(step, values)
        })?;
        Ok(())
    }

    /// Checkpoint `index` as a new 1-D CPU tensor.
    fn get<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        let tensor = py.detach(|| to_tensor(&self.read().checkpoint(index)?))?;
        wrap(py, &tensor)
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    /// Step numbers, as an int64 array (those of a file checked first; see the core's `steps`).
    #[getter]
    fn steps<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let steps = py.detach(|| self.read().steps().map(<[i64]>::to_vec))?;
        Ok(PyArray1::from_vec(py, steps))
    }

    /// The file's format version (1 has no checksums), or None in memory.
    #[getter]
    fn format_version(&self) -> Option<u32> {
        self.read().format_version()
    }

    #[getter]
    fn names(&self) -> Vec<String> {
        self.read().layout().names().to_vec()
    }

    #[getter]
    fn shapes(&self) -> Vec<Vec<i64>> {
        self.read().layout().shapes().to_vec()
    }

    #[getter]
    fn numel(&self) -> usize {
        self.read().layout().numel()
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.read().dtype().name()
    }

    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.read().path().map(PathBuf::from)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TrajectoryStore>()?;
    Ok(())
}
