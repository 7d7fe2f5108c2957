//! Maps the core's [`Error`] to Python exceptions.

use crate::error::Error;
use pyo3::exceptions::{PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::InvalidArgument(_) | Error::Layout(_) | Error::CorruptFile { .. } => {
                PyValueError::new_err(msg)
            }
            Error::Dtype(_) => PyTypeError::new_err(msg),
            // (errno, message, filename): Python then raises the matching subclass (FileNotFoundError, ...).
            Error::Io { path, source } => {
                PyOSError::new_err((source.raw_os_error().unwrap_or(0), source.to_string(), path))
            }
            Error::OutOfMemory(_) => PyMemoryError::new_err(msg),
            Error::Torch(_) => PyRuntimeError::new_err(crate::error::without_trace(&msg).to_string()),
        }
    }
}
