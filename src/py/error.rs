//! Maps the core's [`Error`] to Python exceptions.

use crate::error::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::InvalidArgument(_) | Error::Layout(_) | Error::CorruptFile { .. } => {
                PyValueError::new_err(msg)
            }
            Error::Dtype(_) => PyTypeError::new_err(msg),
            Error::Io { .. } => PyOSError::new_err(msg),
            Error::Torch(_) => PyRuntimeError::new_err(msg),
        }
    }
}
