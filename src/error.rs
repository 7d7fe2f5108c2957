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
    /// An allocation failed: libtorch ran out of memory (Python: `MemoryError`). The message is
    /// short (how much was asked for, what the machine has), without libtorch's C++ trace.
    #[error("{0}")]
    OutOfMemory(String),
    /// LibTorch raised an error (Python: `RuntimeError`).
    #[error("libtorch: {0}")]
    Torch(#[source] tch::TchError),
}

impl From<tch::TchError> for Error {
    /// [`Error::OutOfMemory`] for a failed allocation, [`Error::Torch`] for anything else.
    fn from(err: tch::TchError) -> Self {
        let msg = err.to_string();
        if crate::size::is_allocation_failure(&msg) {
            Error::OutOfMemory(crate::size::out_of_memory_message(&msg))
        } else {
            Error::Torch(err)
        }
    }
}

/// libtorch's message without the C++ stack trace and the Python frames it appends (users get the
/// first lines, which say what went wrong).
pub fn without_trace(msg: &str) -> &str {
    let cut = ["\nException raised from", "\nframe #", "\nAt:\n"].iter().filter_map(|m| msg.find(m)).min();
    msg[..cut.unwrap_or(msg.len())].trim_end()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_traces_are_cut_from_messages() {
        let raw = "libtorch: Internal torch error: shapes differ\nException raised from foo at bar.cpp:12\nframe #0: x";
        assert_eq!(without_trace(raw), "libtorch: Internal torch error: shapes differ");
        let py = "libtorch: bad value\n\nAt:\n  file.py(3): f\n";
        assert_eq!(without_trace(py), "libtorch: bad value");
        assert_eq!(without_trace("plain message"), "plain message");
    }
    use tch::{Device, Kind, Tensor};

    #[test]
    fn a_failed_libtorch_allocation_is_an_out_of_memory_error_with_a_short_message() {
        // 4 PiB: more than any machine's memory and than a 47-bit address space.
        let err = Error::from(Tensor::f_empty([1i64 << 50], (Kind::Float, Device::Cpu)).unwrap_err());
        let Error::OutOfMemory(msg) = &err else { panic!("expected OutOfMemory, got {err:?}") };
        assert!(msg.contains("could not allocate 4503599627370496 bytes (4.0 PiB)"), "{msg}");
        assert!(!msg.contains("alloc_cpu") && !msg.contains('\n'), "{msg}");
        let other =
            Error::from(Tensor::f_zeros([2], (Kind::Float, Device::Cpu)).unwrap().f_view([3]).unwrap_err());
        assert!(matches!(other, Error::Torch(_)), "{other:?}");
    }
}
