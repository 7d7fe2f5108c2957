//! The one error type of the crate; `py::error` maps it to Python exceptions.

use std::io;
use std::path::Path;

/// Everything that can go wrong in linpath's core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value the caller passed is out of range or inconsistent (Python: `ValueError`).
    #[error("{0}")]
    InvalidArgument(String),
    /// A tensor or array has an unsupported element type (Python: `TypeError`).
    #[error("{0}")]
    Dtype(String),
    /// Two parameter layouts (names, shapes, sizes) do not match (Python: `ValueError`).
    #[error("layout mismatch: {0}")]
    Layout(String),
    /// A file is not a linpath trajectory, or is damaged (Python: `ValueError`).
    #[error("{path}: {reason}")]
    CorruptFile { path: String, reason: String },
    /// The operating system refused a read or write (Python: `OSError`).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    /// LibTorch raised an error (Python: `RuntimeError`).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An `Io` error that names the file it happened on.
    pub fn io(path: &Path, source: io::Error) -> Self {
        Error::Io { path: path.display().to_string(), source }
    }

    /// A `CorruptFile` error that names the file and says what is wrong.
    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Error::CorruptFile { path: path.display().to_string(), reason: reason.into() }
    }
}
