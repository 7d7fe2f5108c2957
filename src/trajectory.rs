//! The trajectory store: parameter checkpoints θ_t with their step numbers,
//! kept in memory or in an append-only file.
//!
//! File format (all integers little-endian):
//!
//! | bytes            | content                                                      |
//! |------------------|--------------------------------------------------------------|
//! | 0..16            | magic `\x89LINPATH-TRJ\r\n\x1a\n`                             |
//! | 16..20           | format version (u32, currently 1)                            |
//! | 20..24           | length H of the JSON header (u32)                            |
//! | 24..24+H         | JSON: `{"numel", "dtype", "names", "shapes"}`                |
//! | ..data_start     | zero padding up to a multiple of 64                          |
//! | records          | each: step (i64) then `numel` values of `dtype` (f32 or f64) |
//!
//! Opening checks the magic, version, header and that the file ends on a record
//! boundary, so a foreign or truncated file gives a clear error and nothing is
//! ever read past the data. A new file is written to a temporary name and linked
//! into place, so it never replaces an existing file and never appears half-made.

use crate::error::{Error, Result};
use crate::flat::Layout;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("linpath's trajectory files are little-endian; big-endian hosts are not supported");

/// The 16 bytes every trajectory file starts with.
pub const MAGIC: &[u8; 16] = b"\x89LINPATH-TRJ\r\n\x1a\n";
/// The file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX_LEN: u64 = 24;
const MAX_HEADER_LEN: u64 = 256 << 20;
const STEP_LEN: u64 = 8;

/// Element type of stored checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
}

impl Dtype {
    /// Parses `"float32"` or `"float64"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" => Ok(Dtype::F32),
            "float64" => Ok(Dtype::F64),
            other => {
                Err(Error::Dtype(format!("trajectories are stored as float32 or float64, not {other:?}")))
            }
        }
    }

    /// `"float32"` or `"float64"`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A plain floating-point element that a checkpoint can hold.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// The stored dtype of this element type.
    const DTYPE: Dtype;
    /// Widening conversion for float64 accumulation.
    fn to_f64(self) -> f64;
    /// This element type's values inside `c`, if `c` holds this type.
    fn values(c: &Checkpoint) -> Option<&[Self]>;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn values(c: &Checkpoint) -> Option<&[f32]> {
        match c {
            Checkpoint::F32(v) => Some(v),
            Checkpoint::F64(_) => None,
        }
    }
}

impl Element for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn to_f64(self) -> f64 {
        self
    }
    fn values(c: &Checkpoint) -> Option<&[f64]> {
        match c {
            Checkpoint::F64(v) => Some(v),
            Checkpoint::F32(_) => None,
        }
    }
}

/// The values of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Checkpoint {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Checkpoint {
    /// The element type held.
    pub fn dtype(&self) -> Dtype {
        match self {
            Checkpoint::F32(_) => Dtype::F32,
            Checkpoint::F64(_) => Dtype::F64,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Checkpoint::F32(v) => v.len(),
            Checkpoint::F64(v) => v.len(),
        }
    }

    /// True when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Checkpoint::F32(v) => as_bytes(v),
            Checkpoint::F64(v) => as_bytes(v),
        }
    }

    fn zeros(dtype: Dtype, n: usize) -> Self {
        match dtype {
            Dtype::F32 => Checkpoint::F32(vec![0.0; n]),
            Dtype::F64 => Checkpoint::F64(vec![0.0; n]),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Checkpoint::F32(v) => as_bytes_mut(v),
            Checkpoint::F64(v) => as_bytes_mut(v),
        }
    }
}

fn as_bytes<T: Element>(v: &[T]) -> &[u8] {
    // SAFETY: f32/f64 have no padding; any initialised value is valid bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

fn as_bytes_mut<T: Element>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: every bit pattern is a valid f32/f64, so writing bytes is sound.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

#[derive(Serialize, Deserialize)]
struct Header {
    numel: u64,
    dtype: String,
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
}

struct FileBackend {
    path: PathBuf,
    file: File,
    data_start: u64,
    writable: bool,
}

enum Backend {
    Memory(Vec<Checkpoint>),
    File(FileBackend),
}

/// Checkpoints of one parameter layout, in memory or in a file.
pub struct TrajectoryStore {
    layout: Layout,
    dtype: Dtype,
    steps: Vec<i64>,
    backend: Backend,
}

fn padded(len: u64) -> u64 {
    len.div_ceil(64) * 64
}

fn encode_header(layout: &Layout, dtype: Dtype) -> Result<Vec<u8>> {
    let header = Header {
        numel: layout.numel() as u64,
        dtype: dtype.name().into(),
        names: layout.names().to_vec(),
        shapes: layout.shapes().to_vec(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let mut bytes = Vec::with_capacity(padded(PREFIX_LEN + json.len() as u64) as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&json);
    bytes.resize(padded(bytes.len() as u64) as usize, 0);
    Ok(bytes)
}

/// Reads and validates the header; returns (layout, dtype, data_start).
fn decode_header(path: &Path, file: &File, file_len: u64) -> Result<(Layout, Dtype, u64)> {
    if file_len < PREFIX_LEN {
        return Err(Error::corrupt(path, "not a linpath trajectory file (too short for the header)"));
    }
    let mut prefix = [0u8; PREFIX_LEN as usize];
    file.read_exact_at(&mut prefix, 0).map_err(|e| Error::io(path, e))?;
    if &prefix[..16] != MAGIC {
        return Err(Error::corrupt(path, "not a linpath trajectory file (wrong magic bytes)"));
    }
    let version = u32::from_le_bytes(prefix[16..20].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(Error::corrupt(
            path,
            format!("trajectory format version {version}; this linpath reads version {FORMAT_VERSION}"),
        ));
    }
    let json_len = u32::from_le_bytes(prefix[20..24].try_into().unwrap_or_default()) as u64;
    let data_start = padded(PREFIX_LEN + json_len);
    if json_len > MAX_HEADER_LEN || data_start > file_len {
        return Err(Error::corrupt(path, "truncated or damaged header"));
    }
    let mut json = vec![0u8; json_len as usize];
    file.read_exact_at(&mut json, PREFIX_LEN).map_err(|e| Error::io(path, e))?;
    let header: Header =
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(path, format!("damaged header ({e})")))?;
    let layout = Layout::new(header.names, header.shapes).map_err(|e| Error::corrupt(path, e.to_string()))?;
    let dtype = Dtype::parse(&header.dtype).map_err(|e| Error::corrupt(path, e.to_string()))?;
    if layout.numel() as u64 != header.numel || layout.numel() == 0 || !record_fits(&layout, dtype) {
        return Err(Error::corrupt(path, "header sizes do not add up"));
    }
    Ok((layout, dtype, data_start))
}

impl TrajectoryStore {
    /// An empty in-memory store.
    pub fn in_memory(layout: Layout, dtype: Dtype) -> Result<Self> {
        check_layout(&layout, dtype)?;
        Ok(TrajectoryStore { layout, dtype, steps: Vec::new(), backend: Backend::Memory(Vec::new()) })
    }

    /// Creates a new, empty trajectory file at `path`; never replaces an existing file.
    pub fn create(path: &Path, layout: Layout, dtype: Dtype) -> Result<Self> {
        check_layout(&layout, dtype)?;
        if path.exists() {
            return Err(Error::InvalidArgument(format!(
                "{} already exists; choose a new path, or open it with Trajectory.open",
                path.display()
            )));
        }
        let header = encode_header(&layout, dtype)?;
        let tmp = temp_sibling(path);
        fs::write(&tmp, &header).map_err(|e| Error::io(&tmp, e))?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        linked.map_err(|e| Error::io(path, e))?;
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io(path, e))?;
        let backend =
            FileBackend { path: path.to_path_buf(), file, data_start: header.len() as u64, writable: true };
        Ok(TrajectoryStore { layout, dtype, steps: Vec::new(), backend: Backend::File(backend) })
    }

    /// Opens an existing trajectory file. A trailing partial record (from a crash
    /// mid-write) is an error unless `allow_partial`, which then ignores it.
    /// With `writable`, later [`append`](Self::append)s extend the file.
    pub fn open(path: &Path, allow_partial: bool, writable: bool) -> Result<Self> {
        let file =
            OpenOptions::new().read(true).write(writable).open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let (layout, dtype, data_start) = decode_header(path, &file, file_len)?;
        let record = record_len(&layout, dtype);
        let count = (file_len - data_start) / record;
        let partial = (file_len - data_start) % record;
        if partial != 0 && (!allow_partial || writable) {
            return Err(Error::corrupt(
                path,
                format!(
                    "truncated: it ends {partial} bytes into a checkpoint of {record} bytes, after {count} \
                     complete checkpoints (a write was interrupted?); open it with allow_partial=True to read \
                     the complete ones"
                ),
            ));
        }
        let mut steps = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut b = [0u8; 8];
            file.read_exact_at(&mut b, data_start + i * record).map_err(|e| Error::io(path, e))?;
            steps.push(i64::from_le_bytes(b));
        }
        let backend = FileBackend { path: path.to_path_buf(), file, data_start, writable };
        Ok(TrajectoryStore { layout, dtype, steps, backend: Backend::File(backend) })
    }

    /// The parameter layout of every checkpoint.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The stored element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Step numbers of the checkpoints, in order.
    pub fn steps(&self) -> &[i64] {
        &self.steps
    }

    /// Number of checkpoints.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when no checkpoint is stored.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The file behind the store, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File(f) => Some(&f.path),
            Backend::Memory(_) => None,
        }
    }

    /// Appends a checkpoint (its dtype and length must match the store).
    pub fn append(&mut self, step: i64, values: Checkpoint) -> Result<()> {
        if values.dtype() != self.dtype || values.len() != self.layout.numel() {
            return Err(Error::Layout(format!(
                "checkpoint has {} {} values; this trajectory stores {} {} values",
                values.len(),
                values.dtype().name(),
                self.layout.numel(),
                self.dtype.name()
            )));
        }
        let record = record_len(&self.layout, self.dtype);
        match &mut self.backend {
            Backend::Memory(v) => v.push(values),
            Backend::File(f) => {
                if !f.writable {
                    return Err(Error::InvalidArgument(format!("{} was opened read-only", f.path.display())));
                }
                let pos = f.data_start + self.steps.len() as u64 * record;
                let write =
                    |bytes: &[u8], at: u64| f.file.write_all_at(bytes, at).map_err(|e| Error::io(&f.path, e));
                write(&step.to_le_bytes(), pos)?;
                write(values.bytes(), pos + STEP_LEN)?;
            }
        }
        self.steps.push(step);
        Ok(())
    }

    /// The whole checkpoint `i`.
    pub fn checkpoint(&self, i: usize) -> Result<Checkpoint> {
        self.check_index(i)?;
        match &self.backend {
            Backend::Memory(v) => Ok(v[i].clone()),
            Backend::File(f) => {
                let mut out = Checkpoint::zeros(self.dtype, self.layout.numel());
                let pos = f.data_start + i as u64 * record_len(&self.layout, self.dtype) + STEP_LEN;
                f.file.read_exact_at(out.bytes_mut(), pos).map_err(|e| Error::io(&f.path, e))?;
                Ok(out)
            }
        }
    }

    /// Values `offset..offset+len` of checkpoint `i`: borrowed from memory, or read into `buf`.
    pub fn segment<'a, T: Element>(
        &'a self,
        i: usize,
        offset: usize,
        len: usize,
        buf: &'a mut Vec<T>,
    ) -> Result<&'a [T]> {
        self.check_index(i)?;
        if T::DTYPE != self.dtype || offset + len > self.layout.numel() {
            return Err(Error::InvalidArgument("segment out of range or of the wrong dtype".into()));
        }
        match &self.backend {
            Backend::Memory(v) => T::values(&v[i])
                .map(|vals| &vals[offset..offset + len])
                .ok_or_else(|| Error::InvalidArgument("stored checkpoint has the wrong dtype".into())),
            Backend::File(f) => {
                buf.resize(len, T::default());
                let elt = self.dtype.size() as u64;
                let pos = f.data_start
                    + i as u64 * record_len(&self.layout, self.dtype)
                    + STEP_LEN
                    + offset as u64 * elt;
                f.file.read_exact_at(as_bytes_mut(&mut buf[..]), pos).map_err(|e| Error::io(&f.path, e))?;
                Ok(&buf[..])
            }
        }
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.len() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "checkpoint {i} out of range (the trajectory has {})",
                self.len()
            )))
        }
    }
}

fn check_layout(layout: &Layout, dtype: Dtype) -> Result<()> {
    if layout.numel() == 0 {
        return Err(Error::InvalidArgument("a trajectory needs at least one parameter value".into()));
    }
    if !record_fits(layout, dtype) {
        return Err(Error::InvalidArgument(format!(
            "checkpoints of {} {} values are too large: a record must stay below 2**63 bytes",
            layout.numel(),
            dtype.name()
        )));
    }
    Ok(())
}

/// True when one record (step and values) of `layout` in `dtype` has a size below 2**63 bytes.
fn record_fits(layout: &Layout, dtype: Dtype) -> bool {
    (layout.numel() as u64)
        .checked_mul(dtype.size() as u64)
        .and_then(|b| b.checked_add(STEP_LEN))
        .is_some_and(|b| b <= isize::MAX as u64)
}

fn record_len(layout: &Layout, dtype: Dtype) -> u64 {
    STEP_LEN + layout.numel() as u64 * dtype.size() as u64
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layout() -> Layout {
        Layout::new(vec!["w".into(), "b".into()], vec![vec![2, 3], vec![3]]).unwrap()
    }

    fn values(seed: u64) -> Vec<f32> {
        (0..9).map(|i| ((seed * 31 + i) as f32).sin()).collect()
    }

    #[test]
    fn file_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F32).unwrap();
        for s in 0..5 {
            store.append(s * 10, Checkpoint::F32(values(s as u64))).unwrap();
        }
        let reopened = TrajectoryStore::open(&path, false, false).unwrap();
        assert_eq!(reopened.steps(), &[0, 10, 20, 30, 40]);
        assert_eq!(reopened.layout(), &layout());
        assert_eq!(reopened.checkpoint(3).unwrap(), Checkpoint::F32(values(3)));
        let mut buf = Vec::new();
        assert_eq!(reopened.segment::<f32>(2, 4, 3, &mut buf).unwrap(), &values(2)[4..7]);
        assert!(reopened.checkpoint(5).is_err());
    }

    #[test]
    fn create_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keep.txt");
        fs::write(&path, b"precious").unwrap();
        assert!(TrajectoryStore::create(&path, layout(), Dtype::F32).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn truncated_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lpt");
        let mut store = TrajectoryStore::create(&path, layout(), Dtype::F64).unwrap();
        store.append(0, Checkpoint::F64(vec![1.0; 9])).unwrap();
        store.append(1, Checkpoint::F64(vec![2.0; 9])).unwrap();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 5).unwrap();
        let err = TrajectoryStore::open(&path, false, false).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
        let partial = TrajectoryStore::open(&path, true, false).unwrap();
        assert_eq!(partial.len(), 1);
        let foreign = dir.path().join("f.bin");
        File::create(&foreign).unwrap().write_all(&[7u8; 200]).unwrap();
        let err = TrajectoryStore::open(&foreign, false, false).err().unwrap().to_string();
        assert!(err.contains("magic"), "{err}");
        OpenOptions::new().write(true).open(&path).unwrap().set_len(30).unwrap();
        assert!(matches!(TrajectoryStore::open(&path, false, false), Err(Error::CorruptFile { .. })));
    }

    #[test]
    fn a_layout_whose_records_overflow_is_refused_before_any_file_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.lpt");
        let huge = Layout::new(vec!["w".into()], vec![vec![1 << 61]]).unwrap();
        let err = TrajectoryStore::create(&path, huge.clone(), Dtype::F64).err().unwrap().to_string();
        assert!(err.contains("2**63 bytes"), "{err}");
        assert!(!path.exists());
        assert!(TrajectoryStore::in_memory(huge, Dtype::F64).is_err());
    }

    #[test]
    fn append_checks_dtype_and_length() {
        let mut store = TrajectoryStore::in_memory(layout(), Dtype::F32).unwrap();
        assert!(store.append(0, Checkpoint::F64(vec![0.0; 9])).is_err());
        assert!(store.append(0, Checkpoint::F32(vec![0.0; 8])).is_err());
        store.append(0, Checkpoint::F32(values(1))).unwrap();
        assert_eq!(store.len(), 1);
    }
}
